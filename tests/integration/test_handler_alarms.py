"""The alarms Lambda (handlers.alarms.lambda_handler) end to end inside moto: the metrics it
prints in embedded metric format (what CloudWatch alarms watch) and the notifications a topic
subscriber receives."""

from __future__ import annotations

import contextlib
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
from orchestration.errors import AwsCallError, RetryableFailure
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from tests.aws_fakes import ApiCalls, ErrorInjector, FailFor
from tests.conftest import load_event, make_runtime
from tests.integration.conftest import Inbox
from tests.integration.test_alarms import LEGACY_ARN as LEGACY_FULL_ARN
from tests.integration.test_alarms import _unused_secret_deletion, add_service, rows, section

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
    """A retry that found a consumer no earlier warning named says so, naming what it could not
    check; one that knows the same as before stays quiet."""
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


# ---------------------- which attempt of a throttled deletion warns: one item per event


NOBODY = "arn:aws:ecs:us-east-1:123456789012:cluster/(none)"


class ScanThrottle:
    """ECS throttled at the botocore level, per attempt: ListServices of up to two clusters,
    and ListClusters (every cluster)."""

    def __init__(self, clients: AwsClients) -> None:
        self.first = FailFor("ListServices", "ThrottlingException", cluster=NOBODY)
        self.second = FailFor("ListServices", "ThrottlingException", cluster=NOBODY)
        self.first.attach(clients.ecs)
        self.second.attach(clients.ecs)
        self.listing = ErrorInjector(0.0, operations={"ListClusters"}).attach(clients.ecs)

    def set(self, *clusters: str, listing: bool = False) -> None:
        first, second = [*clusters, NOBODY, NOBODY][:2]
        self.first.when = {"cluster": first}
        self.second.when = {"cluster": second}
        self.listing.rate = 1.0 if listing else 0.0


def _cluster(clients: AwsClients, name: str) -> str:
    return str(clients.ecs.describe_clusters(clusters=[name])["clusters"][0]["clusterArn"])


