"""Fixtures for the moto integration tests: small dedicated worlds and event builders.

``ecs_world`` builds a world with plain boto3 calls (create_secret, register_task_definition,
create_cluster, create_service), backdates PRIMARY deployments in the moto backend, and reads
deployments back through a separate, uninstrumented ECS client so that read-backs never show
up in the ``ecs_calls`` counts. It also counts the UpdateService calls that reached moto's
backend (after every injected error), per service.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine

from orchestration.aws.clients import AwsClients
from orchestration.cli.world import Inbox, backdate_deployment
from orchestration.state.consumer_index import ConsumerIndex, MemoryConsumerIndex
from orchestration.state.notify_window import DynamoDbNotifyWindow, MemoryNotifyWindow, NotifyWindow
from orchestration.state.redeploy_ledger import (
    DynamoDbRedeployLedger,
    MemoryRedeployLedger,
    RedeployLedger,
)
from orchestration.state.rollouts import DynamoDbRolloutStore, MemoryRolloutStore, RolloutStore
from orchestration.state.service_lease import ServiceLeases
from orchestration.state.store import DynamoDbStateStore, MemoryStateStore, StateStore
from orchestration.state.task_definitions import StoredTaskDefinitionCache, TaskDefinitionCache
from tests.aws_fakes import queue_with_dead_letters, sqs_lambda_event
from tests.conftest import ACCOUNT, REGION, load_event

#: One clock for every test: each integration test starts at NOW (``_clock`` below), whenever
#: it runs and whatever the machine's clock says; rotations happened a minute before, stale
#: deployments ten days before, fresh ones thirty seconds before (after the rotation). Moto
#: stamps a forced deployment with the clock's "now", so it lands just after NOW. NOW is after
#: the sample events (2026-11-20), which tests replay as events of the past.
NOW = datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC)
ROTATED_AT = NOW - timedelta(minutes=1)
STALE = NOW - timedelta(days=10)
FRESH = NOW - timedelta(seconds=30)
OTHER_ACCOUNT = "210987654321"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def rotation_event(
    secret_arn: str, at: datetime = ROTATED_AT, *, account: str = ACCOUNT, event_id: str = ""
) -> dict[str, Any]:
    """rotation-succeeded.json, about ``secret_arn``, completed at ``at``."""
    event = load_event("rotation-succeeded.json")
    event["id"] = event_id or str(uuid.uuid4())
    event["time"] = iso(at)
    event["account"] = account
    detail = event["detail"]
    detail["eventTime"] = iso(at)
    detail["additionalEventData"]["SecretId"] = secret_arn
    detail["requestID"] = f"Rotation-{secret_arn}-{uuid.uuid4()}"
    detail["userIdentity"]["accountId"] = account
    detail["recipientAccountId"] = account
    return event


def label_event(secret_arn: str, name: str, at: datetime = ROTATED_AT) -> dict[str, Any]:
    """secret-label-updated-awscurrent.json (the native event), about ``secret_arn``."""
    event = load_event("secret-label-updated-awscurrent.json")
    event["id"] = str(uuid.uuid4())
    event["time"] = iso(at)
    event["resources"] = [secret_arn]
    event["detail"]["name"] = name
    return event


def put_value_event(callers_words: str, at: datetime = ROTATED_AT) -> dict[str, Any]:
    """A PutSecretValue event that names the secret only as the caller did (no responseElements)."""
    event = load_event("put-secret-value-awscurrent.json")
    event["id"] = str(uuid.uuid4())
    event["time"] = iso(at)
    detail = event["detail"]
    detail["eventTime"] = iso(at)
    detail["requestParameters"]["secretId"] = callers_words
    detail["responseElements"] = None
    return event


class EcsWorld:
    """A small world built with boto3 calls inside the active moto mock."""

    def __init__(self, clients: AwsClients) -> None:
        from moto.ecs.models import ecs_backends

        self.sm = clients.secretsmanager
        # A second client, without rate limiter, fakes or counters: read-backs only.
        self.ecs = boto3.client("ecs", region_name=REGION)
        self.backend = ecs_backends[ACCOUNT][REGION]
        self.updates_reached_moto: Counter[str] = Counter()  # service name -> calls
        self._families = 0
        real_update = self.backend.update_service

        def counting_update(service_properties: dict[str, Any]) -> Any:
            name = str(service_properties.get("service", "")).rsplit("/", 1)[-1]
            self.updates_reached_moto[name] += 1
            return real_update(service_properties)

        # Instance attribute: moto's responses call ``self.ecs_backend.update_service``.
        self.backend.update_service = counting_update

    def secret(self, name: str) -> str:
        arn: str = self.sm.create_secret(Name=name, SecretString="placeholder")["ARN"]
        return arn

    def task_definition(
        self,
        *,
        secrets: Iterable[str] = (),
        repository_credentials: str | None = None,
        secret_options: Iterable[str] = (),
        family: str | None = None,
        containers: int = 1,
    ) -> str:
        self._families += 1
        family = family or f"family-{self._families}"
        container: dict[str, Any] = {
            "name": "app",
            "image": "registry.example.com/app:1",
            "memory": 256,
            "secrets": [{"name": f"S{i}", "valueFrom": v} for i, v in enumerate(secrets)],
        }
        if repository_credentials:
            container["repositoryCredentials"] = {"credentialsParameter": repository_credentials}
        options = list(secret_options)
        if options:
            container["logConfiguration"] = {
                "logDriver": "splunk",
                "options": {"splunk-url": "https://splunk.example.com"},
                "secretOptions": [{"name": f"o{i}", "valueFrom": v} for i, v in enumerate(options)],
            }
        definitions = [container] + [
            {"name": f"sidecar-{i}", "image": "registry.example.com/sidecar:1", "memory": 64}
            for i in range(1, containers)
        ]
        arn: str = self.ecs.register_task_definition(
            family=family, containerDefinitions=definitions
        )["taskDefinition"]["taskDefinitionArn"]
        return arn

    def cluster(self, name: str) -> str:
        arn: str = self.ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
        return arn

    def service(
        self,
        cluster: str,
        name: str,
        task_definition: str,
        *,
        deployed_at: datetime = STALE,
        desired_count: int = 1,
        tags: Mapping[str, str] | None = None,
        controller: str = "ECS",
        load_balancers: Iterable[tuple[str, int]] = (),
    ) -> str:
        """A service; ``task_definition`` "" for an EXTERNAL one (its task sets carry them)."""
        kwargs: dict[str, Any] = {}
        if tags:
            kwargs["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if task_definition:
            kwargs["taskDefinition"] = task_definition
        if controller != "ECS":
            kwargs["deploymentController"] = {"type": controller}
        targets = [
            {
                "targetGroupArn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:"
                f"targetgroup/{name}-{i}/0123456789abcdef",
                "containerName": container,
                "containerPort": port,
            }
            for i, (container, port) in enumerate(load_balancers)
        ]
        if targets:
            kwargs["loadBalancers"] = targets
        arn: str = self.ecs.create_service(
            cluster=cluster,
            serviceName=name,
            desiredCount=desired_count,
            **kwargs,
        )["service"]["serviceArn"]
        backdate_deployment(self.backend, cluster, name, deployed_at)
        return arn

    def task_set(
        self, cluster: str, service: str, task_definition: str, *, created_at: datetime = STALE
    ) -> str:
        """A task set of a CODE_DEPLOY/EXTERNAL service, made PRIMARY, created at ``created_at``."""
        arn: str = self.ecs.create_task_set(
            cluster=cluster, service=service, taskDefinition=task_definition
        )["taskSet"]["taskSetArn"]
        self.ecs.update_service_primary_task_set(
            cluster=cluster, service=service, primaryTaskSet=arn
        )
        for task_set in self.backend.services[f"{cluster}:{service}"].task_sets:
            if task_set.task_set_arn == arn:
                task_set.createdAt = created_at
        return arn

    def primary(self, cluster: str, service: str) -> dict[str, Any]:
        """The PRIMARY deployment as DescribeServices shows it."""
        found = self.ecs.describe_services(cluster=cluster, services=[service])["services"]
        assert len(found) == 1, f"{cluster}/{service} not found"
        deployments = [d for d in found[0]["deployments"] if d["status"] == "PRIMARY"]
        assert len(deployments) == 1
        return copy.deepcopy(deployments[0])

    def primaries(self, names: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        return {f"{c}/{s}": self.primary(c, s) for c, s in names}


@pytest.fixture
def ecs_world(clients: AwsClients) -> EcsWorld:
    return EcsWorld(clients)


def changed(before: Mapping[str, dict[str, Any]], after: Mapping[str, dict[str, Any]]) -> set[str]:
    """The services whose PRIMARY deployment id changed."""
    return {name for name in before if before[name]["id"] != after[name]["id"]}


def update_calls_per_service(calls: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """UpdateService calls (as sent, injected failures included) per service name."""
    return Counter(str(params["service"]).rsplit("/", 1)[-1] for params in calls)


STATE_TABLE = "rotor-state"


@pytest.fixture
def state_table(clients: AwsClients) -> str:
    """The ROTOR_STATE_TABLE of the stack: key ``pk`` (string); holds windows and the ledger."""
    clients.dynamodb.create_table(
        TableName=STATE_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return STATE_TABLE


@pytest.fixture
def inbox(clients: AwsClients) -> Inbox:
    """An SQS queue subscribed to the notification topic: what a subscriber receives."""
    return Inbox.subscribe(clients, "rotor-alarms")


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    """Every test starts at NOW and the clock runs from there: no test depends on when it
    starts (a test that started minutes after collection once saw its own "now" move past
    the times it had built its events with)."""
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture(autouse=True)
def _no_metrics_left_over() -> Iterator[None]:
    """Powertools' Metrics is one object per process: no test sees another's metrics."""
    from handlers.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


MAX_RECEIVES = 3


@dataclass
class RedeployQueue:
    """The stack's redeploy queue and its dead-letter queue (redrive after MAX_RECEIVES)."""

    sqs: Any
    url: str
    arn: str
    dlq_url: str

    def receive(self, queue_url: str | None = None) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=queue_url or self.url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def sqs_event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The event Lambda's SQS event source hands the worker for ``messages``."""
        return sqs_lambda_event(messages, self.arn, REGION)

    def delete(self, messages: list[dict[str, Any]], failed_ids: set[str]) -> None:
        """What the event source does after the worker returns: delete the successes."""
        for m in messages:
            if m["MessageId"] not in failed_ids:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def counts(self, queue_url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())


