"""The two-region world: one rotation in the primary redeploys each consumer in every region
rotor may act in exactly once, a replica's consumers only once the replica holds the new value.

The world (moto): ``prod/db`` in us-east-1, replicated to eu-west-1 (rotor may act there),
eu-central-1 (rotor may act there; its replication ``Failed``) and ap-southeast-2 (outside
``ROTOR_REGIONS``). ECS services in each region reference the secret there: by full ARN, by
partial ARN, by name (the SSM pass-through, repository credentials).

**Replication as AWS does it, not as moto does.** moto's ``ReplicaSecret`` shares the primary's
versions and reports ``InSync`` at once. AWS replicates asynchronously: the primary's
``DescribeSecret`` lists each replica's ``ReplicationStatus`` (``InProgress``, ``Failed`` or
``InSync``) and the replica's own ``DescribeSecret`` (in its region) shows AWSCURRENT on the new
version only once it is replicated; a replica's description carries no ``ReplicationStatus``.
``Replication`` below is a botocore ``after-call`` hook on the session every rotor client is
made from (so on every region's client): it rewrites the answers of ``DescribeSecret`` as AWS
would give them in each phase of a region's replication, ``lagging`` (``InProgress``, the old
version current in the replica), ``catching-up`` (``InSync`` already, the replica's AWSCURRENT
still old: both conditions are checked), ``synced`` and ``failed``. The test's own reads go
through clients outside that session, so they see moto's truth.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import time_machine

from orchestration import status_report
from orchestration.aws.clients import AwsClients
from orchestration.cli.world import backdate_deployment
from orchestration.settings import Settings
from tests.conftest import ACCOUNT, REGION
from tests.integration.conftest import (
    STALE,
    RedeployQueue,
    label_event,
    rotation_event,
)
from tests.integration.workers import FakeLambdaContext, drain

pytestmark = pytest.mark.integration

PRIMARY = REGION  # us-east-1
EU = "eu-west-1"  # in ROTOR_REGIONS: lags, then catches up
FRA = "eu-central-1"  # in ROTOR_REGIONS: replication Failed
SYD = "ap-southeast-2"  # outside ROTOR_REGIONS
FAILED_MESSAGE = "Replication failed: KMS key arn:aws:kms:eu-central-1:123456789012:key/x disabled"

STATUS = {"lagging": "InProgress", "catching-up": "InSync", "synced": "InSync", "failed": "Failed"}


class Replication:
    """DescribeSecret as AWS answers it while each replica region is in ``phase[region]``."""

    def __init__(self, session: boto3.Session) -> None:
        self.phase: dict[str, str] = {}
        self.old_version = ""
        self.seen: Counter[str] = Counter()  # DescribeSecret answers rewritten, per region
        session.events.register("after-call.secrets-manager.DescribeSecret", self._rewrite)

    def _rewrite(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        region = str(context.get("client_region"))
        if not self.phase or "ARN" not in parsed:
            return
        self.seen[region] += 1
        if region == PRIMARY:
            for entry in parsed.get("ReplicationStatus", []):
                phase = self.phase[entry["Region"]]
                entry["Status"] = STATUS[phase]
                entry["StatusMessage"] = (
                    FAILED_MESSAGE if phase == "failed" else "Replication succeeded"
                )
            return
        parsed.pop("ReplicationStatus", None)  # a replica's own description has none
        parsed["PrimaryRegion"] = PRIMARY
        if self.phase[region] != "synced":
            parsed["VersionIdsToStages"] = {self.old_version: ["AWSCURRENT"]}


class Region:
    """ECS in one region, built and read back with plain clients outside rotor's session."""

    def __init__(self, region: str) -> None:
        from moto.ecs.models import ecs_backends

        self.region = region
        self.ecs = boto3.client("ecs", region_name=region)
        self.backend = ecs_backends[ACCOUNT][region]
        self.updates: Counter[str] = Counter()  # UpdateService calls that reached moto
        real = self.backend.update_service

        def counting(properties: dict[str, Any]) -> Any:
            self.updates[str(properties.get("service", "")).rsplit("/", 1)[-1]] += 1
            return real(properties)

        self.backend.update_service = counting
        self.ecs.create_cluster(clusterName="prod")

    def service(self, name: str, references: list[str], *, credentials: str = "") -> str:
        container: dict[str, Any] = {
            "name": "app",
            "image": "registry.example.com/app:1",
            "memory": 256,
            "secrets": [{"name": f"S{i}", "valueFrom": v} for i, v in enumerate(references)],
        }
        if credentials:
            container["repositoryCredentials"] = {"credentialsParameter": credentials}
        task_definition = self.ecs.register_task_definition(
            family=name, containerDefinitions=[container]
        )["taskDefinition"]["taskDefinitionArn"]
        arn: str = self.ecs.create_service(
            cluster="prod", serviceName=name, taskDefinition=task_definition, desiredCount=1
        )["service"]["serviceArn"]
        backdate_deployment(self.backend, "prod", name, STALE)
        return arn

    def primary_deployment(self, name: str) -> str:
        (service,) = self.ecs.describe_services(cluster="prod", services=[name])["services"]
        return next(str(d["id"]) for d in service["deployments"] if d["status"] == "PRIMARY")


