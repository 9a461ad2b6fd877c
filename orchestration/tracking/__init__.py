"""Rollout tracking: deployment state changes of rotor's deployments, and ``rotor status``."""
