"""Timestamps: everything rotor compares is timezone-aware UTC; everything it prints is ISO 8601
with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive timestamp is taken to be UTC already (as AWS means it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


def value_current_by(rotated_at: datetime) -> datetime:
    """The latest moment a new value that became current at ``rotated_at`` (an event's time)
    may have become current. Event times are whole seconds (the value moved at 10:00:00.8,
    the event says 10:00:00): a deployment made within that second may predate the value, so
    the freshness rule counts it as stale."""
    moment = utc(rotated_at)
    return moment + timedelta(seconds=1) if moment.microsecond == 0 else moment