@pytest.fixture
def world(clients: AwsClients) -> dict[str, Any]:
    replication = Replication(clients.session)  # before rotor makes any Secrets Manager client
    regions = {r: Region(r) for r in (PRIMARY, EU, FRA, SYD)}
    sm = boto3.client("secretsmanager", region_name=PRIMARY)
    created = sm.create_secret(
        Name="prod/db",
        SecretString="v1",
        AddReplicaRegions=[{"Region": r} for r in (EU, FRA, SYD)],
    )
    arn = created["ARN"]
    replication.old_version = created["VersionId"]
    in_region = {r: arn.replace(f":{PRIMARY}:", f":{r}:") for r in regions}
    partial = {r: a.rsplit("-", 1)[0] for r, a in in_region.items()}
    other = sm.create_secret(Name="prod/other", SecretString="x")["ARN"]
    services = {
        PRIMARY: {
            "api": regions[PRIMARY].service("api", [arn]),
            "by-name": regions[PRIMARY].service("by-name", [], credentials="prod/db"),
            "bystander": regions[PRIMARY].service("bystander", [other]),
        },
        EU: {
            "api-eu": regions[EU].service("api-eu", [f"{in_region[EU]}:password::"]),
            "partial-eu": regions[EU].service("partial-eu", [partial[EU]]),
            "passthrough-eu": regions[EU].service(
                "passthrough-eu", ["/aws/reference/secretsmanager/prod/db"]
            ),
            "by-name-eu": regions[EU].service("by-name-eu", [], credentials="prod/db"),
            # References the secret of the same name in ANOTHER region: not a consumer here.
            "elsewhere-eu": regions[EU].service("elsewhere-eu", [in_region[SYD]]),
        },
        FRA: {"api-fra": regions[FRA].service("api-fra", [in_region[FRA]])},
        SYD: {"api-syd": regions[SYD].service("api-syd", [in_region[SYD]])},
    }
    return {
        "replication": replication,
        "regions": regions,
        "arn": arn,
        "in_region": in_region,
        "services": services,
        "sm": sm,
    }


def rotate(world: dict[str, Any]) -> str:
    """A new value becomes current in the primary; the replicas get it later (or never)."""
    version: str = world["sm"].put_secret_value(SecretId=world["arn"], SecretString="v2")[
        "VersionId"
    ]
    world["replication"].phase.update({EU: "lagging", FRA: "failed", SYD: "lagging"})
    return version


def deployments(world: dict[str, Any]) -> dict[str, str]:
    return {
        name: world["regions"][region].primary_deployment(name)
        for region, names in world["services"].items()
        for name in names
    }


def updates(world: dict[str, Any]) -> dict[str, int]:
    return {
        name: count
        for region in world["regions"].values()
        for name, count in region.updates.items()
    }


