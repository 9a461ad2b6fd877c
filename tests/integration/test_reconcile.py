"""The reconciler heals what lost events left stale: a rotation whose events never arrive.

Each secret of the world is rotated in moto as a rotation does it (a new version staged
AWSPENDING, an hour ago; then the AWSCURRENT label moved to it by UpdateSecretVersionStage,
half an hour ago), and no event reaches rotor. Each has three consumers: one deployed ten days
ago (before the version existed: stale whatever the moment), one deployed between the version's
creation and the label's move (holds the OLD value), one deployed after the move (fresh). What
tells rotor the moment differs per secret: the state table's rotation record, CloudTrail's
LookupEvents (answered at botocore's ``before-send``: moto has none), nothing at all, or the
secret's only version. Deployments are read back from moto.

moto gets two things wrong that rotor relies on, and the fixtures make it answer as AWS does:
``ListSecretVersionIds`` gives every version the time of the call as its ``CreatedDate`` (and
its name as its ARN); a version's creation time is set here, as a version made an hour ago has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.entry import make_handler
from handlers.reconcile import make_reconcile_handler
from orchestration.aws.clients import AwsClients
from orchestration.events.classification import REDEPLOY_KINDS
from orchestration.reconcile.heal import reconcile
from orchestration.reconcile.report import Action, ReconcileReport
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from tests.aws_fakes import (
    ApiCalls,
    CloudTrailHistory,
    backdate_secret_version,
    versions_listed_as_aws_lists_them,
)
from tests.conftest import ACCOUNT, REGION, make_runtime
from tests.integration.conftest import NOW, EcsWorld, RedeployQueue, iso, rotation_event
from tests.integration.workers import FakeLambdaContext, drain

pytestmark = pytest.mark.integration

CREATED = NOW - timedelta(hours=1)  # the new version, staged AWSPENDING
MOVED = NOW - timedelta(minutes=30)  # AWSCURRENT moved to it
DEPLOYED = {
    "old": NOW - timedelta(days=10),
    "between": NOW - timedelta(minutes=45),  # after CREATED, before MOVED: the old value
    "after": NOW - timedelta(minutes=15),  # after MOVED: the new value
}
#: secret -> what tells rotor when its new value became current
SECRETS = {
    "prod/recorded": "state-table",
    "prod/trailed": "cloudtrail",
    "prod/unknown": "unknown",
}
HEALED = {
    "recorded-old",
    "recorded-between",
    "trailed-old",
    "trailed-between",
    "unknown-old",
    "unknown-between",
    "unknown-after",  # the moment is unknown: erring toward redeploying
    "single-old",
}
LEFT_ALONE = {"recorded-after", "trailed-after", "single-after", "retired-old"}
SERVICES = HEALED | LEFT_ALONE


@pytest.fixture(autouse=True)
def _versions_listed_as_aws_lists_them(monkeypatch: pytest.MonkeyPatch) -> None:
    versions_listed_as_aws_lists_them(monkeypatch)


@pytest.fixture
def trail(moto: None) -> Iterator[CloudTrailHistory]:
    history = CloudTrailHistory()
    with history.patched():
        yield history


@dataclass
class World:
    ecs: EcsWorld
    arns: dict[str, str]  # secret name -> ARN
    versions: dict[str, str]  # secret name -> the version AWSCURRENT now
    trail: CloudTrailHistory

    def primaries(self) -> dict[str, str]:
        """service name -> its PRIMARY deployment's id, read back from moto."""
        return {name: self.ecs.primary("prod", name)["id"] for name in sorted(SERVICES)}


def _backdate_version(secret: str, version: str, when: datetime) -> None:
    backdate_secret_version(secret, version, when)


@pytest.fixture
def world(clients: AwsClients, ecs_world: EcsWorld, trail: CloudTrailHistory) -> World:
    sm = clients.secretsmanager
    ecs_world.cluster("prod")
    arns: dict[str, str] = {}
    versions: dict[str, str] = {}
    for name in SECRETS:
        created = sm.create_secret(Name=name, SecretString="first")
        arns[name] = created["ARN"]
        _backdate_version(name, created["VersionId"], NOW - timedelta(days=30))
        # The rotation, as a rotation function does it: AWSPENDING, then the label moves.
        pending = sm.put_secret_value(
            SecretId=name, SecretString="second", VersionStages=["AWSPENDING"]
        )["VersionId"]
        sm.update_secret_version_stage(
            SecretId=name,
            VersionStage="AWSCURRENT",
            MoveToVersionId=pending,
            RemoveFromVersionId=created["VersionId"],
        )
        _backdate_version(name, pending, CREATED)
        versions[name] = pending
        short = name.split("/")[1]
        for when in ("old", "between", "after"):
            reference = arns[name]
            if when == "old":  # a partial ARN: the same secret, described once
                reference = reference[: -len("-XXXXXX")]
            task_definition = ecs_world.task_definition(secrets=[reference])
            ecs_world.service(
                "prod", f"{short}-{when}", task_definition, deployed_at=DEPLOYED[when]
            )
    # A secret with one version ever: current since its creation an hour ago.
    single = sm.create_secret(Name="prod/single", SecretString="only")
    arns["prod/single"], versions["prod/single"] = single["ARN"], single["VersionId"]
    _backdate_version("prod/single", single["VersionId"], CREATED)
    for when in ("old", "after"):
        task_definition = ecs_world.task_definition(secrets=[single["ARN"]])
        ecs_world.service("prod", f"single-{when}", task_definition, deployed_at=DEPLOYED[when])
    # A secret scheduled for deletion that a service still reads: reported, left alone.
    retired = sm.create_secret(Name="prod/retired", SecretString="gone")["ARN"]
    ecs_world.service(
        "prod",
        "retired-old",
        ecs_world.task_definition(secrets=[retired]),
        deployed_at=DEPLOYED["old"],
    )
    sm.delete_secret(SecretId=retired, RecoveryWindowInDays=7)
    arns["prod/retired"] = retired
    # CloudTrail: the label's move for prod/trailed, among calls about other versions.
    trailed = arns["prod/trailed"]
    trail.add(
        "PutSecretValue",
        CREATED,
        requestParameters={"secretId": trailed, "versionStages": ["AWSPENDING"]},
        responseElements={"arn": trailed, "versionId": versions["prod/trailed"]},
    )
    trail.add(
        "UpdateSecretVersionStage",
        MOVED - timedelta(minutes=5),
        requestParameters={
            "secretId": "prod/other",
            "versionStage": "AWSCURRENT",
            "moveToVersionId": "another-version",
        },
        responseElements={
            "arn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/other-AbCdEf"
        },
    )
    trail.add(
        "UpdateSecretVersionStage",
        MOVED,
        requestParameters={
            "secretId": "prod/trailed",  # as the caller named it
            "versionStage": "AWSCURRENT",
            "moveToVersionId": versions["prod/trailed"],
            "removeFromVersionId": "the-old-one",
        },
        responseElements={"arn": trailed, "name": "prod/trailed"},
    )
    # The state table: the event path recorded prod/recorded's rotation (its event's time).
    return World(ecs_world, arns, versions, trail)


