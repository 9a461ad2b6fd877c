"""Rotation → redeploy: the use case that plans the redeploy of stale consumers; queue messages."""