def ecs_calls_per_region(clients: AwsClients) -> Counter[str]:
    """ECS calls rotor makes, per region: on the clients made so far and every one to come."""
    calls: Counter[str] = Counter()

    def record(context: dict[str, Any], **_: Any) -> None:
        calls[str(context.get("client_region"))] += 1

    clients.session.events.register("before-call.ecs", record)
    clients.ecs.meta.events.register("before-call.ecs", record)  # made before the hook
    return calls


def later(minutes: int) -> Any:
    return time_machine.travel(datetime.now(UTC) + timedelta(minutes=minutes), tick=True)


def test_one_rotation_redeploys_each_consumer_in_both_regions_once_replicas_only_when_replicated(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    state_table: str,
    inbox: Any,
) -> None:
    ecs_regions = ecs_calls_per_region(clients)
    stack = queued_runtime(regions=(EU, FRA), state_table=state_table, topic_arn=inbox.topic_arn)
    before = deployments(world)
    version = rotate(world)
    replica = world["in_region"]

    # The rotation, through the rotation function: the primary's consumers and the allowed
    # replicas' consumers are queued; the Failed replica is reported; Sydney is not looked at.
    planned = stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    assert planned["status"] == "processed"
    queued = {arn.rsplit("/", 1)[-1] for arn in planned["queued"]}
    assert queued == {"api", "by-name", "api-eu", "partial-eu", "passthrough-eu", "by-name-eu"}
    assert any(SYD in note and "ROTOR_REGIONS" in note for note in planned["notes"])
    assert ecs_regions[SYD] == 0  # outside ROTOR_REGIONS: never read, never touched
    assert ecs_regions[PRIMARY] and ecs_regions[EU] and ecs_regions[FRA]
    skipped = {s["service"].rsplit("/", 1)[-1]: s["reason"] for s in planned["skipped"]}
    assert FAILED_MESSAGE in skipped["api-fra"]
    failed_notices = [
        n for n in inbox.drain() if "replica of prod/db in eu-central-1" in n.get("Subject", "")
    ]
    assert len(failed_notices) == 1
    body = failed_notices[0]["Message"]
    assert FRA in body and FAILED_MESSAGE in body and "api-fra" in body

    # The worker, as the SQS event source drives it. eu-west-1 is still replicating: the
    # primary's consumers are redeployed, eu-west-1's wait (sent again, delayed).
    drain(redeploy_queue, stack.worker)
    assert updates(world) == {"api": 1, "by-name": 1}
    assert redeploy_queue.counts() == 4  # the four eu-west-1 jobs, delayed: not failures

    # A second delivery while the replica lags: the primary's consumers are fresh now; the
    # replica's are queued again, and wait too.
    again = stack.rotation(label_event(world["arn"], "prod/db"), FakeLambdaContext())
    assert {a.rsplit("/", 1)[-1] for a in again["queued"]} == queued - {"api", "by-name"}
    drain(redeploy_queue, stack.worker)
    assert updates(world) == {"api": 1, "by-name": 1}
    assert redeploy_queue.counts() == 8

    # InSync says the primary, but the replica's own AWSCURRENT is still the old version.
    world["replication"].phase[EU] = "catching-up"
    with later(3):
        drain(redeploy_queue, stack.worker)
    assert updates(world) == {"api": 1, "by-name": 1}
    assert redeploy_queue.counts() == 8
    assert world["replication"].seen[EU] > 0  # the gate asked the replica in its region

    # Replicated: now, and only now, the replica's consumers are redeployed, once each.
    world["replication"].phase[EU] = "synced"
    with later(6):
        drain(redeploy_queue, stack.worker)
        assert redeploy_queue.counts() == 0
    expected = {
        "api": 1,
        "by-name": 1,
        "api-eu": 1,
        "partial-eu": 1,
        "passthrough-eu": 1,
        "by-name-eu": 1,
    }
    assert updates(world) == expected
    after = deployments(world)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == set(expected)  # read back from moto in each region
    assert ecs_regions[SYD] == 0

    # The ledger holds the replica's value (its ARN @ the primary's version) for its consumers.
    items = clients.dynamodb.scan(TableName=state_table)["Items"]
    ledger = {i["pk"]["S"] for i in items if i["pk"]["S"].startswith("redeploy#")}
    eu_api = world["services"][EU]["api-eu"]
    assert f"redeploy#{eu_api}#{replica[EU]}@{version}" in ledger
    assert f"redeploy#{world['services'][PRIMARY]['api']}#{world['arn']}@{version}" in ledger

    # rotor status: the replica's rotation is its own, and each service says its region.
    report = status_report(stack.runtime.rollouts, datetime.now(UTC), timedelta(hours=1))
    rows = {
        (s["region"], s["service"].rsplit("/", 1)[-1]): s["status"]
        for r in report["rotations"]
        for s in r["services"]
    }
    assert rows[(EU, "api-eu")] == "deploying"
    assert rows[(PRIMARY, "api")] == "deploying"
    assert rows[(FRA, "api-fra")] == "failed"
    assert {r["region"] for r in report["rotations"]} == {PRIMARY, EU, FRA}

    # A later duplicate delivery (RotationSucceeded again) redeploys nothing.
    again = stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    assert again["status"] == "processed"
    with later(12):
        drain(redeploy_queue, stack.worker)
    assert updates(world) == expected
    assert not [e for e in inbox.drain() if "eu-central-1" in e.get("Subject", "")]
    # Waiting was never a failure: nothing reached the dead-letter queue.
    assert redeploy_queue.counts(redeploy_queue.dlq_url) == 0


