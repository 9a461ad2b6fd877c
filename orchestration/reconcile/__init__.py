"""The reconciler: one paced pass over the account that heals consumers lost events left stale
(``heal.reconcile``), the evidence of when a value became current (``moments``), and what a
pass did (``report``)."""
