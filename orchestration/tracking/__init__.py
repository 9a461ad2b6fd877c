"""Rollout tracking: rotations, consumer statuses, deployments rotor started, pacing counters."""