def test_a_replica_that_never_catches_up_is_reported_after_the_max_wait_not_redeployed(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    inbox: Any,
) -> None:
    """Waiting is bounded: past ROTOR_REPLICA_MAX_WAIT after the new value, a job still waiting
    for its replica is reported (ReplicationFailures, a notification) and dropped, not sent
    again forever."""
    stack = queued_runtime(
        regions=(EU,), replica_max_wait=timedelta(minutes=10), topic_arn=inbox.topic_arn
    )
    rotate(world)
    stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)
    assert redeploy_queue.counts() == 4  # waiting
    inbox.drain()

    with later(20):
        answers = drain(redeploy_queue, stack.worker)
        assert redeploy_queue.counts() == 0  # reported, not sent again
    assert updates(world) == {"api": 1, "by-name": 1}
    assert not answers[0]["batchItemFailures"]
    reported = [e for e in inbox.drain() if "eu-west-1" in e.get("Subject", "")]
    assert len(reported) == 4  # one per consumer left with the old value
    assert all("ROTOR_REPLICA_MAX_WAIT" in e["Message"] for e in reported)
    assert redeploy_queue.counts(redeploy_queue.dlq_url) == 0


def test_the_rest_of_a_replicas_plan_is_planned_in_the_replicas_region(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
) -> None:
    """A plan job for a replica (the rotation function ran short of time) is planned by the
    worker in the replica's region, and its jobs are gated like the rotation function's."""
    from orchestration import PlanJob
    from orchestration.secrets.references import SecretIdentity

    stack = queued_runtime(regions=(EU,))
    version = rotate(world)
    replica = world["in_region"][EU]
    stack.runtime.queue.send(
        [
            PlanJob(
                secret_arn=replica,
                version=version,
                rotated_at=datetime.now(UTC) - timedelta(minutes=1),
                replica_region=EU,
                primary_secret_arn=world["arn"],
                secret=SecretIdentity.from_full_arn(replica),
            )
        ]
    )
    drain(redeploy_queue, stack.worker)
    assert updates(world) == {}
    assert redeploy_queue.counts() == 4  # planned in eu-west-1, waiting for the replica

    world["replication"].phase[EU] = "synced"
    with later(3):
        drain(redeploy_queue, stack.worker)
    assert updates(world) == {"api-eu": 1, "partial-eu": 1, "passthrough-eu": 1, "by-name-eu": 1}