def _record_the_event_path_rotation(runtime: Runtime, world: World) -> None:
    arn, version = world.arns["prod/recorded"], world.versions["prod/recorded"]
    runtime.rollouts.record_rotation(f"{arn}@{version}", arn, version, MOVED)


@pytest.fixture
def settings_with_table(state_table: str) -> Settings:
    return Settings(state_table=state_table)


@pytest.fixture
def table_runtime(clients: AwsClients, retry: Any, settings_with_table: Settings) -> Runtime:
    return make_runtime(clients, retry, settings_with_table)


def _by_service(report: ReconcileReport) -> dict[str, dict[str, Any]]:
    return {
        c["service"].rsplit("/", 1)[-1]: c
        for s in report.to_dict()["secrets"]
        for c in s["consumers"]
    }


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_a_rotation_whose_events_never_arrive_is_healed_once(
    world: World, table_runtime: Runtime, clients: AwsClients
) -> None:
    _record_the_event_path_rotation(table_runtime, world)
    secrets_calls = ApiCalls().attach(clients.secretsmanager)
    before = world.primaries()

    report = reconcile(table_runtime)

    after = world.primaries()
    assert _changed(before, after) == HEALED
    assert all(world.ecs.updates_reached_moto[name] == 1 for name in HEALED)
    assert not any(world.ecs.updates_reached_moto[name] for name in LEFT_ALONE)
    assert report.ok, report.to_dict()["failed"]
    assert report.metrics["HealedByReconciler"] == len(HEALED)
    consumers = _by_service(report)
    assert {name for name, c in consumers.items() if c["action"] == "redeployed"} == HEALED
    # What decided, per consumer: a deployment before the version is stale whatever the
    # moment; after it, the state table, CloudTrail, the only version, or nothing (unknown).
    assert {name: c["decided_by"] for name, c in consumers.items()} == {
        "recorded-old": "created-date",
        "recorded-between": "state-table",
        "recorded-after": "state-table",
        "trailed-old": "created-date",
        "trailed-between": "cloudtrail",
        "trailed-after": "cloudtrail",
        "unknown-old": "created-date",
        "unknown-between": "unknown",
        "unknown-after": "unknown",
        "single-old": "created-date",
        "single-after": "only-version",
    }
    assert consumers["recorded-after"]["action"] == consumers["trailed-after"]["action"] == "fresh"
    secrets = {s["secret"].split(":secret:")[1][:-7]: s for s in report.to_dict()["secrets"]}
    assert secrets["prod/trailed"]["became_current_at"] == iso(MOVED)
    assert "erring toward redeploying" in secrets["prod/unknown"]["evidence_detail"]
    assert "scheduled for deletion" in secrets["prod/retired"]["problem"]
    # One DescribeSecret per secret (prod/recorded is named by full and by partial ARN), one
    # ListSecretVersionIds per secret it acts on; the inline jobs describe nothing again.
    assert secrets_calls.counts["DescribeSecret"] == 5
    assert secrets_calls.counts["ListSecretVersionIds"] == 4
    # CloudTrail only where a consumer was deployed after the version's creation and the
    # state table and the versions could not tell: prod/trailed (found at once), prod/unknown
    # (every kind of call that can make a version current, none found; the label moves read
    # for prod/trailed are not read again).
    names = [r["LookupAttributes"][0]["AttributeValue"] for r in world.trail.requests]
    assert names == [
        "UpdateSecretVersionStage",
        "RotationSucceeded",
        "PutSecretValue",
        "UpdateSecret",
    ]
    for request in world.trail.requests:
        assert set(request) == {"LookupAttributes", "StartTime", "MaxResults"}
        assert request["StartTime"] == CREATED.timestamp()
        assert request["LookupAttributes"][0]["AttributeKey"] == "EventName"


