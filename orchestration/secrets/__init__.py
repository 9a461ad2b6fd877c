"""Secrets Manager: the valueFrom grammar, reference matching, and the one adapter that
describes and restores secrets."""
