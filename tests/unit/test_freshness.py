"""The freshness rule's one subtlety: whole-second event times (docs/freshness.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from orchestration.times import value_current_by

ROTATED = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


def test_a_whole_second_time_may_hide_up_to_a_second() -> None:
    # The value moved at 10:00:00.8, the event says 10:00:00: a deployment at 10:00:00.5
    # predates the value; only one from 10:00:01 on surely holds it.
    assert value_current_by(ROTATED) == ROTATED + timedelta(seconds=1)


def test_a_precise_time_is_taken_as_it_is() -> None:
    # A time with microseconds (rotor's own, the ledger's) hides nothing: a deployment made
    # 0.2 s after it holds the value, and redeploying it again would be a duplicate.
    precise = ROTATED + timedelta(milliseconds=250)
    assert value_current_by(precise) == precise
    assert value_current_by(precise.astimezone(timezone(timedelta(hours=2)))) == precise