def test_an_attempt_warns_again_only_when_it_names_a_consumer_no_earlier_warning_named(
    invoke, clients: AwsClients, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real throttling fails other clusters on each attempt. An attempt that knows the same
    consumers (or fewer, or none) stays quiet whatever failed; one that finds another consumer
    warns, and counts the ones an earlier warning named."""
    clients.ecs.create_cluster(clusterName="tools")  # no consumer there
    add_service(clients, "batch", "legacy-report", LEGACY_FULL_ARN)
    prod, batch, tools = (_cluster(clients, n) for n in ("prod", "batch", "tools"))
    throttle = ScanThrottle(clients)
    event = load_event("delete-secret-recovery-window.json")

    throttle.set(batch)  # finds prod/api: the first attempt warns
    _attempts(invoke, event, count=1)
    (first,) = inbox.drain()
    assert [s.split(":")[0] for s in section(first["Message"], "Still referenced by")] == [
        "prod/api"
    ]
    throttle.set(batch, tools)  # the same consumer, other clusters unchecked: quiet
    _attempts(invoke, event, count=1)
    throttle.set(listing=True)  # nothing read at all: quiet
    _attempts(invoke, event, count=1)
    throttle.set(prod, tools)  # only batch read: batch/legacy-report is new
    _attempts(invoke, event, count=1)
    (second,) = inbox.drain()
    throttle.set(prod)  # the same consumer again: quiet
    _attempts(invoke, event, count=1)

    assert inbox.drain() == []
    body = second["Message"]
    assert "is still used by at least 2 service(s)" in second["Subject"]
    assert [s.split(":")[0] for s in section(body, "Still referenced by")] == [
        "batch/legacy-report"
    ]
    assert section(body, "Also named by an earlier warning")[0].startswith("1 service(s)")
    emf = Emf.read(capsys)
    assert emf.total("NotificationsSent") == 2
    assert emf.total("NotificationsSuppressed") == 3

    throttle.set()  # ECS answers again: the complete warning
    assert invoke(copy.deepcopy(event))["status"] == "processed"
    (complete,) = inbox.drain()
    assert "is still used by 2 service(s)" in complete["Subject"]


def test_across_containers_an_attempt_warns_only_with_a_new_consumer_at_one_write_each(
    clients: AwsClients, retry: RetryPolicy, world: Any, inbox: Inbox, state_table: str
) -> None:
    """Each attempt in a fresh container (ROTOR_STATE_TABLE): the same rule, kept in one item
    per event, written at most once per attempt whatever the number of consumers."""
    add_service(clients, "batch", "legacy-report", LEGACY_FULL_ARN)
    prod, batch = _cluster(clients, "prod"), _cluster(clients, "batch")
    throttle = ScanThrottle(clients)
    dynamodb = ApiCalls().attach(clients.dynamodb)
    event = load_event("delete-secret-recovery-window.json")
    settings = Settings(topic_arn=inbox.topic_arn, state_table=state_table)
    key = f"deletion-warning#{event['id']}"

    def attempt() -> int:
        """One attempt in a new container; how many writes it made to the event's item."""
        before = len(dynamodb.of("PutItem"))
        runtime = make_runtime(clients, retry, settings)
        handler = make_handler(ALARM_KINDS, lambda: runtime)
        with pytest.raises(RetryableFailure):
            handler(copy.deepcopy(event), FakeLambdaContext())
        puts = dynamodb.of("PutItem")[before:]
        return sum(1 for p in puts if p["Item"]["pk"]["S"] == key)

    throttle.set(batch)
    assert attempt() == 1
    throttle.set(listing=True)
    assert attempt() == 0
    throttle.set(batch)
    assert attempt() == 0
    throttle.set(prod)
    assert attempt() == 1

    subjects = [m["Subject"] for m in inbox.drain()]
    assert len(subjects) == 2, subjects
    item = clients.dynamodb.get_item(TableName=state_table, Key={"pk": {"S": key}})["Item"]
    assert len(item["named"]["S"]) == 2 * 16  # two consumers, one digest each


def test_a_deletion_still_in_use_counts_once_over_partial_and_complete_warnings(
    invoke, clients: AwsClients, inbox: Inbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """DeletedSecretStillReferenced means one deletion of a secret still in use: counted by the
    first warning that names a consumer, not again by a later or the complete one."""
    add_service(clients, "batch", "legacy-report", LEGACY_FULL_ARN)
    prod, batch = _cluster(clients, "prod"), _cluster(clients, "batch")
    throttle = ScanThrottle(clients)
    event = load_event("delete-secret-recovery-window.json")

    throttle.set(batch)
    _attempts(invoke, event, count=1)
    throttle.set(prod)
    _attempts(invoke, event, count=1)
    throttle.set()
    invoke(copy.deepcopy(event))

    assert len(inbox.drain()) == 3
    assert Emf.read(capsys).total("DeletedSecretStillReferenced") == 1


class FailDynamoDb:
    """The state table's ``operation`` throttled past every retry while ``armed``, after the
    first ``spare`` calls."""

    def __init__(self, clients: AwsClients, operation: str, spare: int = 0) -> None:
        self.armed = True
        self.spare = spare
        self.seen = 0
        clients.dynamodb.meta.events.register(f"before-call.dynamodb.{operation}", self._fail)

    def _fail(self, **_: Any) -> Any:
        if not self.armed:
            return None
        self.seen += 1
        if self.seen <= self.spare:
            return None
        http = AWSResponse("https://fake.invalid/", 400, {}, None)
        return http, {
            "Error": {"Code": "ThrottlingException", "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }


def test_a_partial_warning_sent_is_known_to_the_all_clear_even_if_no_write_follows_it(
    clients: AwsClients, retry: RetryPolicy, world: Any, inbox: Inbox, state_table: str
) -> None:
    """The state table refuses every write after the attempt's first: the decision to warn is
    that first write, made before the send, so the all-clear still follows the warning."""
    event = _unused_secret_deletion(clients)
    throttle = ErrorInjector(1.0, operations={"ListClusters"}).attach(clients.ecs)
    settings = Settings(topic_arn=inbox.topic_arn, state_table=state_table)
    runtime = make_runtime(clients, retry, settings)
    handler = make_handler(ALARM_KINDS, lambda: runtime)
    writes = FailDynamoDb(clients, "PutItem", spare=1)

    with pytest.raises((RetryableFailure, AwsCallError)):
        handler(copy.deepcopy(event), FakeLambdaContext())
    (partial,) = inbox.drain()
    assert "could not check every ECS service for it yet" in partial["Subject"]

    writes.armed = False
    throttle.rate = 0.0
    result = handler(copy.deepcopy(event), FakeLambdaContext())

    assert result["status"] == "processed"
    (all_clear,) = inbox.drain()
    assert "no ECS service references it" in all_clear["Subject"]


def test_no_all_clear_without_a_warning_even_when_the_state_table_refuses_deletes(
    clients: AwsClients, retry: RetryPolicy, world: Any, inbox: Inbox, state_table: str
) -> None:
    """Whether a warning went out is one read of the event's item: nothing is claimed to look,
    so nothing left behind by a failed give-back makes a later attempt send a false all-clear."""
    event = _unused_secret_deletion(clients)
    settings = Settings(topic_arn=inbox.topic_arn, state_table=state_table)
    runtime = make_runtime(clients, retry, settings)
    handler = make_handler(ALARM_KINDS, lambda: runtime)
    deletes = FailDynamoDb(clients, "DeleteItem")

    for _ in range(2):  # the event and a second delivery of it
        with contextlib.suppress(AwsCallError):
            handler(copy.deepcopy(event), FakeLambdaContext())
        deletes.armed = False

    assert inbox.drain() == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_partial_warning_whose_send_failed_is_sent_by_the_next_attempt(
    invoke, handler_runtime: Runtime, clients: AwsClients, inbox: Inbox
) -> None:
    """The decision to warn is written before the send and given back when the send fails."""
    FailFor("ListServices", "ThrottlingException", cluster=_batch_cluster(clients)).attach(
        clients.ecs
    )
    failures = FailFirstPublishes(handler_runtime.retry.max_attempts).attach(clients.sns)
    event = load_event("delete-secret-recovery-window.json")

    with pytest.raises(AwsCallError):
        invoke(copy.deepcopy(event))
    assert failures.left == 0
    assert inbox.drain() == []
    _attempts(invoke, event, count=2)

    (partial,) = inbox.drain()
    assert "is still used by at least 1 service(s)" in partial["Subject"]


def test_a_deletion_whose_describe_secret_stays_throttled_warns_once_with_what_the_event_says(
    invoke, clients: AwsClients, inbox: Inbox
) -> None:
    """DescribeSecret throttled through every retry: nothing is known of the consumers, but the
    event names the secret, who deleted it and when. That goes out once, saying rotor could not
    read it yet; every attempt fails as retryable; the attempt that reads it sends the rest."""
    describe = ErrorInjector(1.0, operations={"DescribeSecret"}).attach(clients.secretsmanager)
    event = load_event("delete-secret-recovery-window.json")

    _attempts(invoke, event)

    assert describe.injected["DescribeSecret"] > 0
    (unread,) = inbox.drain()
    assert "could not check ECS services for it yet" in unread["Subject"]
    body = unread["Message"]
    fields = rows(body)
    assert fields["Secret"] == "prod/legacy-token"
    assert fields["ARN"] == LEGACY_FULL_ARN
    assert "2026-11-27T11:00:00Z" in fields["Deletion"]
    assert fields["Deleted by"].startswith("arn:aws:iam::123456789012:user/alice")
    assert fields["At"] == "2026-11-20T11:00:00Z"
    not_yet = section(body, "Not checked yet")
    assert "could not read the secret" in not_yet[0] and "Throttling" in not_yet[0]
    todo = " ".join(section(body, "What to do:"))
    assert f"rotor discover '{LEGACY_FULL_ARN}'" in todo
    assert "restore-secret" in todo

    describe.rate = 0.0
    assert invoke(copy.deepcopy(event))["status"] == "processed"
    (complete,) = inbox.drain()
    assert "is still used by 1 service(s)" in complete["Subject"]


def test_a_partial_warning_goes_out_even_when_the_state_table_cannot_record_it(
    clients: AwsClients, retry: RetryPolicy, world: Any, inbox: Inbox, state_table: str
) -> None:
    """Rather twice than never: the state table throttled through every retry does not keep
    the warning of what is known from going out."""
    FailFor("ListServices", "ThrottlingException", cluster=_batch_cluster(clients)).attach(
        clients.ecs
    )
    FailDynamoDb(clients, "PutItem")
    runtime = make_runtime(
        clients, retry, Settings(topic_arn=inbox.topic_arn, state_table=state_table)
    )
    handler = make_handler(ALARM_KINDS, lambda: runtime)

    with pytest.raises(RetryableFailure):
        handler(load_event("delete-secret-recovery-window.json"), FakeLambdaContext())

    (partial,) = inbox.drain()
    assert "is still used by at least 1 service(s)" in partial["Subject"]


def test_a_full_event_item_still_warns_only_when_an_attempt_names_more_consumers(
    invoke, clients: AwsClients, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the digests one item holds, an attempt warns again only when it names more
    consumers than any earlier warning did: the item stays bounded, the rule conservative."""
    from orchestration.alarms import use_cases

    monkeypatch.setattr(use_cases, "_MAX_NAMED", 1)
    clients.ecs.create_cluster(clusterName="tools")
    add_service(clients, "batch", "legacy-report", LEGACY_FULL_ARN)
    prod, batch, tools = (_cluster(clients, n) for n in ("prod", "batch", "tools"))
    throttle = ScanThrottle(clients)
    event = load_event("delete-secret-recovery-window.json")

    sent = []
    for throttled in ((batch,), (prod,), (prod,), (batch,), (tools,), (tools,)):
        throttle.set(*throttled)
        _attempts(invoke, event, count=1)
        sent.append(len(inbox.drain()))

    # first; a new consumer; then the item is full: one consumer is not more than before,
    # two are (once).
    assert sent == [1, 1, 0, 0, 1, 0]