@pytest.fixture
def redeploy_queue(clients: AwsClients) -> RedeployQueue:
    sqs = clients.sqs
    url, arn, dlq = queue_with_dead_letters(
        sqs, "rotor-redeploy", visibility_timeout=120, max_receives=MAX_RECEIVES
    )
    return RedeployQueue(sqs, url, arn, dlq)


@dataclass
class Stack:
    """The stack's functions, as deployed, on one runtime (settings as the stack sets them)."""

    runtime: Any
    rotation: Any
    worker: Any
    tracker: Any


@pytest.fixture
def queued_runtime(clients: AwsClients, retry: Any, redeploy_queue: RedeployQueue) -> Any:
    """Build the stack's handlers on a runtime with the redeploy queue and ``settings``."""
    from handlers.entry import make_handler
    from handlers.worker import make_worker_handler
    from orchestration.events.classification import REDEPLOY_KINDS, TRACKER_KINDS
    from orchestration.settings import Settings
    from tests.conftest import make_runtime

    def build(**settings: Any) -> Stack:
        runtime = make_runtime(
            clients, retry, Settings(redeploy_queue_url=redeploy_queue.url, **settings)
        )
        return Stack(
            runtime,
            make_handler(REDEPLOY_KINDS, lambda: runtime),
            make_worker_handler(lambda: runtime),
            make_handler(TRACKER_KINDS, lambda: runtime),
        )

    return build