def test_without_a_queue_the_event_waits_for_the_replica_and_is_retried(
    clients: AwsClients, world: dict[str, Any], retry: Any
) -> None:
    """Inline (no redeploy queue): the replica's consumers are listed as waiting, and the event
    fails as retryable so Lambda hands it over again; once replicated, the retry redeploys them."""
    from handlers.entry import make_handler
    from orchestration.errors import RetryableFailure
    from orchestration.events.classification import REDEPLOY_KINDS
    from tests.conftest import make_runtime

    runtime = make_runtime(clients, retry, Settings(regions=(EU,)))
    handler = make_handler(REDEPLOY_KINDS, lambda: runtime)
    rotate(world)
    event = rotation_event(world["arn"])

    with pytest.raises(RetryableFailure):
        handler(event, FakeLambdaContext())
    assert updates(world) == {"api": 1, "by-name": 1}

    world["replication"].phase[EU] = "synced"
    handler(event, FakeLambdaContext())
    assert updates(world) == {
        "api": 1,
        "by-name": 1,
        "api-eu": 1,
        "partial-eu": 1,
        "passthrough-eu": 1,
        "by-name-eu": 1,
    }


def test_a_region_outside_rotor_regions_is_counted_and_never_read(
    clients: AwsClients, world: dict[str, Any], retry: Any
) -> None:
    from orchestration import REDEPLOY_KINDS, handle
    from tests.conftest import make_runtime

    ecs_regions = ecs_calls_per_region(clients)
    runtime = make_runtime(clients, retry, Settings())  # ROTOR_REGIONS unset: own region only
    rotate(world)

    outcome = handle(
        rotation_event(world["arn"]), REDEPLOY_KINDS, lambda: runtime, lambda: ACCOUNT
    ).outcome
    assert outcome is not None
    # Described because a consumer needed the new value; its three replicas are reported.
    assert outcome.metrics["ReplicaRegionsSkipped"] == 3
    assert sum("not in ROTOR_REGIONS" in note for note in outcome.notes) == 3
    assert set(ecs_regions) == {PRIMARY}
    assert updates(world) == {"api": 1, "by-name": 1}


def test_a_dry_run_writes_nothing_in_a_replicas_region(
    clients: AwsClients, world: dict[str, Any], retry: Any
) -> None:
    """``rotor replay --dry-run`` guards the clients it is given at the session, so a client
    made later for another region answers its writes too: nothing is sent there."""
    from orchestration import REDEPLOY_KINDS, handle
    from orchestration.cli.dry_run import DryRun
    from tests.conftest import make_runtime

    dry = DryRun()
    dry.attach(clients)
    runtime = make_runtime(clients, retry, Settings(regions=(EU,)))
    rotate(world)
    world["replication"].phase[EU] = "synced"

    handle(rotation_event(world["arn"]), REDEPLOY_KINDS, lambda: runtime, lambda: ACCOUNT)

    assert updates(world) == {}
    would = {c.target.rsplit("/", 1)[-1] for c in dry.calls if c.operation == "UpdateService"}
    assert would == {"api", "by-name", "api-eu", "partial-eu", "passthrough-eu", "by-name-eu"}


def test_a_replication_that_fails_while_its_consumers_wait_leaves_them_alone(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    state_table: str,
    inbox: Any,
) -> None:
    """InProgress when planned, Failed when the waiting jobs run again: reported (one
    notification per consumer, naming the region and the status message), the consumers
    recorded as failed, nothing redeployed, nothing sent again."""
    stack = queued_runtime(regions=(EU,), state_table=state_table, topic_arn=inbox.topic_arn)
    rotate(world)
    stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)
    assert redeploy_queue.counts() == 4
    inbox.drain()

    world["replication"].phase[EU] = "failed"
    with later(3):
        drain(redeploy_queue, stack.worker)
        assert redeploy_queue.counts() == 0
    assert updates(world) == {"api": 1, "by-name": 1}
    reported = [e for e in inbox.drain() if "eu-west-1" in e.get("Subject", "")]
    assert len(reported) == 4
    assert all(FAILED_MESSAGE in e["Message"] and EU in e["Message"] for e in reported)
    report = status_report(stack.runtime.rollouts, datetime.now(UTC), timedelta(hours=1))
    statuses = {
        s["service"].rsplit("/", 1)[-1]: s["status"]
        for r in report["rotations"]
        for s in r["services"]
        if s["region"] == EU
    }
    assert statuses == dict.fromkeys(
        ("api-eu", "partial-eu", "passthrough-eu", "by-name-eu"), "failed"
    )


