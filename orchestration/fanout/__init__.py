"""Fan-out: redeploy jobs, the redeploy queue, and the worker that carries jobs out."""
