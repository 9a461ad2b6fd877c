"""Alarms: reads of secrets scheduled for deletion, deletions still in use, failed rotations."""
