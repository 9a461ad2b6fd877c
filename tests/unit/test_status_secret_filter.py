"""``rotor status --secret S``: which recorded rotations are S's. Names are compared whole,
never by prefix, even for rotations recorded under a partial ARN (no ``-XXXXXX`` suffix)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestration import status_report
from orchestration.state.rollouts import MemoryRolloutStore

SM = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
RECORDED = {
    "db": f"{SM}prod/db-Ab12Cd",  # full ARN
    "db-admin-partial": f"{SM}prod/db-admin",  # partial ARN: the event's words only
    "db-admin": f"{SM}prod/db-admin-Xy98Zw",
}


@pytest.fixture
def store() -> MemoryRolloutStore:
    store = MemoryRolloutStore()
    for minutes, (rotation_id, arn) in enumerate(RECORDED.items()):
        store.record_rotation(rotation_id, arn, None, NOW - timedelta(minutes=minutes + 1))
    return store


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("prod/db", {"db"}),  # never prod/db-admin recorded under a partial ARN
        (f"{SM}prod/db", {"db"}),
        (f"{SM}prod/db-Ab12Cd", {"db"}),
        ("prod/db-Ab12Cd", {"db"}),
        ("prod/db-admin", {"db-admin-partial", "db-admin"}),
        (f"{SM}prod/db-admin", {"db-admin-partial", "db-admin"}),
        (f"{SM}prod/db-admin-Xy98Zw", {"db-admin"}),
        ("prod", set()),
        ("prod/d", set()),
        ("db", set()),
    ],
)
def test_status_of_a_secret_lists_only_that_secrets_rotations(
    store: MemoryRolloutStore, secret: str, expected: set[str]
) -> None:
    report = status_report(store, NOW, timedelta(hours=1), secret)

    assert {r["rotation"] for r in report["rotations"]} == expected


def test_status_without_a_secret_lists_every_rotation(store: MemoryRolloutStore) -> None:
    report = status_report(store, NOW, timedelta(hours=1))

    assert [r["rotation"] for r in report["rotations"]] == list(RECORDED)


def test_a_partial_arn_ending_like_a_suffix_reads_as_a_full_arn() -> None:
    """AWS's own ambiguity (its docs advise against names ending in a hyphen and six
    characters): ``…:secret:prod/db-reader`` may be the full ARN of ``prod/db``. It still
    matches its whole name, and a shorter prefix never matches."""
    store = MemoryRolloutStore()
    store.record_rotation("db-reader", f"{SM}prod/db-reader", None, NOW - timedelta(minutes=1))

    def listed(secret: str) -> bool:
        return bool(status_report(store, NOW, timedelta(hours=1), secret)["rotations"])

    assert listed("prod/db-reader")
    assert listed("prod/db")  # the one ambiguous reading
    assert not listed("prod/d")
    assert not listed("prod/db-read")
