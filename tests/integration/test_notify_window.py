"""The notification window: at most one notification per (secret, caller) per window, kept in
memory or, with ROTOR_STATE_TABLE, in DynamoDB (moto) so that every Lambda container shares it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.dispatch import process
from orchestration.events.classification import classify
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from orchestration.state.notify_window import DynamoDbNotifyWindow, MemoryNotifyWindow, NotifyWindow
from tests.aws_fakes import LoseFirstAnswer
from tests.conftest import load_event, make_runtime
from tests.integration.conftest import Backend, Inbox

pytestmark = pytest.mark.integration

WINDOW = timedelta(minutes=15)
T0 = datetime(2026, 11, 20, 11, 7, 33, tzinfo=UTC)
KEY = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/legacy-token-Lg56Tk|role/a"
OTHER_KEY = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/legacy-token-Lg56Tk|role/b"
TABLE = "rotor-state"


@pytest.fixture
def table(state_table: str) -> str:
    return state_table


WindowFactory = Callable[[], NotifyWindow]


@pytest.fixture
def new_window(backend: Backend) -> WindowFactory:
    """Makes windows of 15 minutes on each backend (``backend`` runs memory, then DynamoDB in
    moto); windows made on one backend share its storage, as containers share the table."""
    return lambda: backend.notify_window(WINDOW)


def test_first_claim_wins_and_repeats_within_the_window_lose(new_window: WindowFactory) -> None:
    window = new_window()

    assert window.claim(KEY, T0) is True
    assert window.claim(KEY, T0) is False
    assert window.claim(KEY, T0 + timedelta(minutes=1)) is False
    assert window.claim(KEY, T0 + WINDOW - timedelta(seconds=1)) is False


def test_claim_wins_again_once_the_window_has_passed(new_window: WindowFactory) -> None:
    window = new_window()
    assert window.claim(KEY, T0) is True

    assert window.claim(KEY, T0 + WINDOW) is True
    # ...and that opens a new window from the new claim.
    assert window.claim(KEY, T0 + WINDOW + timedelta(minutes=14)) is False
    assert window.claim(KEY, T0 + 2 * WINDOW) is True


def test_a_read_delivered_late_does_not_reopen_the_window(new_window: WindowFactory) -> None:
    """CloudTrail delivery lags: an older read arriving after a newer claim stays suppressed."""
    window = new_window()
    assert window.claim(KEY, T0 + timedelta(minutes=5)) is True

    assert window.claim(KEY, T0) is False


def test_different_keys_have_independent_windows(new_window: WindowFactory) -> None:
    window = new_window()

    assert window.claim(KEY, T0) is True
    assert window.claim(OTHER_KEY, T0 + timedelta(seconds=1)) is True
    assert window.claim(KEY, T0 + timedelta(seconds=2)) is False
    assert window.claim(OTHER_KEY, T0 + timedelta(seconds=3)) is False


def test_memory_window_lets_exactly_one_of_many_concurrent_claims_win() -> None:
    window = MemoryNotifyWindow(WINDOW)

    with ThreadPoolExecutor(16) as pool:
        wins = list(pool.map(lambda _: window.claim(KEY, T0), range(200)))

    assert wins.count(True) == 1


def test_two_lambda_containers_share_the_dynamodb_window(
    clients: AwsClients, table: str, retry: RetryPolicy
) -> None:
    first = DynamoDbNotifyWindow(clients.dynamodb, table, WINDOW, retry)
    second = DynamoDbNotifyWindow(clients.dynamodb, table, WINDOW, retry)

    assert first.claim(KEY, T0) is True
    assert second.claim(KEY, T0 + timedelta(seconds=30)) is False
    assert first.claim(KEY, T0 + timedelta(minutes=2)) is False
    assert second.claim(OTHER_KEY, T0 + timedelta(minutes=2)) is True
    assert second.claim(KEY, T0 + WINDOW) is True
    assert first.claim(KEY, T0 + WINDOW + timedelta(seconds=1)) is False

    # Read back: one item per key, expiring (DynamoDB TTL) when its window ends, and never
    # before a window's length of wall-clock time has passed (these events are of the past:
    # a record the TTL could sweep at once would let the next late event notify again).
    items = clients.dynamodb.scan(TableName=table)["Items"]
    expiry = {item["pk"]["S"]: int(item["expires_at"]["N"]) for item in items}
    kept = int((datetime.now(UTC) + WINDOW).timestamp())
    ends = {
        f"notify#{KEY}": int((T0 + 2 * WINDOW).timestamp()),
        f"notify#{OTHER_KEY}": int((T0 + timedelta(minutes=2) + WINDOW).timestamp()),
    }
    assert set(expiry) == set(ends)
    assert all(kept - 5 <= expiry[k] and expiry[k] >= end for k, end in ends.items())


# ------------------------------------------------------------------ Runtime.build picks the window


def test_runtime_uses_dynamodb_window_only_when_a_state_table_is_set(
    clients: AwsClients, table: str
) -> None:
    with_table = Runtime.build(clients, Settings(state_table=table))
    without = Runtime.build(clients, Settings())

    assert isinstance(with_table.notify_window, DynamoDbNotifyWindow)
    assert isinstance(without.notify_window, MemoryNotifyWindow)


def test_runtime_window_length_follows_rotor_notify_window(
    clients: AwsClients, table: str, retry: RetryPolicy
) -> None:
    settings = Settings.from_env({"ROTOR_STATE_TABLE": table, "ROTOR_NOTIFY_WINDOW": "5m"})
    window = Runtime.build(clients, settings, retry=retry).notify_window

    assert window.claim(KEY, T0) is True
    assert window.claim(KEY, T0 + timedelta(minutes=4, seconds=59)) is False
    assert window.claim(KEY, T0 + timedelta(minutes=5)) is True


def test_storm_across_two_containers_sends_one_notification(
    clients: AwsClients,
    retry: RetryPolicy,
    world: Any,
    table: str,
    inbox: Inbox,
) -> None:
    settings = Settings(topic_arn=inbox.topic_arn, state_table=table)
    containers = [make_runtime(clients, retry, settings), make_runtime(clients, retry, settings)]
    assert all(isinstance(r.notify_window, DynamoDbNotifyWindow) for r in containers)
    assert containers[0].notify_window is not containers[1].notify_window
    read = load_event("get-secret-value-marked-for-deletion.json")
    storm = []
    for i in range(50):  # one read a second, handed alternately to each container
        event = copy.deepcopy(read)
        event["detail"]["eventTime"] = (T0 + timedelta(seconds=i)).isoformat()
        storm.append(classify(event))

    outcomes = [process(event, containers[i % 2]) for i, event in enumerate(storm)]

    assert sum(o.metrics["PendingDeletionAccess"] for o in outcomes) == 50
    assert sum(o.metrics.get("NotificationsSent", 0) for o in outcomes) == 1
    assert sum(o.notifications_suppressed for o in outcomes) == 49
    sent = inbox.drain()
    assert len(sent) == 1
    assert "prod/legacy-token" in sent[0]["Subject"]


def test_dynamodb_claim_whose_answer_was_lost_is_still_won(
    clients: AwsClients, table: str, retry: RetryPolicy
) -> None:
    window = DynamoDbNotifyWindow(clients.dynamodb, table, timedelta(minutes=15), retry)
    # The write lands, its answer is lost, the retry meets its own claim: still a win, so the
    # notification is sent rather than silently suppressed for the whole window.
    lost = LoseFirstAnswer("PutItem").attach(clients.dynamodb)
    now = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)

    assert window.claim("secret|caller", now) is True
    assert lost.lost
    assert window.claim("secret|caller", now + timedelta(minutes=1)) is False


def test_release_gives_back_only_the_window_this_claim_opened(
    clients: AwsClients, table: str, retry: RetryPolicy
) -> None:
    first, second, third = (
        DynamoDbNotifyWindow(clients.dynamodb, table, WINDOW, retry) for _ in range(3)
    )
    assert first.claim(KEY, T0) is True
    # The first container's window has passed; the second opens a new one...
    assert second.claim(KEY, T0 + WINDOW) is True
    # ...and the first, whose notification failed late, gives its own (long gone) window back.
    first.release(KEY)

    assert third.claim(KEY, T0 + WINDOW + timedelta(seconds=1)) is False


def test_a_released_window_lets_the_next_read_notify(new_window: WindowFactory) -> None:
    window = new_window()
    assert window.claim(KEY, T0) is True

    window.release(KEY)

    assert window.claim(KEY, T0 + timedelta(seconds=1)) is True


def test_a_runtime_with_a_deadline_bounds_the_windows_and_the_ledgers_table_calls(
    clients: AwsClients, table: str, sleeps: Any
) -> None:
    from orchestration.errors import RetryableAwsError
    from orchestration.state.redeploy_ledger import NewValue
    from tests.aws_fakes import ApiCalls, ErrorInjector

    base = Runtime.build(clients, Settings(state_table=table), retry=RetryPolicy(sleep=sleeps))
    invocation = base.with_deadline(lambda: 0.0)  # the Lambda's time is up
    calls = ApiCalls().attach(clients.dynamodb)
    ErrorInjector(1.0, code="ProvisionedThroughputExceededException").attach(clients.dynamodb)

    with pytest.raises(RetryableAwsError):
        invocation.notify_window.claim(KEY, T0)
    with pytest.raises(RetryableAwsError):
        invocation.ledger.claim("arn:svc", NewValue("arn:secret", "v1"), None, T0)

    assert calls.counts["PutItem"] == 2  # one attempt each, no retry past the deadline
    assert sleeps == []


def test_a_runtime_with_a_deadline_keeps_the_same_memory_state(clients: AwsClients) -> None:
    base = Runtime.build(clients, Settings())
    invocation = base.with_deadline(lambda: 60.0)

    assert invocation.notify_window.claim(KEY, T0) is True

    assert base.notify_window.claim(KEY, T0 + timedelta(seconds=1)) is False
