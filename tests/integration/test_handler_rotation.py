"""The rotation Lambda handler, end to end inside moto with the sample world seeded.

Each test builds the handler with ``make_handler`` and a runtime built on the test's clients.
Metrics are read from stdout (Powertools prints one EMF JSON line per flush); Powertools'
own log lines and rotor's domain log lines (routed through it) are read from its handler's
stream.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections import Counter
from typing import Any

import pytest

from handlers.entry import make_handler
from handlers.observability import logger as powertools_logger
from orchestration import REDEPLOY_KINDS, AwsCallError, RetryableFailure
from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.runtime import Runtime
from tests.aws_fakes import ErrorInjector
from tests.conftest import Sleeps, load_event, make_runtime
from tests.integration.conftest import EcsWorld
from tests.integration.workers import FakeLambdaContext

pytestmark = pytest.mark.integration

DB_CONSUMERS = {"api", "worker"}  # stale, unpinned, opted in, scaled up: see events/world.json
WORLD_SERVICES = [
    ("prod", s)
    for s in ("api", "worker", "reporting", "billing", "search", "admin-console", "gateway")
] + [("batch", "nightly-export")]
USER_AGENT = load_event("put-secret-value-awscurrent.json")["detail"]["userAgent"]


@pytest.fixture(autouse=True)
def _powertools_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_LOGGER_LOG_EVENT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def use_runtime():
    """The rotation handler as deployed, but on ``runtime`` instead of one from the environment."""

    def build(runtime: Runtime):
        return make_handler(REDEPLOY_KINDS, lambda: runtime)

    return build


@pytest.fixture
def powertools_logs() -> Any:
    """Everything the Powertools logger writes while the test runs (JSON lines)."""
    handler = powertools_logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@pytest.fixture
def seeded(world: Any, clients: AwsClients) -> EcsWorld:
    return EcsWorld(clients)


def emf_lines(stdout: str) -> list[dict[str, Any]]:
    lines = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            lines.append(json.loads(line))
    return lines


def emf_values(record: dict[str, Any]) -> dict[str, float]:
    """Metric name -> value in one EMF record."""
    values = {}
    for directive in record["_aws"]["CloudWatchMetrics"]:
        assert directive["Namespace"] == "Rotor"
        for metric in directive["Metrics"]:
            value = record[metric["Name"]]
            values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


def log_records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def changed_services(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k.split("/")[1] for k in before if before[k]["id"] != after[k]["id"]}


# --- a rotation --------------------------------------------------------------------------


def test_rotation_redeploys_and_emits_metrics(
    seeded, ecs_calls, clients, runtime, use_runtime, capsys, powertools_logs
):
    lambda_handler = use_runtime(runtime)
    before = seeded.primaries(WORLD_SERVICES)
    event = load_event("rotation-succeeded.json")

    result = lambda_handler(event, FakeLambdaContext())

    assert result["status"] == "processed"
    assert result["kind"] == "rotation"
    after = seeded.primaries(WORLD_SERVICES)
    assert changed_services(before, after) == DB_CONSUMERS
    assert seeded.updates_reached_moto == Counter(dict.fromkeys(DB_CONSUMERS, 1))
    assert {a.rsplit("/", 1)[-1] for a in result["redeployed"]} == DB_CONSUMERS
    records = emf_lines(capsys.readouterr().out)
    assert len(records) == 1
    assert emf_values(records[0]) == {
        "ConsumersFound": 6,
        "RedeploysStarted": 2,
        "RedeploysSkipped": 4,
        "RedeployFailures": 0,
    }
    assert records[0]["service"] == "rotor"
    # Structured logs carry the event id as correlation id.
    processed = [r for r in log_records(powertools_logs) if r["message"] == "processed"]
    assert len(processed) == 1
    assert processed[0]["correlation_id"] == event["id"]
    assert processed[0]["kind"] == "rotation"

    # The second delivery (a duplicate) finds everyone fresh.
    again = lambda_handler(event, FakeLambdaContext())
    assert again["redeployed"] == []
    assert seeded.updates_reached_moto == Counter(dict.fromkeys(DB_CONSUMERS, 1))
    assert seeded.primaries(WORLD_SERVICES) == after
    (record,) = emf_lines(capsys.readouterr().out)
    assert emf_values(record) == {
        "ConsumersFound": 6,
        "RedeploysStarted": 0,
        "RedeploysSkipped": 6,
        "RedeployFailures": 0,
    }
    assert ecs_calls.counts["UpdateService"] == 2


def test_event_body_is_not_logged_at_info(
    seeded, clients, runtime, use_runtime, capsys, powertools_logs
):
    lambda_handler = use_runtime(runtime)
    before = seeded.primaries(WORLD_SERVICES)
    event = load_event("put-secret-value-awscurrent.json")  # a person's PutSecretValue
    assert USER_AGENT.startswith("aws-cli/")

    result = lambda_handler(event, FakeLambdaContext())
    # A malformed event with the same body: the error log must not carry it either.
    broken = load_event("put-secret-value-awscurrent.json")
    del broken["detail"]["eventName"]
    dropped = lambda_handler(broken, FakeLambdaContext())

    assert result["status"] == "processed"
    assert changed_services(before, seeded.primaries(WORLD_SERVICES)) == {"admin-console"}
    assert dropped["status"] == "dropped"
    assert USER_AGENT not in dropped["error"]
    # rotor's domain modules log through the Powertools handler: JSON, with the correlation id.
    records = log_records(powertools_logs)
    library = [r for r in records if str(r.get("name", "")).startswith("orchestration.")]
    assert library, "rotor logs what it did"
    assert {r["correlation_id"] for r in library} == {event["id"]}
    assert not any(USER_AGENT in r["message"] for r in library)
    assert not any("alice" in r["message"] for r in library)
    powertools = powertools_logs.getvalue()
    assert '"message":"processed"' in powertools.replace(" ", "")
    assert USER_AGENT not in powertools
    assert "203.0.113.42" not in powertools
    assert USER_AGENT not in capsys.readouterr().out


# --- poison and foreign events -----------------------------------------------------------


@pytest.mark.parametrize(
    "poison",
    [
        pytest.param(
            {k: v for k, v in load_event("rotation-succeeded.json").items() if k != "detail"},
            id="no-detail",
        ),
        pytest.param(["not", "a", "dict"], id="list"),
        pytest.param("not an event", id="string"),
        pytest.param(None, id="none"),
        pytest.param({"detail": "not an object"}, id="detail-not-object"),
    ],
)
def test_poison_event_is_counted_and_dropped(
    seeded, ecs_calls, runtime, use_runtime, capsys, powertools_logs, poison
):
    lambda_handler = use_runtime(runtime)
    before = seeded.primaries(WORLD_SERVICES)

    result = lambda_handler(poison, FakeLambdaContext())

    assert result["status"] == "dropped"
    assert result["error"]
    (record,) = emf_lines(capsys.readouterr().out)
    assert emf_values(record) == {"InvalidEvents": 1}
    errors = [r for r in log_records(powertools_logs) if r["level"] == "ERROR"]
    assert [r["message"] for r in errors] == ["dropped an event rotor cannot read"]
    assert sum(ecs_calls.counts.values()) == 0
    assert seeded.primaries(WORLD_SERVICES) == before


def _rotation_naming(secret_id: str) -> dict[str, Any]:
    event = load_event("rotation-succeeded.json")
    event["detail"]["additionalEventData"]["SecretId"] = secret_id
    event["detail"]["requestID"] = str(uuid.uuid4())
    return event


@pytest.mark.parametrize(
    "secret_id",
    [
        pytest.param("arn:aws:secretsmanager:us-east-1:123456789012:secret", id="truncated-arn"),
        pytest.param("prod/db?", id="not-a-secret-name"),
    ],
)
def test_rotation_naming_an_unparseable_secret_is_poison(
    seeded, ecs_calls, runtime, use_runtime, capsys, secret_id
):
    """Retrying cannot make the secret id readable: drop and count it, do not raise."""
    lambda_handler = use_runtime(runtime)
    before = seeded.primaries(WORLD_SERVICES)

    result = lambda_handler(_rotation_naming(secret_id), FakeLambdaContext())

    assert result["status"] == "dropped"
    (record,) = emf_lines(capsys.readouterr().out)
    assert emf_values(record) == {"InvalidEvents": 1}
    assert ecs_calls.counts["UpdateService"] == 0
    assert seeded.primaries(WORLD_SERVICES) == before


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "sample",
    [
        "get-secret-value-marked-for-deletion.json",
        "delete-secret-recovery-window.json",
        "rotation-failed.json",
    ],
)
def test_alarm_kind_event_is_ignored_by_this_handler(
    seeded, ecs_calls, runtime, use_runtime, capsys, sample
):
    lambda_handler = use_runtime(runtime)
    before = seeded.primaries(WORLD_SERVICES)

    result = lambda_handler(load_event(sample), FakeLambdaContext())

    assert result["status"] == "ignored"
    assert result["kind"] in ("pending_deletion_access", "deletion_scheduled", "rotation_failed")
    assert sum(ecs_calls.counts.values()) == 0
    assert seeded.primaries(WORLD_SERVICES) == before
    assert emf_lines(capsys.readouterr().out) == []


# --- failures a retry can fix ------------------------------------------------------------


def test_retryable_redeploy_failure_raises_and_a_retry_redeploys_once(
    seeded, ecs_calls, clients, use_runtime, sleeps: Sleeps, capsys
):
    injector = ErrorInjector(1.0, operations={"UpdateService"}).attach(clients.ecs)
    lambda_handler = use_runtime(make_runtime(clients, RetryPolicy(max_attempts=2, sleep=sleeps)))
    before = seeded.primaries(WORLD_SERVICES)
    event = load_event("rotation-succeeded.json")

    with pytest.raises(RetryableFailure, match="2 redeploy"):
        lambda_handler(event, FakeLambdaContext())

    assert injector.injected["UpdateService"] == 2 * len(DB_CONSUMERS)  # two attempts each
    assert seeded.primaries(WORLD_SERVICES) == before
    assert sum(seeded.updates_reached_moto.values()) == 0
    (record,) = emf_lines(capsys.readouterr().out)  # flushed even though the handler raised
    assert emf_values(record)["RedeployFailures"] == 2
    assert emf_values(record)["RedeploysStarted"] == 0

    # Lambda retries the event once ECS answers again: each consumer is redeployed once.
    injector.rate = 0.0
    result = lambda_handler(event, FakeLambdaContext())
    assert {a.rsplit("/", 1)[-1] for a in result["redeployed"]} == DB_CONSUMERS
    assert changed_services(before, seeded.primaries(WORLD_SERVICES)) == DB_CONSUMERS
    assert seeded.updates_reached_moto == Counter(dict.fromkeys(DB_CONSUMERS, 1))


def test_retries_stop_at_the_lambda_deadline(
    seeded, ecs_calls, clients, use_runtime, sleeps: Sleeps
):
    """Less time left than the wrap-up margin: one attempt per service, no backoff."""
    injector = ErrorInjector(1.0, operations={"UpdateService"}).attach(clients.ecs)
    lambda_handler = use_runtime(make_runtime(clients, RetryPolicy(max_attempts=10, sleep=sleeps)))
    before = seeded.primaries(WORLD_SERVICES)

    with pytest.raises(RetryableFailure):
        lambda_handler(load_event("rotation-succeeded.json"), FakeLambdaContext(9_000))

    assert injector.injected["UpdateService"] == len(DB_CONSUMERS)
    assert ecs_calls.counts["UpdateService"] == len(DB_CONSUMERS)
    assert sleeps == []
    assert seeded.primaries(WORLD_SERVICES) == before


def test_aws_error_in_discovery_is_logged_and_raised_for_lambda_to_retry(
    seeded, clients, runtime, use_runtime, capsys, powertools_logs
):
    from tests.aws_fakes import FailFor

    lambda_handler = use_runtime(runtime)
    FailFor("ListClusters", "AccessDeniedException").attach(clients.ecs)
    before = seeded.primaries(WORLD_SERVICES)

    with pytest.raises(AwsCallError) as raised:
        lambda_handler(load_event("rotation-succeeded.json"), FakeLambdaContext())

    assert "AccessDeniedException" in str(raised.value)
    assert seeded.primaries(WORLD_SERVICES) == before
    errors = [r for r in log_records(powertools_logs) if r["level"] == "ERROR"]
    assert [(r["operation"], r["code"], r["retryable"]) for r in errors] == [
        ("ListClusters", "AccessDeniedException", False)
    ]
    (record,) = emf_lines(capsys.readouterr().out)
    assert emf_values(record) == {"ProcessingErrors": 1}


class NotAnAwsError(Exception):
    """Something rotor does not expect, raised from inside a use case."""


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        ("ListClusters", NotAnAwsError("a bug in a hook")),
        ("DescribeServices", KeyError("serviceArn")),
        ("UpdateService", TypeError("unexpected answer")),
    ],
)
def test_every_unexpected_error_is_logged_with_the_correlation_id_counted_and_raised(
    seeded, clients, runtime, use_runtime, capsys, powertools_logs, operation, error
):
    lambda_handler = use_runtime(runtime)

    def explode(**_: Any) -> None:
        raise error

    clients.ecs.meta.events.register(f"before-call.ecs.{operation}", explode)
    event = load_event("rotation-succeeded.json")

    with pytest.raises(type(error)):
        lambda_handler(event, FakeLambdaContext())

    errors = [r for r in log_records(powertools_logs) if r["level"] == "ERROR"]
    unexpected = [r for r in errors if r["message"].startswith("unexpected error")]
    assert len(unexpected) == 1
    assert unexpected[0]["correlation_id"] == event["id"]
    assert unexpected[0]["error_type"] == type(error).__name__
    assert "exception" in unexpected[0]  # the traceback, for whoever reads the log
    (record,) = emf_lines(capsys.readouterr().out)
    assert emf_values(record)["ProcessingErrors"] == 1


@pytest.mark.parametrize(
    ("code", "raises"), [("ThrottlingException", True), ("AccessDeniedException", False)]
)
def test_an_unreadable_cluster_fails_the_event_as_retryable_only_when_a_retry_may_help(
    seeded, clients, use_runtime, sleeps: Sleeps, capsys, code, raises
):
    """batch cannot be read; prod's consumers are redeployed either way."""
    lambda_handler = use_runtime(make_runtime(clients, RetryPolicy(max_attempts=2, sleep=sleeps)))
    batch = clients.ecs.describe_clusters(clusters=["batch"])["clusters"][0]["clusterArn"]
    from tests.aws_fakes import FailFor

    FailFor("ListServices", code, cluster=batch).attach(clients.ecs)
    before = seeded.primaries(WORLD_SERVICES)
    event = load_event("rotation-succeeded.json")

    if raises:
        with pytest.raises(RetryableFailure, match="batch"):
            lambda_handler(event, FakeLambdaContext())
    else:
        result = lambda_handler(event, FakeLambdaContext())
        assert result["status"] == "processed"
        assert result["failed"] == [
            {"cluster": batch, "error": result["failed"][0]["error"], "retryable": False}
        ]

    assert changed_services(before, seeded.primaries(WORLD_SERVICES)) == DB_CONSUMERS
    (record,) = emf_lines(capsys.readouterr().out)
    assert emf_values(record)["DiscoveryFailures"] == 1
    assert emf_values(record)["RedeploysStarted"] == 2