def test_a_second_pass_and_a_late_event_redeploy_nothing(
    world: World, table_runtime: Runtime, clients: AwsClients
) -> None:
    _record_the_event_path_rotation(table_runtime, world)
    first = reconcile(table_runtime)
    assert first.metrics["HealedByReconciler"] == len(HEALED)
    lookups = len(world.trail.requests)
    healed = world.primaries()

    second = reconcile(table_runtime)

    assert world.primaries() == healed
    assert "HealedByReconciler" not in second.metrics
    assert second.healed == []
    # The moments are in the state table now: no CloudTrail, and prod/unknown is bounded by
    # when rotor first saw its version current.
    assert len(world.trail.requests) == lookups
    consumers = _by_service(second)
    assert consumers["unknown-after"]["decided_by"] == "first-seen"
    assert {name for name, c in consumers.items() if c["action"] == "fresh"} >= HEALED
    # The rotation's events arrive late, after the heal: the event path redeploys nothing.
    rotation = make_handler(REDEPLOY_KINDS, lambda: table_runtime)
    for name in ("prod/unknown", "prod/trailed", "prod/recorded"):
        answer = rotation(rotation_event(world.arns[name], MOVED), FakeLambdaContext())
        assert answer["status"] == "processed"
        assert answer["redeployed"] == []
    assert world.primaries() == healed
    assert all(world.ecs.updates_reached_moto[name] == 1 for name in HEALED)


def test_a_dry_run_changes_nothing(
    world: World, table_runtime: Runtime, clients: AwsClients, state_table: str
) -> None:
    before = world.primaries()

    report = reconcile(table_runtime, dry_run=True)

    assert world.primaries() == before
    assert not any(world.ecs.updates_reached_moto.values())
    consumers = _by_service(report)
    # Without the event path's record, prod/recorded's moment is unknown too.
    would = {n for n, c in consumers.items() if c["action"] == "would redeploy"}
    assert would == HEALED | {"recorded-after"}
    assert report.healed == []  # nothing was queued or redeployed: it would count them
    assert report.to_dict()["would_metrics"]["HealedByReconciler"] == len(would)
    assert report.index in (
        "no consumer index (it lives in ROTOR_STATE_TABLE)",
        "not rebuilt: dry run",
    )
    items = clients.dynamodb.scan(TableName=state_table)["Items"]
    assert not [i for i in items if not i["pk"]["S"].startswith("taskdef#")]  # a cache only
    assert report.to_dict()["would_metrics"]


def test_the_queue_path_heals_once_and_counts_once(
    world: World,
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    state_table: str,
) -> None:
    stack = queued_runtime(state_table=state_table)
    _record_the_event_path_rotation(stack.runtime, world)
    before = world.primaries()

    first = reconcile(stack.runtime)
    again = reconcile(stack.runtime)  # before the worker took the jobs: nothing queued twice

    assert {c.service_arn.rsplit("/", 1)[-1] for c in first.consumers(Action.QUEUED)} == HEALED
    assert first.metrics["HealedByReconciler"] == first.metrics["RedeploysQueued"] == len(HEALED)
    assert "HealedByReconciler" not in again.metrics
    assert world.primaries() == before
    drain(redeploy_queue, stack.worker)  # as the SQS event source hands them over
    assert _changed(before, world.primaries()) == HEALED
    third = reconcile(stack.runtime)
    assert "HealedByReconciler" not in third.metrics
    assert redeploy_queue.counts() == 0
    assert all(world.ecs.updates_reached_moto[name] == 1 for name in HEALED)


def test_only_the_named_secrets_consumers_are_reconciled(
    world: World, table_runtime: Runtime
) -> None:
    before = world.primaries()
    report = reconcile(table_runtime, secret="prod/unknown")
    assert _changed(before, world.primaries()) == {
        "unknown-old",
        "unknown-between",
        "unknown-after",
    }
    assert [s.secret_arn for s in report.secrets] == [world.arns["prod/unknown"]]
    assert report.services_scanned == len(SERVICES)  # still one whole scan


def test_the_scan_is_paced_at_the_read_share(world: World, clients: AwsClients, retry: Any) -> None:
    runtime = make_runtime(clients, retry, Settings(reconcile_read_share=0.5))
    reconcile(runtime, dry_run=True)
    buckets = clients.ecs_rate_limiter.buckets
    # Half the read rates, one token at a time: a paced pass takes none of the burst.
    assert (buckets["service-reads"]._rate, buckets["service-reads"]._burst) == (10, 1)
    assert buckets["task-definition-reads"]._rate == 10
    assert buckets["cluster-reads"]._rate == 10
    assert buckets["service-writes"]._rate == 5  # writes are not the scan's


