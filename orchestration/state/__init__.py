"""What rotor remembers: windows, the ledger, leases, rollouts, task-definition summaries."""
