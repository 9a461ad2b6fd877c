"""The metrics contract: every alarm of infra/template.yaml watches a metric that exists.

The handlers process every sample event the template's rules route to them (plus the failures
that only errors produce: an AWS error, a permanently failed redeploy, an untrusted account)
inside moto, and their embedded-metric-format output is read from stdout. As deployed, the
redeploy queue is set (a moto SQS queue): the rotation function queues the jobs and the worker
(handlers.worker, fed the messages as the SQS event source hands them over) carries them out,
so each metric is read from the handler that emits it in the stack. Each alarm on rotor's
namespace must watch a (namespace, name, dimensions) the handlers really printed; each AWS/Lambda
and AWS/SQS alarm must watch a function or queue of the template; the CloudTrail alarm must
watch the template's own metric filter. A renamed metric fails here instead of silencing an alarm.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import handlers.entry
from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.events.routing import route, rules_of
from orchestration.settings import Settings
from orchestration.state.rollouts import DeploymentRecord, DynamoDbRolloutStore
from tests.aws_fakes import FailFor, sqs_lambda_event
from tests.conftest import ACCOUNT, REGION, SAMPLE_EVENTS, load_event
from tests.integration.conftest import inbox, state_table  # noqa: F401 - fixtures
from tests.integration.workers import FakeLambdaContext, replica_with_a_consumer

pytestmark = pytest.mark.integration

Metric = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, name, dimensions
REPLICA_REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def _emf_on_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from handlers.observability import metrics

    for name in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def _emitted(stdout: str) -> set[Metric]:
    found = set()
    for line in stdout.splitlines():
        if not (line.startswith("{") and '"_aws"' in line):
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = frozenset((d, str(record[d])) for d in dimension_set)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], dims))
    return found


WORKER = "handlers.worker.lambda_handler"
RECONCILE = "handlers.reconcile.lambda_handler"


def scheduled_event() -> dict[str, Any]:
    """What the reconciler's schedule (an EventBridge rule) invokes it with."""
    return {
        "version": "0",
        "id": "0b1f2d3c-4a5b-6c7d-8e9f-0a1b2c3d4e5f",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2026-11-21T09:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/rotor-ReconcileFunctionSchedule"],
        "detail": {},
    }