def test_the_scheduled_function_runs_the_same_pass(
    world: World,
    table_runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("POWERTOOLS_DEV", "POWERTOOLS_METRICS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    _record_the_event_path_rotation(table_runtime, world)
    handler = make_reconcile_handler(lambda: table_runtime)
    scheduled = {
        "version": "0",
        "id": "5c1f7b0e-2a44-4b55-9d0e-7e2f5f0a9c11",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": iso(NOW),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/rotor-ReconcileSchedule"],
        "detail": {},
    }
    capsys.readouterr()
    answer = handler(scheduled, FakeLambdaContext())
    assert answer["status"] == "reconciled"
    assert {arn.rsplit("/", 1)[-1] for arn in answer["healed"]} == HEALED
    emitted = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    assert sum(sum(record.get("HealedByReconciler", [])) for record in emitted) == len(HEALED)
    # The next scheduled pass finds nothing to heal.
    assert handler(scheduled, FakeLambdaContext())["healed"] == []


def test_the_pass_rebuilds_the_consumer_index_from_its_scan(
    world: World, table_runtime: Runtime, clients: AwsClients, state_table: str
) -> None:
    from orchestration.secrets.references import SecretIdentity
    from orchestration.state.consumer_index import ConsumerIndex

    index = ConsumerIndex.for_table(clients.dynamodb, state_table, table_runtime.retry)
    dry = reconcile(table_runtime, dry_run=True, index=index)
    assert dry.index == "not rebuilt: dry run"
    assert index.built_at(REGION) is None

    report = reconcile(table_runtime, index=index)

    assert report.index == f"rebuilt from the scan ({len(SERVICES)} service(s))"
    assert index.built_at(REGION) == report.started_at
    unknown = SecretIdentity.from_full_arn(world.arns["prod/unknown"])
    candidates = index.candidates(unknown)
    assert candidates is not None
    assert {s.service_arn.rsplit("/", 1)[-1] for s in candidates.services} == {
        "unknown-old",
        "unknown-between",
        "unknown-after",
    }


def test_a_scan_that_could_not_read_everything_leaves_the_index_alone(
    world: World, table_runtime: Runtime, clients: AwsClients
) -> None:
    from orchestration.state.consumer_index import ConsumerIndex
    from tests.aws_fakes import FailFor

    index = ConsumerIndex.in_memory()
    FailFor("DescribeTaskDefinition", "AccessDeniedException").attach(clients.ecs)
    report = reconcile(table_runtime, index=index)
    assert report.index == "not rebuilt: the scan could not read everything"
    assert index.built_at(REGION) is None
    assert not report.ok
    assert report.metrics["DiscoveryFailures"] >= 1


# --- rotor reconcile -------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from orchestration.cli.main import main

    capsys.readouterr()
    code = main(["reconcile", "--region", REGION, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_rotor_reconcile_heals_then_finds_nothing(
    world: World,
    state_table: str,
    clients: AwsClients,
    retry: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orchestration.state.rollouts import DynamoDbRolloutStore

    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)
    arn, version = world.arns["prod/recorded"], world.versions["prod/recorded"]
    DynamoDbRolloutStore(clients.dynamodb, state_table, retry).record_rotation(
        f"{arn}@{version}", arn, version, MOVED
    )
    before = world.primaries()

    code, out, err = _cli(capsys, "--json")

    assert code == 0, err
    report = json.loads(out)
    assert report["healed"] == len(HEALED)
    assert report["metrics"]["HealedByReconciler"] == len(HEALED)
    assert [s["secret"] for s in report["secrets"]] == sorted(
        s["secret"] for s in report["secrets"]
    )
    assert _changed(before, world.primaries()) == HEALED
    healed = world.primaries()
    code, out, _ = _cli(capsys)
    assert code == 0
    assert "0 healed" in out.splitlines()[0]
    assert world.primaries() == healed


def test_rotor_reconcile_dry_run_says_would_and_writes_nothing(
    world: World,
    state_table: str,
    clients: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)
    before = world.primaries()

    code, out, err = _cli(capsys, "--dry-run")

    assert code == 0, err
    assert out.splitlines()[0].startswith("reconcile (dry run): 12 service(s) scanned")
    assert "would redeploy" in out
    assert f"would count: ConsumersFound 11, HealedByReconciler {len(HEALED) + 1}" in out
    assert world.primaries() == before
    assert clients.dynamodb.scan(TableName=state_table)["Items"] == []  # not even a cache
    code, out, _ = _cli(capsys, "--dry-run", "--json")
    assert json.loads(out)["dry_run"] is True
    assert "would_metrics" in json.loads(out)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--secret", "prod/none"], {}, "no secret 'prod/none'"),
        (["--secret", " "], {}, "empty secret id"),
        ([], {"ROTOR_RECONCILE_READ_SHARE": "2"}, "ROTOR_RECONCILE_READ_SHARE"),
    ],
)
def test_rotor_reconcile_bad_input_is_exit_2(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    env: dict[str, str],
    says: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = _cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert says in err
    assert len(err.strip().splitlines()) == 1


def test_a_stale_code_deploy_service_is_told_once_not_redeployed(
    world: World, clients: AwsClients, retry: Any, inbox: Any, state_table: str
) -> None:
    """AWS refuses a forced deployment on the CODE_DEPLOY controller: the one notification per
    value says what to run, in the event path's notify window (a second pass says nothing)."""
    from tests.integration.conftest import STALE

    runtime = make_runtime(
        clients, retry, Settings(topic_arn=inbox.topic_arn, state_table=state_table)
    )
    definition = world.ecs.task_definition(secrets=[world.arns["prod/unknown"]])
    world.ecs.service("prod", "bluegreen", definition, controller="CODE_DEPLOY", deployed_at=STALE)

    first = reconcile(runtime, secret="prod/unknown")
    second = reconcile(runtime, secret="prod/unknown")

    consumers = _by_service(first)
    assert consumers["bluegreen"]["action"] == "manual"
    assert "CODE_DEPLOY" in consumers["bluegreen"]["reason"]
    assert world.ecs.updates_reached_moto["bluegreen"] == 0
    [told] = inbox.drain()
    assert "bluegreen" in json.dumps(told) and "aws deploy create-deployment" in json.dumps(told)
    assert first.metrics["ManualRedeploysNeeded"] == 1
    assert second.metrics["NotificationsSuppressed"] == 1
    assert "HealedByReconciler" not in second.metrics


def test_a_secret_rotor_cannot_describe_is_reported_and_left_alone(
    world: World, table_runtime: Runtime
) -> None:
    """Another account's secret that did not share DescribeSecret: reported, not acted on."""
    foreign = "arn:aws:secretsmanager:us-east-1:210987654321:secret:their/db-AbCdEf"
    definition = world.ecs.task_definition(secrets=[foreign])
    world.ecs.service("prod", "theirs", definition, deployed_at=DEPLOYED["old"])

    report = reconcile(table_runtime, dry_run=True)

    [theirs] = [s for s in report.to_dict()["secrets"] if "210987654321" in s["secret"]]
    assert "rotor cannot describe it" in theirs["problem"]
    assert theirs["consumers"] == []
    assert "theirs" not in _by_service(report)
    assert report.ok  # not a failure: rotor may not read it


@pytest.mark.parametrize(
    ("event_name", "fields", "found"),
    [
        # PutSecretValue with no stage (the default) or AWSCURRENT made it current at once.
        ("PutSecretValue", {"requestParameters": {}}, True),
        ("PutSecretValue", {"requestParameters": {"versionStages": ["AWSCURRENT"]}}, True),
        ("PutSecretValue", {"requestParameters": {"versionStages": ["AWSPENDING"]}}, False),
        ("UpdateSecret", {"requestParameters": {}}, True),
        # A rotation's label move, named by ARN; a failed call is no evidence.
        ("UpdateSecretVersionStage", {}, True),
        ("UpdateSecretVersionStage", {"errorCode": "AccessDeniedException"}, False),
    ],
)
def test_cloudtrail_names_the_call_that_made_the_version_current(
    world: World,
    clients: AwsClients,
    retry: Any,
    event_name: str,
    fields: dict[str, Any],
    found: bool,
) -> None:
    from orchestration.reconcile.moments import CloudTrailHistory as History
    from orchestration.secrets.references import SecretIdentity

    arn, version = world.arns["prod/unknown"], world.versions["prod/unknown"]
    at = CREATED + timedelta(seconds=20)
    record: dict[str, Any] = {"responseElements": {"arn": arn, "versionId": version}, **fields}
    if event_name == "UpdateSecretVersionStage":
        record["requestParameters"] = {
            "secretId": arn,
            "versionStage": "AWSCURRENT",
            "moveToVersionId": version,
        }
    world.trail.add(event_name, at, **record)
    history = History(clients.cloudtrail, retry)

    answer = history.became_current(SecretIdentity.from_full_arn(arn), version, CREATED)

    assert (answer.at if answer else None) == (at if found else None)


def test_rotation_succeeded_gives_the_first_rotation_after_the_versions_creation(
    world: World, clients: AwsClients, retry: Any
) -> None:
    from orchestration.reconcile.moments import CloudTrailHistory as History
    from orchestration.secrets.references import SecretIdentity

    arn, version = world.arns["prod/unknown"], world.versions["prod/unknown"]
    for minutes in (50, 20):  # newest first in LookupEvents' answer
        world.trail.add(
            "RotationSucceeded",
            CREATED + timedelta(minutes=minutes),
            additionalEventData={"SecretId": arn},
        )
    world.trail.add(
        "RotationSucceeded", CREATED - timedelta(minutes=5), additionalEventData={"SecretId": arn}
    )
    answer = History(clients.cloudtrail, retry).became_current(
        SecretIdentity.from_full_arn(arn), version, CREATED
    )
    assert answer is not None and answer.at == CREATED + timedelta(minutes=20)


def test_lookup_events_pages_are_all_read(world: World, clients: AwsClients, retry: Any) -> None:
    from orchestration.reconcile.moments import CloudTrailHistory as History
    from orchestration.secrets.references import SecretIdentity

    arn, version = world.arns["prod/unknown"], world.versions["prod/unknown"]
    move = {"versionStage": "AWSCURRENT", "moveToVersionId": version, "secretId": arn}
    world.trail.add(
        "UpdateSecretVersionStage", CREATED + timedelta(minutes=1), requestParameters=move
    )
    for i in range(60):  # later moves of other secrets: the match is on the second page
        world.trail.add(
            "UpdateSecretVersionStage",
            CREATED + timedelta(minutes=2, seconds=i),
            requestParameters={**move, "secretId": "prod/other", "moveToVersionId": f"v{i}"},
        )
    before = len(world.trail.requests)
    answer = History(clients.cloudtrail, retry).became_current(
        SecretIdentity.from_full_arn(arn), version, CREATED
    )
    assert answer is not None and answer.at == CREATED + timedelta(minutes=1)
    assert len(world.trail.requests) - before == 2
    assert world.trail.requests[-1]["NextToken"] == "50"


def test_rotor_reconcile_exits_1_when_part_of_the_account_could_not_be_read(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROTOR_CLUSTERS", "prod,ghost")
    code, out, err = _cli(capsys, "--dry-run", "--json")
    assert code == 1
    report = json.loads(out)
    assert [f["cluster"] for f in report["failed"]] == ["ghost"]
    assert "ghost" in err  # the scan's warning


# --- review: what counts as healed ---------------------------------------------------------


def test_a_notify_only_consumer_is_reported_not_counted_healed_pass_after_pass(
    world: World,
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    state_table: str,
) -> None:
    """A stale service tagged notify-only is reported by the worker, never redeployed: it is
    not healed, and a pass after the worker reported it must not count it again (before,
    every pass queued it again and HealedByReconciler counted it each time: an alarm that
    never cleared for a service rotor never redeploys)."""
    task_definition = world.ecs.task_definition(secrets=[world.arns["prod/unknown"]])
    world.ecs.service(
        "prod",
        "told-old",
        task_definition,
        deployed_at=DEPLOYED["old"],
        tags={"rotor:redeploy": "notify"},
    )
    stack = queued_runtime(state_table=state_table)
    _record_the_event_path_rotation(stack.runtime, world)

    first = reconcile(stack.runtime)

    told = next(c for s in first.secrets for c in s.consumers if c.service_arn.endswith("told-old"))
    assert not told.action.healed
    assert first.metrics["HealedByReconciler"] == len(HEALED)
    drain(redeploy_queue, stack.worker)
    assert world.ecs.updates_reached_moto["told-old"] == 0

    second = reconcile(stack.runtime)

    assert "HealedByReconciler" not in second.metrics, second.to_dict()
    assert second.healed == []


def test_a_job_queued_again_is_not_counted_again(
    world: World,
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    state_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job taken for lost (still QUEUED past QUEUED_RECENTLY) is queued again, and the
    consumer it heals was counted when the first one was queued: one lost event, one count."""
    import importlib

    heal = importlib.import_module("orchestration.reconcile.heal")  # the package's name is
    # shadowed by the use case ``orchestration.reconcile``

    stack = queued_runtime(state_table=state_table)
    _record_the_event_path_rotation(stack.runtime, world)
    first = reconcile(stack.runtime)
    assert first.metrics["HealedByReconciler"] == len(HEALED)
    monkeypatch.setattr(heal, "QUEUED_RECENTLY", timedelta(0))  # the jobs look lost now

    again = reconcile(stack.runtime)

    requeued = {c.service_arn.rsplit("/", 1)[-1] for c in again.consumers(Action.REQUEUED)}
    assert requeued == HEALED
    assert "HealedByReconciler" not in again.metrics
    assert again.metrics["RedeploysQueued"] == len(HEALED)
    drain(redeploy_queue, stack.worker)
    assert all(world.ecs.updates_reached_moto[name] == 1 for name in HEALED)


# --- review: a pass that runs out of time ----------------------------------------------------


def test_a_pass_out_of_time_stops_and_reports_instead_of_guessing(
    world: World, table_runtime: Runtime, clients: AwsClients, state_table: str
) -> None:
    """The scheduled function has 15 minutes; a first scan of a large account can take them
    all. Time up after the scan, the pass must stop and report what it did not reconcile:
    before, it went on past the deadline, its LookupEvents were refused by the rate limiter
    (no time left to wait for a token), so moments CloudTrail knows became "unknown" and were
    recorded as first-seen (redeploying consumers that hold the value), and the Lambda was
    killed before it could report or emit HealedByReconciler."""
    left = [float("inf")]

    def out_of_time(**_: Any) -> None:  # the first DescribeSecret: the scan is done
        left[0] = -1.0

    clients.secretsmanager.meta.events.register("before-call.secrets-manager", out_of_time)
    runtime = table_runtime.with_deadline(lambda: left[0])
    described = ApiCalls().attach(clients.secretsmanager)
    before = world.primaries()

    report = reconcile(runtime)

    assert world.primaries() == before
    assert not any(world.ecs.updates_reached_moto.values())
    assert not report.ok
    assert any("out of time" in f.error for f in report.failed), report.to_dict()["failed"]
    assert report.healed == []
    assert world.trail.requests == []  # no LookupEvents it could not wait for
    assert described.counts["DescribeSecret"] == 1  # nor a DescribeSecret per secret
    items = clients.dynamodb.scan(TableName=state_table)["Items"]
    assert not [i for i in items if i["pk"]["S"].startswith("rotation#")]  # no moment guessed


def test_an_index_that_cannot_be_written_does_not_stop_the_heal(
    world: World, table_runtime: Runtime, clients: AwsClients, state_table: str
) -> None:
    """The index is the rotation path's shortcut; healing is the pass's duty. A rebuild that
    fails (DynamoDB refusing its writes) is reported, and the stale consumers are still
    healed: before, the error ended the pass, and a rebuild that always fails (an item too
    large, a permission) would have stopped every heal for good."""
    from orchestration.state.consumer_index import ConsumerIndex
    from tests.aws_fakes import FailFor

    _record_the_event_path_rotation(table_runtime, world)
    index = ConsumerIndex.for_table(clients.dynamodb, state_table, table_runtime.retry)
    FailFor("TransactWriteItems", "ValidationException").attach(clients.dynamodb)
    before = world.primaries()

    report = reconcile(table_runtime, index=index)

    assert _changed(before, world.primaries()) == HEALED
    assert report.metrics["HealedByReconciler"] == len(HEALED)
    assert report.index.startswith("not rebuilt: ")
    assert "ValidationException" in report.index
    assert index.built_at(REGION) is None
    assert not report.ok  # said, and the exit status says so


def test_a_secret_whose_older_versions_lost_their_labels_is_not_taken_for_its_only_version(
    world: World, table_runtime: Runtime, clients: AwsClients
) -> None:
    """ListSecretVersionIds leaves deprecated versions (no staging label) out unless asked
    (``IncludeDeprecated``): a secret whose old version lost AWSPREVIOUS lists one version,
    yet its current one was created AWSPENDING and made current later. A consumer deployed
    in between holds the old value and must be redeployed, not judged by "only version"."""
    sm = clients.secretsmanager
    first = sm.create_secret(Name="prod/relabelled", SecretString="first")
    _backdate_version("prod/relabelled", first["VersionId"], NOW - timedelta(days=30))
    pending = sm.put_secret_value(
        SecretId="prod/relabelled", SecretString="second", VersionStages=["AWSPENDING"]
    )["VersionId"]
    sm.update_secret_version_stage(
        SecretId="prod/relabelled",
        VersionStage="AWSCURRENT",
        MoveToVersionId=pending,
        RemoveFromVersionId=first["VersionId"],
    )
    sm.update_secret_version_stage(
        SecretId="prod/relabelled",
        VersionStage="AWSPREVIOUS",
        RemoveFromVersionId=first["VersionId"],
    )
    _backdate_version("prod/relabelled", pending, CREATED)
    listed = sm.list_secret_version_ids(SecretId="prod/relabelled")["Versions"]
    assert [v["VersionId"] for v in listed] == [pending]  # as AWS lists it, unasked
    task_definition = world.ecs.task_definition(secrets=[first["ARN"]])
    world.ecs.service(
        "prod", "relabelled-between", task_definition, deployed_at=DEPLOYED["between"]
    )
    before = world.ecs.primary("prod", "relabelled-between")["id"]

    report = reconcile(table_runtime, secret="prod/relabelled")

    [secret] = report.to_dict()["secrets"]
    assert secret["evidence"] != "only-version"
    assert world.ecs.primary("prod", "relabelled-between")["id"] != before


def test_a_service_holding_two_stale_secrets_is_redeployed_once(
    world: World,
    queued_runtime: Any,
    redeploy_queue: RedeployQueue,
    state_table: str,
) -> None:
    """One service reads two secrets, both rotated without an event: two lost events (each
    counted), one deployment (it holds both new values): the second job finds the service
    redeployed after its value by the first."""
    task_definition = world.ecs.task_definition(
        secrets=[world.arns["prod/unknown"], world.arns["prod/trailed"]]
    )
    world.ecs.service("prod", "both-old", task_definition, deployed_at=DEPLOYED["old"])
    stack = queued_runtime(state_table=state_table)

    report = reconcile(stack.runtime, secret=None)

    both = [c for s in report.secrets for c in s.consumers if c.service_arn.endswith("/both-old")]
    assert [c.action for c in both] == [Action.QUEUED, Action.QUEUED]
    drain(redeploy_queue, stack.worker)
    assert world.ecs.updates_reached_moto["both-old"] == 1


def test_a_call_about_another_secret_with_the_same_version_id_is_not_taken(
    world: World, table_runtime: Runtime
) -> None:
    """A version id is the caller's ClientRequestToken: unique per secret, not per account
    (a tool may send "v2" for every secret). A PutSecretValue that made ANOTHER secret's
    version of that id current says nothing about this one: taken, it set prod/unknown's
    moment before unknown-between's deployment, and left that service on the old value."""
    world.trail.add(
        "PutSecretValue",
        NOW - timedelta(minutes=50),  # after the version's creation, before unknown-between
        requestParameters={"secretId": "prod/other", "versionStages": ["AWSCURRENT"]},
        responseElements={
            "arn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/other-AbCdEf",
            "name": "prod/other",
            "versionId": world.versions["prod/unknown"],
            "versionStages": ["AWSCURRENT"],
        },
    )
    before = world.primaries()

    report = reconcile(table_runtime, secret="prod/unknown")

    [secret] = report.to_dict()["secrets"]
    assert secret["evidence"] == "unknown", secret
    assert {"unknown-between", "unknown-after"} <= _changed(before, world.primaries())


def test_update_secret_as_cloudtrail_logs_it_names_the_secret(
    world: World, clients: AwsClients, retry: Any
) -> None:
    """UpdateSecret's responseElements spell the ARN "aRN" (events/update-secret-new-value.json)
    and its request may name the secret by name: still this secret's call."""
    from orchestration.reconcile.moments import CloudTrailHistory as History
    from orchestration.secrets.references import SecretIdentity

    arn, version = world.arns["prod/unknown"], world.versions["prod/unknown"]
    at = CREATED + timedelta(seconds=20)
    world.trail.add(
        "UpdateSecret",
        at,
        requestParameters={"secretId": "prod/unknown", "clientRequestToken": version},
        responseElements={"aRN": arn, "name": "prod/unknown", "versionId": version},
    )
    history = History(clients.cloudtrail, retry)

    answer = history.became_current(SecretIdentity.from_full_arn(arn), version, CREATED)

    assert answer is not None and answer.at == at


def test_the_heal_comes_before_the_index_rebuild_when_time_is_short(
    world: World, table_runtime: Runtime, clients: AwsClients, state_table: str
) -> None:
    """Healing is the pass's duty, the index a shortcut: a first rebuild of a large account
    (thousands of writes) must not take the time the heal needs. Before, the rebuild came
    first, and a pass whose rebuild ate its time healed nothing."""
    from orchestration.state.consumer_index import ConsumerIndex

    _record_the_event_path_rotation(table_runtime, world)
    left = [float("inf")]

    def rebuilding(**_: Any) -> None:  # the index's rebuild reads the region's items first
        left[0] = -1.0

    clients.dynamodb.meta.events.register("before-call.dynamodb.Scan", rebuilding)
    runtime = table_runtime.with_deadline(lambda: left[0])
    index = ConsumerIndex.for_table(clients.dynamodb, state_table, runtime.retry)
    before = world.primaries()

    report = reconcile(runtime, index=index)

    assert _changed(before, world.primaries()) == HEALED
    assert report.metrics["HealedByReconciler"] == len(HEALED)


def test_cloudtrail_history_is_read_once_a_pass_not_once_a_secret(
    world: World, clients: AwsClients, retry: Any
) -> None:
    """LookupEvents filters by one attribute (here the event name), at 2 requests a second for
    the whole account: each secret's search read the account's whole history of that call
    again. A pass reads it once; a search from earlier reads only the part before (EndTime)."""
    from orchestration.reconcile.moments import CloudTrailHistory as History
    from orchestration.secrets.references import SecretIdentity

    trailed = SecretIdentity.from_full_arn(world.arns["prod/trailed"])
    unknown = SecretIdentity.from_full_arn(world.arns["prod/unknown"])
    earlier = CREATED - timedelta(hours=2)
    for i in range(120):  # three pages of other secrets' label moves
        world.trail.add(
            "UpdateSecretVersionStage",
            CREATED + timedelta(seconds=i),
            requestParameters={
                "secretId": f"prod/other-{i}",
                "versionStage": "AWSCURRENT",
                "moveToVersionId": f"v-{i}",
            },
        )
    world.trail.add(
        "UpdateSecretVersionStage",
        earlier + timedelta(minutes=5),
        requestParameters={
            "secretId": unknown.arn,
            "versionStage": "AWSCURRENT",
            "moveToVersionId": "made-current-early",
        },
    )
    history = History(clients.cloudtrail, retry)

    first = history.became_current(trailed, world.versions["prod/trailed"], CREATED)
    reads = len(world.trail.requests)
    again = history.became_current(trailed, world.versions["prod/trailed"], CREATED)
    before = history.became_current(unknown, "made-current-early", earlier)

    assert first is not None and again is not None and first.at == again.at == MOVED
    assert reads == 3  # 122 records, 50 a page
    requests = world.trail.requests[reads:]
    assert len(requests) == 1  # only the two hours before CREATED, one page
    assert requests[0]["EndTime"] == CREATED.timestamp()
    assert before is not None and before.at == earlier + timedelta(minutes=5)
    # What the pass holds is what the searches read, not whole records (a busy account's
    # 90 days of label moves are many).
    from orchestration.reconcile.moments import KEPT_FIELDS

    held = history._held["UpdateSecretVersionStage"][1]
    assert len(held) == 123 and all(set(record) <= set(KEPT_FIELDS) for record in held)


def test_a_cloudtrail_search_cut_short_by_the_deadline_guesses_nothing(
    world: World, table_runtime: Runtime, clients: AwsClients, state_table: str
) -> None:
    """Out of time in the middle of a secret's CloudTrail search (the rate limiter refuses a
    page it has no time to wait for), the secret is left to the next pass: before, the moment
    became "unknown", was recorded as first-seen for good, and trailed-after, which holds the
    value (CloudTrail knows), was redeployed."""
    _record_the_event_path_rotation(table_runtime, world)
    for i in range(60):  # a second page of label moves
        world.trail.add(
            "UpdateSecretVersionStage",
            CREATED + timedelta(seconds=i),
            requestParameters={
                "secretId": f"prod/other-{i}",
                "versionStage": "AWSCURRENT",
                "moveToVersionId": f"v-{i}",
            },
        )
    left = [float("inf")]

    def out_of_time(**_: Any) -> None:
        left[0] = -1.0

    clients.cloudtrail.meta.events.register("before-call.cloudtrail.LookupEvents", out_of_time)
    runtime = table_runtime.with_deadline(lambda: left[0])
    before = world.primaries()

    report = reconcile(runtime)

    changed = _changed(before, world.primaries())
    assert not {"trailed-old", "trailed-between", "trailed-after"} & changed
    assert {"recorded-old", "recorded-between", "single-old"} <= changed  # before it: healed
    assert any("out of time" in f.error for f in report.failed)
    trailed = f"rotation#{world.arns['prod/trailed']}@{world.versions['prod/trailed']}"
    items = clients.dynamodb.scan(TableName=state_table)["Items"]
    assert not [i for i in items if i["pk"]["S"] == trailed]  # no moment guessed


def test_first_seen_is_taken_on_aws_clock_not_a_slow_local_one(
    world: World, table_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rotor reconcile`` runs on any machine. With the moment unknown, "first seen" bounds
    it: a deployment after it holds the value. Taken on a clock 50 minutes slow, that bound
    fell before the label's move (30 minutes ago), and unknown-between (45 minutes ago: the
    OLD value) was judged fresh, and that bound recorded for good. DescribeSecret's answer
    carries AWS's time (the HTTP Date header): the bound is never before it."""
    import importlib

    heal = importlib.import_module("orchestration.reconcile.heal")
    real = heal.datetime

    class SlowClock(real):  # type: ignore[misc,valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.now(tz) - timedelta(minutes=50)

    monkeypatch.setattr(heal, "datetime", SlowClock)
    before = world.primaries()

    report = reconcile(table_runtime, secret="prod/unknown")

    assert "unknown-between" in _changed(before, world.primaries())
    [secret] = report.to_dict()["secrets"]
    assert secret["became_current_at"] >= iso(NOW)


def test_a_dry_run_counts_what_the_pass_would_count(
    world: World,
    queued_runtime: Any,
    state_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dry run's would_metrics are the pass's: a consumer a real pass would queue again
    without counting is not counted by the dry run either."""
    import importlib

    heal = importlib.import_module("orchestration.reconcile.heal")
    stack = queued_runtime(state_table=state_table)
    _record_the_event_path_rotation(stack.runtime, world)
    reconcile(stack.runtime)
    monkeypatch.setattr(heal, "QUEUED_RECENTLY", timedelta(0))  # the jobs look lost now

    dry = reconcile(stack.runtime, dry_run=True)

    assert "HealedByReconciler" not in dry.to_dict()["would_metrics"]
    would = {c.service_arn.rsplit("/", 1)[-1] for c in dry.consumers(Action.WOULD_REQUEUE)}
    assert would == HEALED


def test_rotors_own_deployment_is_fresh_even_when_aws_clock_runs_ahead(
    world: World, table_runtime: Runtime, clients: AwsClients
) -> None:
    """ "First seen" is taken on AWS's clock, rounded up: it may fall just after the
    deployments the same pass then makes (here AWS's clock runs 10 s ahead of ECS's
    deployment times). The next pass must still take rotor's own deployment for this value
    as fresh, not as an older deployment it happens not to redeploy again."""
    from email.utils import format_datetime

    def ahead(parsed: dict[str, Any], **_: Any) -> None:
        headers = parsed.setdefault("ResponseMetadata", {}).setdefault("HTTPHeaders", {})
        headers["date"] = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)

    clients.secretsmanager.meta.events.register("after-call.secrets-manager.DescribeSecret", ahead)
    before = world.primaries()
    first = reconcile(table_runtime, secret="prod/unknown")
    healed = _changed(before, world.primaries())
    assert {"unknown-old", "unknown-between", "unknown-after"} <= healed
    assert len(first.healed) == len(healed)

    second = reconcile(table_runtime, secret="prod/unknown")

    consumers = _by_service(second)
    assert second.healed == []
    for name in healed:
        assert (consumers[name]["action"], consumers[name]["stale"]) == ("fresh", False)
