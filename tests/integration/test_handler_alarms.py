"""The alarms Lambda (handlers.alarms.lambda_handler) end to end inside moto: the metrics it
prints in embedded metric format (what CloudWatch alarms watch) and the notifications a topic
subscriber receives."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from handlers.entry import make_handler
from handlers.observability import metrics
from orchestration import ALARM_KINDS
from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.errors import RetryableFailure
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from tests.aws_fakes import ApiCalls, ErrorInjector, FailFor
from tests.conftest import load_event, make_runtime
from tests.integration.conftest import Inbox
from tests.integration.test_alarms import LEGACY_ARN as LEGACY_FULL_ARN
from tests.integration.test_alarms import _unused_secret_deletion, add_service, section

pytestmark = pytest.mark.integration

READ = "get-secret-value-marked-for-deletion.json"
LEGACY_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/legacy-token-Lg56Tk"


@dataclass
class FakeLambdaContext:
    function_name: str = "rotor-alarms"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:rotor-alarms"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    remaining_millis: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


@dataclass
class Emf:
    """The embedded-metric-format objects the function printed on stdout."""

    flushes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, capsys: pytest.CaptureFixture[str]) -> Emf:
        flushes = []
        for line in capsys.readouterr().out.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                document = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(document, dict) and "_aws" in document:
                flushes.append(document)
        return cls(flushes)

    def total(self, name: str) -> float:
        total = 0.0
        for flush in self.flushes:
            declared = {m["Name"] for d in flush["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
            if name not in declared:
                continue
            value = flush[name]
            total += sum(value) if isinstance(value, list) else value
        return total


@pytest.fixture(autouse=True)
def _clean_metrics(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Metrics print EMF (not disabled as in dev mode); nothing left over from other tests."""
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def handler_runtime(
    monkeypatch: pytest.MonkeyPatch,
    clients: AwsClients,
    retry: RetryPolicy,
    world: Any,
    inbox: Inbox,
) -> Runtime:
    """What the container builds at cold start, but on the test's moto clients and window."""
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    runtime = make_runtime(clients, retry, Settings.from_env())
    assert runtime.settings.topic_arn == inbox.topic_arn
    return runtime


@pytest.fixture
def invoke(handler_runtime: Runtime):
    """Invoke the alarms handler as deployed, on the test's runtime."""
    handler = make_handler(ALARM_KINDS, lambda: handler_runtime)

    def call(event: Any) -> dict[str, Any]:
        result: dict[str, Any] = handler(event, FakeLambdaContext())
        return result

    return call


def test_storm_of_500_reads_counts_500_and_notifies_once(
    invoke,
    handler_runtime: Runtime,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
    ecs_calls: ApiCalls,
) -> None:
    event = load_event(READ)

    results = [invoke(copy.deepcopy(event)) for _ in range(500)]

    assert {r["status"] for r in results} == {"processed"}
    emf = Emf.read(capsys)
    assert len(emf.flushes) == 500  # one per invocation
    assert emf.total("PendingDeletionAccess") == 500
    assert emf.total("NotificationsSent") == 1
    assert emf.total("NotificationsSuppressed") == 499
    sent = inbox.drain()
    assert len(sent) == 1
    assert "prod/legacy-token" in sent[0]["Subject"]
    assert LEGACY_ARN in sent[0]["Message"]
    assert ecs_calls.counts["ListServices"] == 2  # discovery once: two clusters


@pytest.mark.parametrize(
    ("sample", "metric", "kind"),
    [
        ("get-secret-value-marked-for-deletion-by-name.json", "PendingDeletionAccess", "pending"),
        ("delete-secret-recovery-window.json", "DeletedSecretStillReferenced", "deletion"),
        ("rotation-failed.json", "RotationFailures", "rotation_failed"),
    ],
)
def test_each_alarm_kind_through_the_handler(
    invoke,
    handler_runtime: Runtime,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
    sample: str,
    metric: str,
    kind: str,
) -> None:
    result = invoke(load_event(sample))

    assert result["status"] == "processed"
    assert result["kind"].startswith(kind)
    assert Emf.read(capsys).total(metric) == 1
    sent = inbox.drain()
    assert len(sent) == 1
    assert sent[0]["Message"].startswith("rotor: ")


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "sample",
    [
        "rotation-succeeded.json",
        "secret-label-updated-awscurrent.json",
        "put-secret-value-awscurrent.json",
    ],
)
def test_rotation_events_are_not_for_this_function(
    invoke,
    handler_runtime: Runtime,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
    ecs_calls: ApiCalls,
    sample: str,
) -> None:
    result = invoke(load_event(sample))

    assert result["status"] == "ignored"
    assert result["kind"] in ("rotation", "secret_value_changed")
    assert sum(ecs_calls.counts.values()) == 0  # no discovery, and above all no redeploy
    assert inbox.drain() == []
    assert Emf.read(capsys).flushes == []