def test_a_deployment_made_while_the_replica_lagged_holds_the_old_value_and_is_redeployed(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
) -> None:
    """The replica did not hold the new value when its consumer's job first ran: a deployment
    of that consumer made by someone else since (after the primary's event, before the replica
    caught up) started tasks with the OLD value there. It is not fresh: once the replica holds
    the new value, rotor redeploys it (once)."""
    stack = queued_runtime(regions=(EU,))
    rotate(world)
    stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)
    assert redeploy_queue.counts() == 4  # the replica lags: its consumers' jobs wait

    # Someone (CI) deploys api-eu now, while the replica still holds the old value.
    eu = world["regions"][EU]
    eu.ecs.update_service(cluster="prod", service="api-eu", forceNewDeployment=True)
    theirs = eu.primary_deployment("api-eu")

    world["replication"].phase[EU] = "synced"
    with later(3):
        drain(redeploy_queue, stack.worker)
        assert redeploy_queue.counts() == 0
    assert eu.updates["api-eu"] == 2  # theirs, then rotor's once the replica held the value
    assert eu.primary_deployment("api-eu") != theirs
    others = ("partial-eu", "passthrough-eu", "by-name-eu")
    assert {name: eu.updates[name] for name in others} == dict.fromkeys(others, 1)


def test_replicas_outside_rotor_regions_are_reported_when_no_consumer_here_needs_the_value(
    clients: AwsClients, world: dict[str, Any], retry: Any, state_table: str
) -> None:
    """The secret's consumers are all in the replicas' regions (nothing to redeploy in the
    stack's own): the replicas outside ROTOR_REGIONS are still reported. The stack describes
    the new value anyway to record the rotation (a state table), so it costs no call."""
    from orchestration import REDEPLOY_KINDS, handle
    from tests.conftest import make_runtime

    home = world["regions"][PRIMARY].ecs
    for name in ("api", "by-name"):
        home.delete_service(cluster="prod", service=name, force=True)
    described = Counter[str]()
    clients.secretsmanager.meta.events.register(
        "before-call.secrets-manager.DescribeSecret",
        lambda context, **_: described.update([str(context.get("client_region"))]),
    )
    runtime = make_runtime(clients, retry, Settings(state_table=state_table))
    rotate(world)

    outcome = handle(
        rotation_event(world["arn"]), REDEPLOY_KINDS, lambda: runtime, lambda: ACCOUNT
    ).outcome
    assert outcome is not None
    assert outcome.metrics.get("ReplicaRegionsSkipped") == 3
    assert sum("not in ROTOR_REGIONS" in note for note in outcome.notes) == 3
    assert described == {PRIMARY: 1}  # the one the rotation's record makes anyway
    assert updates(world) == {}