@pytest.fixture
def sqs_calls(clients: AwsClients) -> Any:
    from tests.aws_fakes import ApiCalls

    return ApiCalls().attach(clients.sqs)


# --- the state layer's backends, for the store contracts ------------------------------------


@dataclass
class Backend:
    """One backend of the state layer: memory, or the state table in moto. Every store is built
    on it, so one contract runs against both; two stores built on one backend share its
    storage (two Lambda containers and one table, or one process's memory)."""

    name: str
    retry: Any
    clients: AwsClients | None = None
    table: str = ""

    def __post_init__(self) -> None:
        self._memory = MemoryStateStore()
        self._summaries = TaskDefinitionCache()
        self._index = MemoryConsumerIndex()

    def _dynamodb(self) -> tuple[Any, str, Any] | None:
        if self.name == "memory":
            return None
        assert self.clients is not None
        return self.clients.dynamodb, self.table, self.retry

    def state_store(self) -> StateStore:
        aws = self._dynamodb()
        return DynamoDbStateStore(*aws) if aws else self._memory

    def ledger(self) -> RedeployLedger:
        aws = self._dynamodb()
        return DynamoDbRedeployLedger(*aws) if aws else MemoryRedeployLedger(self._memory)

    def notify_window(self, window: timedelta = timedelta(minutes=15)) -> NotifyWindow:
        aws = self._dynamodb()
        if aws:
            client, table, retry = aws
            return DynamoDbNotifyWindow(client, table, window, retry)
        return MemoryNotifyWindow(window, self._memory)

    def leases(self) -> ServiceLeases:
        return ServiceLeases(self.state_store())

    def rollouts(self) -> RolloutStore:
        aws = self._dynamodb()
        return DynamoDbRolloutStore(*aws) if aws else MemoryRolloutStore(self._memory)

    def task_definitions(self) -> TaskDefinitionCache:
        aws = self._dynamodb()
        return StoredTaskDefinitionCache(*aws) if aws else self._summaries

    def consumer_index(self, max_age: timedelta | None = None) -> ConsumerIndex:
        aws = self._dynamodb()
        index: ConsumerIndex = ConsumerIndex.for_table(*aws) if aws else self._index
        if max_age is not None:
            index.max_age = max_age
        return index


#: What ``Backend`` builds, by name: ``test_state_contracts`` checks every store with two
#: backends is among them.
BACKEND_BUILDERS = (
    "state_store",
    "ledger",
    "notify_window",
    "leases",
    "rollouts",
    "task_definitions",
    "consumer_index",
)


@pytest.fixture(params=["memory", "dynamodb"])
def backend(request: pytest.FixtureRequest, retry: Any) -> Backend:
    if request.param == "memory":
        return Backend("memory", retry)
    clients: AwsClients = request.getfixturevalue("clients")
    return Backend("dynamodb", retry, clients, request.getfixturevalue("state_table"))
