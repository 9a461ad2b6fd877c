"""Rotation → redeploy: the freshness rule and the use case that redeploys stale consumers."""