@pytest.mark.parametrize("phase", ["lagging", "catching-up"])
def test_a_deployment_made_before_planning_while_the_replica_lagged_is_not_fresh(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    phase: str,
) -> None:
    """The event reaches rotor after the new value (CloudTrail's delay) and the replica still
    lacks it (the primary says InProgress, or already InSync while the replica's own AWSCURRENT
    is the old version): a deployment made in the replica's region since the primary's event
    started tasks with the OLD value there. It is planned, and redeployed once the replica
    holds the new value."""
    stack = queued_runtime(regions=(EU,))
    rotate(world)
    world["replication"].phase[EU] = phase
    eu = world["regions"][EU]
    eu.ecs.update_service(cluster="prod", service="api-eu", forceNewDeployment=True)
    theirs = eu.primary_deployment("api-eu")

    planned = stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    queued = {arn.rsplit("/", 1)[-1] for arn in planned["queued"]}
    assert {"api-eu", "partial-eu", "passthrough-eu", "by-name-eu"} <= queued

    world["replication"].phase[EU] = "synced"
    with later(3):
        drain(redeploy_queue, stack.worker)
        assert redeploy_queue.counts() == 0
    assert eu.updates["api-eu"] == 2  # theirs, then rotor's once the replica held the value
    assert eu.primary_deployment("api-eu") != theirs


def test_a_cluster_named_in_rotor_clusters_that_a_replica_region_lacks_is_no_failure(
    clients: AwsClients, world: dict[str, Any], retry: Any
) -> None:
    """ROTOR_CLUSTERS names apply in every region; a region without one of them simply has no
    consumers there. Reading it is no discovery failure (DiscoveryFailures is alarmed), unlike
    a named cluster missing in the stack's own region (a misconfiguration)."""
    from orchestration import REDEPLOY_KINDS, handle
    from tests.conftest import make_runtime

    world["regions"][PRIMARY].ecs.create_cluster(clusterName="batch")  # only at home
    runtime = make_runtime(clients, retry, Settings(regions=(EU,), clusters=("prod", "batch")))
    rotate(world)
    world["replication"].phase[EU] = "synced"

    outcome = handle(
        rotation_event(world["arn"]), REDEPLOY_KINDS, lambda: runtime, lambda: ACCOUNT
    ).outcome
    assert outcome is not None
    assert "DiscoveryFailures" not in outcome.metrics, outcome.notes
    assert not outcome.failed
    assert updates(world) == {
        "api": 1,
        "by-name": 1,
        "api-eu": 1,
        "partial-eu": 1,
        "passthrough-eu": 1,
        "by-name-eu": 1,
    }

    # At home, a named cluster that does not exist is still a failure (once: not in EU).
    runtime = make_runtime(clients, retry, Settings(regions=(EU,), clusters=("prod", "nosuch")))
    again = handle(
        rotation_event(world["arn"]), REDEPLOY_KINDS, lambda: runtime, lambda: ACCOUNT
    ).outcome
    assert again is not None and again.metrics.get("DiscoveryFailures") == 1
    assert [f.subject for f in again.failed] == ["nosuch"]


def test_a_job_that_finds_its_replica_lagging_says_so_when_it_is_sent_again(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
) -> None:
    """Planned while the replica held the new value (nothing lagged then), the job runs after
    a newer value became current in the primary (whose event rotor has not seen) and finds the
    replica lagging: it waits, and the job sent again remembers since when, so a deployment
    made meanwhile (holding the old value there) is redeployed once the replica catches up."""
    stack = queued_runtime(regions=(EU,))
    rotate(world)
    world["replication"].phase[EU] = "synced"
    planned = stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    assert "api-eu" in {arn.rsplit("/", 1)[-1] for arn in planned["queued"]}
    world["sm"].put_secret_value(SecretId=world["arn"], SecretString="v3")  # no event yet
    world["replication"].phase[EU] = "lagging"
    drain(redeploy_queue, stack.worker)
    assert redeploy_queue.counts() == 4  # waiting for v3 in eu-west-1

    eu = world["regions"][EU]
    eu.ecs.update_service(cluster="prod", service="api-eu", forceNewDeployment=True)
    theirs = eu.primary_deployment("api-eu")
    world["replication"].phase[EU] = "synced"
    with later(3):
        drain(redeploy_queue, stack.worker)
        assert redeploy_queue.counts() == 0
    assert eu.updates["api-eu"] == 2  # theirs, then rotor's once the replica held v3
    assert eu.primary_deployment("api-eu") != theirs