def _read_without_secret() -> dict[str, Any]:
    event = load_event(READ)
    event["detail"]["requestParameters"] = None
    return event


def _read_naming_malformed_arn() -> dict[str, Any]:
    event = load_event(READ)
    event["detail"]["requestParameters"] = {"secretId": "arn:aws:secretsmanager:us-east-1:1234"}
    return event


def _delete_with_bad_window() -> dict[str, Any]:
    event = load_event("delete-secret-recovery-window.json")
    event["detail"]["requestParameters"]["recoveryWindowInDays"] = "seven"
    return event


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "poison",
    [
        pytest.param({"hello": "world"}, id="not-an-event"),
        pytest.param("this is not json", id="not-json"),
        pytest.param(["a", "list"], id="a-list"),
        pytest.param({**load_event(READ), "detail": "text"}, id="detail-not-an-object"),
        pytest.param(_read_without_secret(), id="read-naming-no-secret"),
        pytest.param(_delete_with_bad_window(), id="delete-with-bad-window"),
        pytest.param(_read_naming_malformed_arn(), id="read-naming-malformed-arn"),
    ],
)
def test_poison_event_is_dropped_and_counted_without_raising(
    invoke,
    handler_runtime: Runtime,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
    poison: Any,
) -> None:
    result = invoke(copy.deepcopy(poison))

    assert result["status"] == "dropped"
    assert result["error"]
    emf = Emf.read(capsys)
    assert emf.total("InvalidEvents") == 1
    assert emf.total("PendingDeletionAccess") == 0
    assert inbox.drain() == []