def lose_an_event(clients: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    """prod/db gets a new current value whose events never reach rotor, made a month ago (so
    the services deployed since may hold it, and the reconciler asks CloudTrail when it became
    current); CloudTrail's history (LookupEvents, which moto lacks) has nothing on it."""
    from tests.aws_fakes import (
        CloudTrailHistory,
        backdate_secret_version,
        versions_listed_as_aws_lists_them,
    )

    versions_listed_as_aws_lists_them(monkeypatch)
    CloudTrailHistory().attach(clients.cloudtrail)
    made = clients.secretsmanager.put_secret_value(SecretId="prod/db", SecretString="lost")
    backdate_secret_version("prod/db", made["VersionId"], datetime.now(UTC) - timedelta(days=30))


class Containers:
    """The deployed handlers (the template's ``Handler`` strings), each time in a new container.

    A handler module is reloaded so that ``make_handler`` builds a new container runtime, from
    the environment as in Lambda (``ROTOR_*``), on the test's moto clients. With ``jobs`` (the
    redeploy queue's URL), whatever an invocation queued is then handed to the worker, as the
    SQS event source does, until the queue has nothing visible; with ``output`` (capsys), what
    each handler prints is kept per handler in ``printed``.
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        clients: AwsClients,
        *,
        jobs: str | None = None,
        output: pytest.CaptureFixture[str] | None = None,
    ) -> None:
        monkeypatch.setattr(handlers.entry, "AwsClients", lambda: clients)
        self.loaded: dict[str, Callable[..., Any]] = {}
        self.clients = clients
        self.jobs = jobs
        self.output = output
        self.printed: dict[str, list[str]] = {}
        self.jobs_run = 0

    def fresh(self) -> None:
        self.loaded.clear()

    def invoke(self, handler_path: str, event: dict[str, Any]) -> Any:
        if handler_path not in self.loaded:
            module_name, function_name = handler_path.rsplit(".", 1)
            module = importlib.reload(importlib.import_module(module_name))
            self.loaded[handler_path] = getattr(module, function_name)
        answer = None
        try:
            answer = self.loaded[handler_path](event, FakeLambdaContext(remaining_millis=300_000))
        except Exception as exc:  # a failing event raises for Lambda to retry: still flushed
            assert type(exc).__name__ in ("AwsCallError", "PermanentAwsError", "RetryableFailure")
        if self.output is not None:
            self.printed.setdefault(handler_path, []).append(self.output.readouterr().out)
        if self.jobs is not None and handler_path != WORKER:
            self.drain()
        return answer

    def drain(self) -> None:
        """The SQS event source: receive, invoke the worker, delete what it did not fail."""
        assert self.jobs is not None
        sqs = self.clients.sqs
        arn = sqs.get_queue_attributes(QueueUrl=self.jobs, AttributeNames=["QueueArn"])
        while messages := sqs.receive_message(
            QueueUrl=self.jobs, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", []):
            self.jobs_run += len(messages)
            queue_arn = arn["Attributes"]["QueueArn"]
            answer = self.invoke(WORKER, sqs_lambda_event(messages, queue_arn, REGION))
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=self.jobs, ReceiptHandle=m["ReceiptHandle"])


@dataclass
class Emissions:
    every: set[Metric]
    by_handler: dict[str, set[Metric]]
    jobs_run: int
    printed: dict[str, list[str]]

    def total(self, handler: str, name: str) -> float:
        """The sum of every value of metric ``name`` that ``handler`` printed."""
        found = 0.0
        for line in "\n".join(self.printed.get(handler, [])).splitlines():
            if line.startswith("{") and '"_aws"' in line:
                value = json.loads(line).get(name, 0)
                found += sum(value) if isinstance(value, list) else value
        return found


@pytest.fixture
def emissions(
    world: Any,
    clients: AwsClients,
    inbox: Any,  # noqa: F811
    state_table: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Emissions]:
    """Every metric the handlers print while processing what the deployed rules send them,
    and the redeploy jobs the rotation function queues."""
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)
    jobs = clients.sqs.create_queue(QueueName="rotor-redeploy")["QueueUrl"]
    monkeypatch.setenv("ROTOR_REDEPLOY_QUEUE_URL", jobs)
    capsys.readouterr()
    containers = Containers(monkeypatch, clients, jobs=jobs, output=capsys)
    # Rollouts, in the state table every container shares: the sample deployments are rotor's
    # (one completes, one rolls back), and prod/api was force-deployed as often as the flap
    # guard allows this hour.
    rollouts = DynamoDbRolloutStore(clients.dynamodb, state_table, RetryPolicy())
    for sample in ("ecs-deployment-completed.json", "ecs-deployment-failed.json"):
        deployment = load_event(sample)
        rollouts.record_deployment(
            DeploymentRecord(
                deployment["detail"]["deploymentId"],
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-Ab12Cd@v1",
                deployment["resources"][0],
                f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod",
                datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-Ab12Cd",
            )
        )
    api = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/prod/api"
    for _ in range(Settings().max_redeploys_per_hour):
        rollouts.take_redeploy_slot(api, datetime.now(UTC), 100, timedelta(hours=1))
    # What only failures emit: an event from an untrusted account ...
    foreign = load_event("rotation-failed.json")
    foreign["account"] = "999999999999"
    containers.invoke(route(foreign)[0].handler, foreign)
    # ... a redeploy that failed for good (admin-console holds prod/db-admin's old value) ...
    failing = FailFor("UpdateService", "AccessDeniedException")  # for this event's jobs
    failing.attach(clients.ecs)
    rotation = load_event("put-secret-value-awscurrent.json")
    containers.invoke(route(rotation)[0].handler, rotation)  # the worker runs its jobs too
    assert failing.hits == 1
    clients.ecs.meta.events.unregister("before-call.ecs.UpdateService", failing._fail)
    # ... an event the rules route but rotor cannot read (poison: dropped and counted) ...
    poison = load_event("delete-secret-recovery-window.json")
    poison["detail"]["requestParameters"]["recoveryWindowInDays"] = "seven"
    containers.invoke(route(poison)[0].handler, poison)
    # ... a secret whose replica failed to replicate: its consumer in that region is
    # reported (ReplicationFailures), not redeployed ...
    containers.fresh()
    monkeypatch.setenv("ROTOR_REGIONS", REPLICA_REGION)
    replicated = replica_with_a_consumer(clients, REPLICA_REGION, failed=True)
    rotated = load_event("rotation-succeeded.json")
    rotated["detail"]["additionalEventData"]["SecretId"] = replicated
    containers.invoke(route(rotated)[0].handler, rotated)
    monkeypatch.delenv("ROTOR_REGIONS")
    containers.fresh()
    # ... then everything the deployed rules route to the handlers ...
    routed = 0
    for path in SAMPLE_EVENTS:
        event = json.loads(path.read_text())
        for r in route(event):
            containers.invoke(r.handler, copy.deepcopy(event))
            routed += 1
    assert routed >= 10
    # ... a cluster rotor cannot read (a new container: no cached inventory; no consumer
    # index yet, so the rotation scans) ...
    containers.fresh()
    batch = clients.ecs.describe_clusters(clusters=["batch"])["clusters"][0]["clusterArn"]
    unreadable = FailFor("ListServices", "AccessDeniedException", cluster=batch)
    unreadable.attach(clients.ecs)
    partial = load_event("rotation-succeeded.json")
    containers.invoke(route(partial)[0].handler, partial)
    # ... an AWS error that stops an event ...
    containers.fresh()
    denied = FailFor("ListClusters", "AccessDeniedException")
    denied.attach(clients.ecs)
    stopped = load_event("rotation-succeeded.json")
    containers.invoke(route(stopped)[0].handler, stopped)
    unreadable.detach(clients.ecs)
    denied.detach(clients.ecs)
    # ... and last a rotation whose events were lost, which the scheduled reconciler heals
    # (its pass builds the consumer index, which later rotations would read instead).
    containers.fresh()
    lose_an_event(clients, monkeypatch)
    containers.invoke(RECONCILE, scheduled_event())
    assert not capsys.readouterr().out  # everything printed was kept per handler
    by_handler = {h: _emitted("\n".join(out)) for h, out in containers.printed.items()}
    yield Emissions(
        set().union(*by_handler.values()), by_handler, containers.jobs_run, containers.printed
    )
    # Leave the handler modules as a new process would have them: no runtime on dead clients.
    monkeypatch.undo()
    for module in {h.rsplit(".", 1)[0] for h in containers.loaded} | {
        "handlers.rotation",
        "handlers.alarms",
        "handlers.tracker",
        "handlers.worker",
        "handlers.reconcile",
    }:
        importlib.reload(importlib.import_module(module))


@pytest.fixture
def emitted(emissions: Emissions) -> set[Metric]:
    return emissions.every


def _globals_env(stack: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = stack["Globals"]["Function"]["Environment"]["Variables"]
    return env


def _dimensions(alarm: dict[str, Any]) -> frozenset[tuple[str, str]]:
    return frozenset((d["Name"], str(d["Value"])) for d in alarm.get("Dimensions", []))


def contract_violations(stack: dict[str, Any], emitted: set[Metric]) -> list[str]:
    """Every alarm of ``stack`` that watches nothing real, with why."""
    resources: dict[str, Any] = stack["Resources"]
    namespace = _globals_env(stack)["POWERTOOLS_METRICS_NAMESPACE"]
    functions = {n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    queues = {n for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    filters = {
        (t["MetricNamespace"], t["MetricName"])
        for r in resources.values()
        if r["Type"] == "AWS::Logs::MetricFilter"
        for t in r["Properties"]["MetricTransformations"]
    }
    problems = []
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        watched = (alarm["Namespace"], alarm["MetricName"], _dimensions(alarm))
        if alarm["Namespace"] == namespace:
            if watched not in emitted:
                problems.append(f"{name} watches {watched}, which no handler emits")
        elif alarm["Namespace"] == "AWS/Lambda":
            (dimension,) = alarm["Dimensions"]
            if (
                dimension["Name"] != "FunctionName"
                or dimension["Value"].get("Ref") not in functions
            ):
                problems.append(f"{name} watches no function of the template")
        elif alarm["Namespace"] == "AWS/SQS":
            (dimension,) = alarm["Dimensions"]
            target = dimension["Value"].get("Fn::GetAtt", [None])[0]
            if dimension["Name"] != "QueueName" or target not in queues:
                problems.append(f"{name} watches no queue of the template")
        elif (alarm["Namespace"], alarm["MetricName"]) not in filters:
            problems.append(f"{name} watches {watched}, which no metric filter makes")
        actions = alarm.get("AlarmActions", [])
        if {"Ref": "NotificationTopic"} not in actions:
            problems.append(f"{name} does not notify the topic")
    return problems


def test_every_alarm_watches_a_metric_the_code_emits(
    stack: dict[str, Any], emitted: set[Metric]
) -> None:
    assert contract_violations(stack, emitted) == []


def test_the_handlers_emit_under_the_templates_namespace_and_service(
    stack: dict[str, Any], emitted: set[Metric]
) -> None:
    env = _globals_env(stack)
    service = frozenset({("service", env["POWERTOOLS_SERVICE_NAME"])})
    assert {(ns, dims) for ns, _, dims in emitted} == {
        (env["POWERTOOLS_METRICS_NAMESPACE"], service)
    }


def test_every_rotor_metric_on_the_dashboard_is_emitted(
    stack: dict[str, Any], emitted: set[Metric]
) -> None:
    body = stack["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    shown = re.findall(r'\["Rotor", "(\w+)", "service", "(\w+)"\]', body)
    assert len(shown) >= 8
    names = {(name, dims) for _, name, dims in emitted}
    missing = [m for m, s in shown if (m, frozenset({("service", s)})) not in names]
    assert missing == []


def test_every_metric_the_handlers_emit_is_documented(emitted: set[Metric]) -> None:
    """docs/operations.md's metrics table names every metric an operator will see."""
    from tests.unit.test_docs_match_code import documented_metrics

    names = {name for _, name, _ in emitted}
    assert len(names) >= 15  # the rest only special set-ups emit: the unit test covers them
    assert sorted(names - documented_metrics()) == []


def test_a_renamed_metric_breaks_the_contract(stack: dict[str, Any], emitted: set[Metric]) -> None:
    renamed = copy.deepcopy(stack)
    renamed["Resources"]["RedeployFailuresAlarm"]["Properties"]["MetricName"] = "RedeployFailed"
    renamed["Resources"]["RotationFunctionErrorsAlarm"]["Properties"]["Dimensions"] = [
        {"Name": "FunctionName", "Value": {"Ref": "NoSuchFunction"}}
    ]
    assert [p.split(" ")[0] for p in contract_violations(renamed, emitted)] == [
        "RedeployFailuresAlarm",
        "RotationFunctionErrorsAlarm",
    ]
    assert rules_of(renamed)  # the edited copy still parses as a template


def test_the_redeploys_are_counted_where_the_stack_makes_them(emissions: Emissions) -> None:
    """With the queue set, as deployed, the rotation function plans and queues; the worker
    redeploys (and refuses, and fails); the tracker sees the deployments end."""
    assert emissions.jobs_run >= 3

    def names(handler: str) -> set[str]:
        return {name for _, name, _ in emissions.by_handler.get(handler, set())}

    worker = names(WORKER)
    assert {"RedeploysStarted", "RedeployFailures", "RedeployFlapping"} <= worker
    assert {"TimeToFresh", "RedeployRolledBack"} <= names("handlers.tracker.lambda_handler")
    # Queued, the rotation function starts no deployment itself: the worker does.
    assert emissions.total(WORKER, "RedeploysStarted") >= 1
    assert emissions.total("handlers.rotation.lambda_handler", "RedeploysStarted") == 0
    assert emissions.total("handlers.rotation.lambda_handler", "RedeploysQueued") >= 3