def test_a_replica_rotor_may_not_describe_fails_its_jobs_at_once_not_after_the_max_wait(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    inbox: Any,
) -> None:
    """The primary says InSync but DescribeSecret on the replica is denied (an SCP, a resource
    policy): waiting cannot help, and after ROTOR_REPLICA_MAX_WAIT it would be reported as a
    replication that never caught up. The job fails at once, saying why (RedeployFailures)."""
    from botocore.exceptions import ClientError

    def deny(context: dict[str, Any], **_: Any) -> None:
        if context.get("client_region") == EU:
            error = {"Code": "AccessDeniedException", "Message": "denied by an SCP"}
            raise ClientError({"Error": error}, "DescribeSecret")

    clients.session.events.register("before-call.secrets-manager.DescribeSecret", deny)
    stack = queued_runtime(regions=(EU,), topic_arn=inbox.topic_arn)
    rotate(world)
    world["replication"].phase[EU] = "synced"
    stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    answers = drain(redeploy_queue, stack.worker)

    assert redeploy_queue.counts() == 0  # not waiting for an answer that cannot come
    assert updates(world) == {"api": 1, "by-name": 1}
    assert not [e for e in inbox.drain() if "eu-west-1" in e.get("Subject", "")]
    assert not any(a["batchItemFailures"] for a in answers)


def test_a_by_hand_consumer_of_a_lagging_replica_is_told_to_wait_for_the_replica(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    inbox: Any,
) -> None:
    """A CODE_DEPLOY service rotor cannot redeploy is named in the "redeploy by hand"
    notification at once. Its replica still lacking the new value, a deployment made now would
    start tasks with the OLD value: the notification says to wait until the replica has it."""
    eu = world["regions"][EU]
    task_definition = eu.ecs.register_task_definition(
        family="bluegreen-eu",
        containerDefinitions=[
            {
                "name": "app",
                "image": "registry.example.com/app:1",
                "memory": 256,
                "secrets": [{"name": "DB", "valueFrom": world["in_region"][EU]}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    eu.ecs.create_service(
        cluster="prod",
        serviceName="bluegreen-eu",
        taskDefinition=task_definition,
        desiredCount=1,
        deploymentController={"type": "CODE_DEPLOY"},
    )
    backdate_deployment(eu.backend, "prod", "bluegreen-eu", STALE)
    stack = queued_runtime(regions=(EU,), topic_arn=inbox.topic_arn)
    version = rotate(world)  # eu-west-1 lags

    planned = stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())

    (manual,) = [m for m in planned["manual"] if "bluegreen-eu" in m["service"]]
    assert EU in manual["reason"] and version in manual["reason"]
    (told,) = [e for e in inbox.drain() if "bluegreen-eu" in e["Message"]]
    assert "does not hold the new value yet" in told["Message"]


def test_a_notify_only_consumer_of_a_lagging_replica_is_reported_once_the_replica_has_it(
    clients: AwsClients,
    world: dict[str, Any],
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    inbox: Any,
) -> None:
    """Tag rotor:redeploy=notify: rotor reports the stale service for a person to deploy. For
    a replica's consumer that report waits, like a redeploy, until the replica holds the new
    value: a person acting on it earlier would start tasks with the OLD value."""
    eu = world["regions"][EU]
    eu.ecs.tag_resource(
        resourceArn=world["services"][EU]["api-eu"],
        tags=[{"key": "rotor:redeploy", "value": "notify"}],
    )
    stack = queued_runtime(regions=(EU,), topic_arn=inbox.topic_arn)
    rotate(world)
    stack.rotation(rotation_event(world["arn"]), FakeLambdaContext())
    inbox.drain()
    drain(redeploy_queue, stack.worker)
    assert not [e for e in inbox.drain() if "api-eu" in e["Message"]]  # not while it lags
    assert redeploy_queue.counts() == 4

    world["replication"].phase[EU] = "synced"
    with later(3):
        drain(redeploy_queue, stack.worker)
    assert len([e for e in inbox.drain() if "api-eu" in e["Message"]]) == 1
    assert eu.updates["api-eu"] == 0  # reported, not redeployed