class FailFirstPublishes:
    """SNS Publish answers ThrottlingException for the first ``count`` calls."""

    def __init__(self, count: int) -> None:
        self.left = count

    def attach(self, client: Any) -> FailFirstPublishes:
        client.meta.events.register("before-call.sns.Publish", self._maybe_fail)
        return self

    def _maybe_fail(self, **_: Any) -> Any:
        if self.left <= 0:
            return None
        self.left -= 1
        http = AWSResponse("https://fake.invalid/", 400, {}, None)
        return http, {
            "Error": {"Code": "Throttling", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_read_whose_notification_failed_notifies_when_lambda_retries_it(
    invoke, handler_runtime: Runtime, inbox: Inbox, clients: AwsClients
) -> None:
    """SNS throttles past the retry budget: the invocation fails and Lambda retries the event.

    The retry must still send the notification; otherwise the first read of a storm claimed the
    window, sent nothing, and every read for the next 15 minutes is suppressed: no alarm at all.
    """
    failures = FailFirstPublishes(handler_runtime.retry.max_attempts).attach(clients.sns)
    event = load_event(READ)

    with pytest.raises(Exception, match="Throttling"):
        invoke(copy.deepcopy(event))
    assert failures.left == 0
    assert inbox.drain() == []

    retried = invoke(copy.deepcopy(event))  # Lambda's asynchronous retry of the same event

    assert retried["status"] == "processed"
    assert len(inbox.drain()) == 1, "the alarm was lost: the window was claimed by a failed send"


def test_cold_start_runtime_publishes_to_the_topic_in_rotor_topic_arn(
    monkeypatch: pytest.MonkeyPatch, clients: AwsClients, world: Any, inbox: Inbox
) -> None:
    """The real cold start: settings and clients from the environment (moto is active)."""
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    from handlers.alarms import lambda_handler  # as deployed: its runtime from the environment

    result = lambda_handler(load_event("rotation-abandoned.json"), FakeLambdaContext())

    assert result["status"] == "processed"
    sent = inbox.drain()
    assert len(sent) == 1
    assert sent[0]["Subject"] == "rotor: RotationAbandoned for prod/db"


# ------------------------------------------- a deletion warning whose scan stays throttled


def _batch_cluster(clients: AwsClients) -> str:
    return str(clients.ecs.describe_clusters(clusters=["batch"])["clusters"][0]["clusterArn"])


def _attempts(invoke, event: dict[str, Any], count: int = 3) -> list[BaseException]:
    """Lambda's asynchronous invocation: the first attempt and its two retries, each of which
    fails; then the event would go to the on-failure destination."""
    errors = []
    for _ in range(count):
        with pytest.raises(RetryableFailure) as failed:
            invoke(copy.deepcopy(event))
        errors.append(failed.value)
    return errors


def test_a_deletion_whose_scan_stays_throttled_warns_once_with_what_it_knows(
    invoke, clients: AwsClients, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """One cluster throttled through every retry (ECS answers ThrottlingException at the
    botocore level): each attempt fails as retryable, but the warning naming the consumer found
    in the other cluster, and the cluster not checked, goes out, and only once."""
    batch = _batch_cluster(clients)
    throttle = FailFor("ListServices", "ThrottlingException", cluster=batch).attach(clients.ecs)
    event = load_event("delete-secret-recovery-window.json")

    _attempts(invoke, event)

    assert throttle.hits > 0
    emf = Emf.read(capsys)
    assert emf.total("NotificationsSent") == 1
    assert emf.total("NotificationsSuppressed") == 2
    (partial,) = inbox.drain()
    assert "is still used by at least 1 service(s)" in partial["Subject"]
    body = partial["Message"]
    assert "prod/legacy-token is scheduled for deletion but at least 1 ECS service(s)" in body
    assert [s.split(":")[0] for s in section(body, "Still referenced by")] == ["prod/api"]
    (unchecked,) = section(body, "Not checked yet")
    assert unchecked.startswith(f"could not read cluster {batch}")
    assert "ThrottlingException" in unchecked
    assert "restore-secret" in " ".join(section(body, "What to do:"))

    # ECS answers again (a later retry, or the event redriven from the dead-letter queue).
    clients.ecs.meta.events.unregister("before-call.ecs.ListServices", throttle._fail)
    result = invoke(copy.deepcopy(event))

    assert result["status"] == "processed"
    (complete,) = inbox.drain()
    assert "is still used by 1 service(s)" in complete["Subject"]
    assert "Not checked yet" not in complete["Message"]
    assert "Could not check" not in complete["Message"]


def test_a_deletion_nothing_seems_to_reference_says_so_once_then_gives_the_all_clear(
    invoke, clients: AwsClients, inbox: Inbox
) -> None:
    """Every ECS call of the scan throttled: nothing is known, so the warning says what rotor
    could not check yet (once over three attempts); the attempt that reads everything and
    finds no consumer says so, since a warning went out before."""
    event = _unused_secret_deletion(clients)
    throttle = ErrorInjector(1.0, operations={"ListClusters"}).attach(clients.ecs)

    _attempts(invoke, event)

    (partial,) = inbox.drain()
    assert partial["Subject"].endswith("could not check every ECS service for it yet")
    (unchecked,) = section(partial["Message"], "No reference found so far")
    assert unchecked.startswith("could not list ECS clusters: ListClusters failed: Throttling")
    assert "rotor discover" in " ".join(section(partial["Message"], "What to do:"))

    throttle.rate = 0.0
    result = invoke(copy.deepcopy(event))

    assert result["status"] == "processed"
    (all_clear,) = inbox.drain()
    assert "no ECS service references it" in all_clear["Subject"]


def test_a_deletion_whose_scan_was_never_throttled_sends_no_all_clear(
    invoke, clients: AwsClients, inbox: Inbox
) -> None:
    result = invoke(_unused_secret_deletion(clients))

    assert result["status"] == "processed"
    assert inbox.drain() == []


def test_a_partial_warning_with_more_to_say_goes_out_again(
    invoke, clients: AwsClients, inbox: Inbox
) -> None:
    """A retry that found another consumer (or has other parts unchecked) says so; one that
    knows the same as before stays quiet."""
    batch = _batch_cluster(clients)
    event = load_event("delete-secret-recovery-window.json")
    throttle_batch = FailFor("ListServices", "ThrottlingException", cluster=batch)
    throttle_batch.attach(clients.ecs)
    _attempts(invoke, event, count=2)
    assert len(inbox.drain()) == 1

    # The next attempt reads batch (where another service uses the secret) but not prod.
    events = clients.ecs.meta.events
    events.unregister("before-parameter-build.ecs.ListServices", throttle_batch._match)
    events.unregister("before-call.ecs.ListServices", throttle_batch._fail)
    add_service(clients, "batch", "legacy-report", LEGACY_FULL_ARN)
    prod = clients.ecs.describe_clusters(clusters=["prod"])["clusters"][0]["clusterArn"]
    FailFor("ListServices", "ThrottlingException", cluster=prod).attach(clients.ecs)
    _attempts(invoke, event, count=1)

    (again,) = inbox.drain()
    assert [s.split(":")[0] for s in section(again["Message"], "Still referenced by")] == [
        "batch/legacy-report"
    ]
    assert section(again["Message"], "Not checked yet")[0].startswith(
        f"could not read cluster {prod}"
    )


def test_the_partial_warning_is_sent_once_across_lambda_containers(
    clients: AwsClients, retry: RetryPolicy, world: Any, inbox: Inbox, state_table: str
) -> None:
    """Lambda may run each retry in another container: with ROTOR_STATE_TABLE the windows are
    shared, so the partial warning still goes out once."""
    FailFor("ListServices", "ThrottlingException", cluster=_batch_cluster(clients)).attach(
        clients.ecs
    )
    event = load_event("delete-secret-recovery-window.json")
    settings = Settings(topic_arn=inbox.topic_arn, state_table=state_table)
    for _ in range(3):  # each attempt in a fresh container
        runtime = make_runtime(clients, retry, settings)
        handler = make_handler(ALARM_KINDS, lambda runtime=runtime: runtime)
        with pytest.raises(RetryableFailure):
            handler(copy.deepcopy(event), FakeLambdaContext())

    assert len(inbox.drain()) == 1


def test_retries_of_one_deletion_share_its_partial_warning_whatever_the_notify_window(
    clients: AwsClients, retry: RetryPolicy, world: Any, inbox: Inbox, state_table: str
) -> None:
    """ROTOR_NOTIFY_WINDOW bounds notifications of separate reads; it says nothing about the
    attempts of one event. With a window of 0 (every read notifies), three throttled attempts
    still send one partial warning, and the attempt that reads everything still knows it went
    out. The claims last as long as an attempt of the event can come: Lambda's retries
    (6 hours), EventBridge's (24 hours), a redrive from the dead-letter queue (14 days), so
    DynamoDB's TTL cannot sweep them before then."""
    event = _unused_secret_deletion(clients)
    throttle = ErrorInjector(1.0, operations={"ListClusters"}).attach(clients.ecs)
    settings = Settings(
        topic_arn=inbox.topic_arn, state_table=state_table, notify_window=timedelta(0)
    )
    runtime = make_runtime(clients, retry, settings)
    handler = make_handler(ALARM_KINDS, lambda: runtime)

    for _ in range(3):
        with pytest.raises(RetryableFailure):
            handler(copy.deepcopy(event), FakeLambdaContext())

    assert len(inbox.drain()) == 1
    event_time = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    items = clients.dynamodb.scan(TableName=state_table)["Items"]
    (item,) = [i for i in items if i["pk"]["S"] == f"deletion-warning#{event['id']}"]
    assert item["warned"] == {"BOOL": True}
    expires = datetime.fromtimestamp(int(item["expires_at"]["N"]), tz=UTC)
    assert expires - event_time >= timedelta(days=14)

    throttle.rate = 0.0
    result = handler(copy.deepcopy(event), FakeLambdaContext())

    assert result["status"] == "processed"
    (all_clear,) = inbox.drain()
    assert "no ECS service references it" in all_clear["Subject"]
