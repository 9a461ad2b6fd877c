"""What rotor remembers between invocations: notify windows and the redeploy ledger."""
