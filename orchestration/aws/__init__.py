"""AWS plumbing for every use case: the one client factory, the retry policy and the
ECS rate limiter."""
