"""Issue 14's "also found" items, each settled by a test that enforces what AWS does."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from orchestration.fanout.queue import queue_url
from orchestration.state.rollouts import Status
from tests.aws_fakes import FailFor
from tests.integration.conftest import rotation_event
from tests.integration.workers import FakeLambdaContext, drain, stale_world

pytestmark = pytest.mark.integration


def _statuses(runtime, secret_arn: str) -> dict[str, tuple[str, str]]:
    since = datetime.now(UTC) - timedelta(days=1)
    return {
        arn.rsplit("/", 1)[-1]: (s.status.value, s.detail)
        for r in runtime.rollouts.rotations(since, secret_arn)
        for arn, s in r.services.items()
    }


def test_a_job_for_a_deleted_cluster_is_skipped_with_a_reason_not_dead_lettered(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table
):
    """AWS answers DescribeServices and UpdateService on a cluster that no longer exists with
    ClusterNotFoundException (moto answers an empty list): the job is skipped, not retried
    until maxReceiveCount sends it to the dead-letter queue. The job decides on the planner's
    look at the service (taken before the cluster went): its UpdateService fails, and a look
    at the service then says why."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime(state_table=state_table)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    # The cluster is deleted before the job runs: AWS's answers, injected before moto's.
    FailFor("DescribeServices", "ClusterNotFoundException").attach(clients.ecs)
    FailFor("UpdateService", "ClusterNotFoundException").attach(clients.ecs)

    answers = drain(redeploy_queue, stack.worker)

    assert [a["batchItemFailures"] for a in answers] == [[]]
    assert redeploy_queue.counts() == redeploy_queue.counts(redeploy_queue.dlq_url) == 0
    assert ecs_world.updates_reached_moto == Counter()
    status, detail = _statuses(stack.runtime, db)["prod-stale-0"]
    assert status == Status.SKIPPED
    assert "no longer exists" in detail


@pytest.mark.parametrize(
    ("region", "partition", "host"),
    [
        ("us-east-1", "aws", "sqs.us-east-1.amazonaws.com"),
        ("cn-north-1", "aws-cn", "sqs.cn-north-1.amazonaws.com.cn"),
    ],
)
def test_the_deferral_resend_uses_the_queue_url_of_the_partition(region, partition, host):
    """A job waiting for its cluster's cap is sent again to the queue it came from: at its URL
    in aws-cn too (Powertools' ``record.queue_url`` assumes amazonaws.com)."""
    sqs: Any = boto3.client("sqs", region_name=region)
    arn = f"arn:{partition}:sqs:{region}:123456789012:rotor-redeploy"

    assert queue_url(arn, sqs) == f"https://{host}/123456789012/rotor-redeploy"


def test_the_worker_sends_a_deferred_job_back_to_its_own_queue(
    clients, ecs_world, redeploy_queue, queued_runtime, sqs_calls
):
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(max_rollouts_per_cluster=1)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)

    resent = sqs_calls.of("SendMessageBatch")[-1]
    assert resent["QueueUrl"] == redeploy_queue.url
    assert queue_url(redeploy_queue.arn, clients.sqs) == redeploy_queue.url


def _ttl_sweep(clients, table: str) -> int:
    """What DynamoDB's TTL may do at any moment: delete every item whose ``expires_at`` has
    passed (wall-clock time). moto never sweeps, so the test does."""
    import time

    swept = 0
    for item in clients.dynamodb.scan(TableName=table)["Items"]:
        if "expires_at" in item and int(item["expires_at"]["N"]) <= time.time():
            clients.dynamodb.delete_item(TableName=table, Key={"pk": item["pk"]})
            swept += 1
    return swept


def test_a_backlog_processed_after_its_window_notifies_once(clients, retry, state_table):
    """Two reads of one secret by one caller, a second apart, are processed 20 minutes late
    (a backlog): one window, one notification, even if the TTL sweeps in between."""
    from orchestration.state.notify_window import DynamoDbNotifyWindow

    window = DynamoDbNotifyWindow(clients.dynamodb, state_table, timedelta(minutes=15), retry)
    read_at = datetime.now(UTC) - timedelta(minutes=20)

    first = window.claim("secret|caller", read_at)
    swept = _ttl_sweep(clients, state_table)
    second = window.claim("secret|caller", read_at + timedelta(seconds=1))

    assert (first, second) == (True, False)
    assert swept == 0


MAX_ITEM_BYTES = 400 * 1024


def enforce_item_size(client: Any) -> None:
    """Refuse a write whose item would pass 400 KB, as DynamoDB does (ValidationException
    "Item size has exceeded the maximum allowed size"); moto accepts it. The size is
    estimated from the JSON of the item (attribute names and values), as AWS counts them."""
    import json

    from tests.aws_fakes import _error_response

    reader = boto3.client("dynamodb", region_name=client.meta.region_name)

    def inspect(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if model.name == "PutItem":
            size = len(json.dumps(params.get("Item", {})))
        elif model.name == "UpdateItem":
            held = reader.get_item(TableName=params["TableName"], Key=params["Key"]).get("Item")
            size = len(json.dumps(held or {})) + len(
                json.dumps(params.get("ExpressionAttributeValues", {}))
            )
        else:
            return
        if size > MAX_ITEM_BYTES:
            context["too_big"] = True

    def refuse(context: dict[str, Any], **_: Any) -> Any:
        if context.get("too_big"):
            return _error_response(
                400, "ValidationException", "Item size has exceeded the maximum allowed size"
            )
        return None

    client.meta.events.register("before-parameter-build.dynamodb", inspect)
    client.meta.events.register("before-call.dynamodb", refuse)


def test_a_rotation_of_thousands_of_consumers_keeps_every_status(clients, retry, state_table):
    """A rotation's statuses once lived in one item, which passes DynamoDB's 400 KB item limit
    at about 1,500 consumers: every later status was lost (and only logged)."""
    from orchestration.state.rollouts import DynamoDbRolloutStore, ServiceStatus

    enforce_item_size(clients.dynamodb)
    store = DynamoDbRolloutStore(clients.dynamodb, state_table, retry)
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"
    rotation_id = f"{secret}@v1"
    store.record_rotation(rotation_id, secret, "v1", datetime.now(UTC))
    cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/production-cluster-with-a-long-name"
    services = [
        f"arn:aws:ecs:us-east-1:123456789012:service/production-cluster-with-a-long-name/"
        f"service-{i:05d}-with-a-fairly-long-name-as-real-ones-have"
        for i in range(1_600)
    ]
    for arn in services:
        store.set_status(
            rotation_id,
            arn,
            ServiceStatus(Status.QUEUED, "job on the redeploy queue", datetime.now(UTC), cluster),
        )

    [rotation] = store.rotations(datetime.now(UTC) - timedelta(days=1))
    assert len(rotation.services) == len(services)
    assert {s.status for s in rotation.services.values()} == {Status.QUEUED}


def test_a_rotor_deployment_superseded_by_another_ends_with_it_and_frees_its_place(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table
):
    """Someone deploys a service while rotor's deployment of it runs: ECS reports the end of
    the new deployment only. rotor's must not stay "deploying", holding its cluster's slot."""
    import time_machine

    from orchestration.fanout.queue import DEFER_SECONDS
    from tests.integration.test_tracking import deployment_event

    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(state_table=state_table, max_rollouts_per_cluster=1)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        drain(redeploy_queue, stack.worker)
        [(first, _)] = ecs_world.updates_reached_moto.items()
        # A pipeline deploys the service rotor is redeploying; that deployment completes.
        theirs = ecs_world.ecs.update_service(
            cluster="prod", service=first, forceNewDeployment=True
        )["service"]
        theirs_id = next(d["id"] for d in theirs["deployments"] if d["status"] == "PRIMARY")
        prod = "arn:aws:ecs:us-east-1:123456789012:service/prod"
        stack.tracker(deployment_event(f"{prod}/{first}", theirs_id), FakeLambdaContext())
        clock.shift(timedelta(seconds=DEFER_SECONDS))
        drain(redeploy_queue, stack.worker)

    status, detail = _statuses(stack.runtime, db)[first]
    assert status == Status.FRESH
    assert "superseded" in detail
    # The other service got the place rotor's superseded deployment held.
    assert sum(ecs_world.updates_reached_moto.values()) == 3  # rotor 2, the pipeline 1
    assert redeploy_queue.counts() == 0


def _set_rollout_state(ecs_world, cluster: str, service: str, state: str) -> None:
    """What ECS says of the service's PRIMARY deployment (moto never moves it on)."""
    for deployment in ecs_world.backend.services[f"{cluster}:{service}"].deployments:
        if deployment["status"] == "PRIMARY":
            deployment["rolloutState"] = state


@pytest.mark.parametrize("backend", ["memory", "state_table"])
def test_a_cluster_slot_outlives_its_lease_while_the_rollout_still_runs(
    clients, ecs_world, redeploy_queue, queued_runtime, request, backend
):
    """Nobody reports the end of a rollout for 31 minutes: the slot's lease has ended, but ECS
    says the rollout is still in progress, so the slot stays held. Once ECS says it is over,
    the slot is freed and the next service goes."""
    import time_machine

    from orchestration.fanout.queue import DEFER_SECONDS

    table = request.getfixturevalue("state_table") if backend == "state_table" else None
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(state_table=table, max_rollouts_per_cluster=1)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        drain(redeploy_queue, stack.worker)
        [first] = ecs_world.updates_reached_moto
        _set_rollout_state(ecs_world, "prod", first, "IN_PROGRESS")

        clock.shift(timedelta(minutes=31))
        drain(redeploy_queue, stack.worker)
        assert ecs_world.updates_reached_moto == Counter([first])  # still waiting
        assert redeploy_queue.counts() == 1

        _set_rollout_state(ecs_world, "prod", first, "COMPLETED")
        for _ in range(5):  # looked at again a few minutes later
            clock.shift(timedelta(seconds=DEFER_SECONDS))
            drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter(["prod-stale-0", "prod-stale-1"])
    assert redeploy_queue.counts() == redeploy_queue.counts(redeploy_queue.dlq_url) == 0


def test_the_late_end_of_an_older_deployment_does_not_end_rotors_newer_one(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table
):
    """EventBridge does not keep order: a pipeline's deployment that completed just before
    rotor forced its own can be reported after it. That deployment ended before rotor's
    began, so it superseded nothing: rotor's stays "deploying" and keeps its cluster slot."""
    import time_machine

    from orchestration.fanout.queue import DEFER_SECONDS
    from orchestration.times import iso
    from tests.integration.test_tracking import deployment_event

    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(state_table=state_table, max_rollouts_per_cluster=1)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        [older] = [
            d["id"]
            for d in ecs_world.ecs.describe_services(cluster="prod", services=["prod-stale-0"])[
                "services"
            ][0]["deployments"]
        ]
        clock.shift(timedelta(seconds=10))
        drain(redeploy_queue, stack.worker)
        [(first, _)] = ecs_world.updates_reached_moto.items()
        assert first == "prod-stale-0"
        # The completion of the deployment rotor's replaced, delivered late.
        prod = "arn:aws:ecs:us-east-1:123456789012:service/prod"
        late = deployment_event(f"{prod}/{first}", older)
        late["time"] = late["detail"]["updatedAt"] = iso(before)
        stack.tracker(late, FakeLambdaContext())
        clock.shift(timedelta(seconds=DEFER_SECONDS))
        drain(redeploy_queue, stack.worker)

    status, detail = _statuses(stack.runtime, db)[first]
    assert status == Status.DEPLOYING, detail
    # Its slot is still held: the other service waits for rotor's deployment to end.
    assert ecs_world.updates_reached_moto == Counter([first])


def _primary_id(ecs_world, cluster: str, service: str) -> str:
    [found] = ecs_world.ecs.describe_services(cluster=cluster, services=[service])["services"]
    return next(d["id"] for d in found["deployments"] if d["status"] == "PRIMARY")


def test_the_repeated_end_of_an_earlier_deployment_keeps_the_slot_of_the_next(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table
):
    """EventBridge delivers at least once, and not in order. The end of rotor's first
    deployment of a service, delivered again while rotor's second deployment of it runs,
    must not free the cluster slot that the second one holds."""
    import time_machine

    from orchestration.state.rollouts import RolloutSlot
    from tests.integration.test_tracking import deployment_event

    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime(state_table=state_table, max_rollouts_per_cluster=1)
    prod = "arn:aws:ecs:us-east-1:123456789012:service/prod"
    cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
    service = f"{prod}/prod-stale-0"
    start = datetime.now(UTC).replace(microsecond=0)
    with time_machine.travel(start, tick=True) as clock:
        stack.rotation(rotation_event(db), FakeLambdaContext())
        drain(redeploy_queue, stack.worker)
        first = _primary_id(ecs_world, "prod", "prod-stale-0")
        ended = deployment_event(service, first)
        stack.tracker(ended, FakeLambdaContext())

        clock.shift(timedelta(minutes=2))
        clients.secretsmanager.put_secret_value(SecretId=db, SecretString="v2")
        stack.rotation(rotation_event(db, start + timedelta(minutes=1)), FakeLambdaContext())
        drain(redeploy_queue, stack.worker)
        second = _primary_id(ecs_world, "prod", "prod-stale-0")
        assert second != first
        stack.tracker(ended, FakeLambdaContext())  # the first one's end, again

        now = datetime.now(UTC)
        assert (
            stack.runtime.rollouts.take_rollout_slot(cluster, f"{prod}/other", now, 1)
            is RolloutSlot.FULL
        )
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 2})
