"""A queued redeploy job carries the planner's look at its service (issue 16: the rotation's ECS
reads, its jobs included, stay within the index's goal).

The planner has just described each consumer; a job it sends at once carries that snapshot,
and a worker that receives it for the first time within ``ROTOR_SNAPSHOT_MAX_AGE`` decides on
it instead of describing the service once more. It still asks which value is AWSCURRENT now.
A job older than that, debounced, sent again to wait, retried after a failure, or written
before jobs carried snapshots describes the service and decides on what it reads.

The worker is driven as Lambda's SQS event source drives it; ECS and Secrets Manager calls are
counted on the clients rotor uses, and outcomes are read back from moto.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest

from orchestration.cli.world import backdate_deployment
from orchestration.state.rollouts import Status
from tests.aws_fakes import ApiCalls, ErrorInjector, FailFor
from tests.integration.conftest import FRESH, rotation_event
from tests.integration.workers import FakeLambdaContext, drain, stale_world

pytestmark = pytest.mark.integration

PROD = "arn:aws:ecs:us-east-1:123456789012:service/prod"


@pytest.fixture
def calls(clients: Any) -> Any:
    """The ECS and Secrets Manager calls rotor makes, counted per phase (``reset``)."""

    class Calls:
        def __init__(self) -> None:
            self.ecs = ApiCalls().attach(clients.ecs)
            self.secrets = ApiCalls().attach(clients.secretsmanager)

        def reset(self) -> None:
            for counter in (self.ecs, self.secrets):
                counter.counts.clear()
                counter.calls.clear()

    return Calls()


def _bodies(redeploy_queue: Any) -> list[dict[str, Any]]:
    """Take every visible message off the queue: their bodies."""
    bodies = []
    while messages := redeploy_queue.receive():
        bodies += [json.loads(m["Body"]) for m in messages]
        redeploy_queue.delete(messages, set())
    return bodies


def _send(redeploy_queue: Any, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        redeploy_queue.sqs.send_message(QueueUrl=redeploy_queue.url, MessageBody=json.dumps(body))


def _at(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def test_a_prompt_job_decides_on_the_planners_look_and_still_asks_for_the_current_value(
    clients, ecs_world, redeploy_queue, queued_runtime, calls
):
    """The full-scan queue path (no index): the planner's scan holds the snapshots too."""
    db = stale_world(ecs_world, {"prod": 3})
    stack = queued_runtime()

    answer = stack.rotation(rotation_event(db), FakeLambdaContext())
    planning = dict(calls.ecs.counts)
    # A later value becomes current before the jobs run: the deployments hold that one.
    later = clients.secretsmanager.put_secret_value(SecretId=db, SecretString="v2")["VersionId"]
    calls.reset()
    answers = drain(redeploy_queue, stack.worker)

    assert len(answer["queued"]) == 3
    assert planning["DescribeServices"] >= 1
    assert all(a["batchItemFailures"] == [] for a in answers)
    assert dict(calls.ecs.counts) == {"UpdateService": 3}  # no DescribeServices in the jobs
    assert calls.secrets.counts["DescribeSecret"] == 3  # the value AWSCURRENT when each ran
    assert ecs_world.updates_reached_moto == Counter(f"prod-stale-{i}" for i in range(3))
    status = stack.runtime.rollouts.status(f"{db}@{later}", f"{PROD}/prod-stale-0")
    assert status is not None and status.status is Status.DEPLOYING


def test_a_job_older_than_the_bound_describes_and_decides_on_what_it_reads(
    ecs_world, redeploy_queue, queued_runtime, calls
):
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(snapshot_max_age="60s")
    stack.rotation(rotation_event(db), FakeLambdaContext())
    bodies = _bodies(redeploy_queue)
    assert all(b["snapshot"] is not None for b in bodies)
    # The jobs ran late (a backlog): their looks are two minutes old. Meanwhile someone
    # deployed prod-stale-0, after the new value.
    for body in bodies:
        body["described_at"] = (_at(body["described_at"]) - timedelta(minutes=2)).isoformat()
    _send(redeploy_queue, bodies)
    backdate_deployment(ecs_world.backend, "prod", "prod-stale-0", FRESH)
    calls.reset()

    answers = drain(redeploy_queue, stack.worker)

    assert all(a["batchItemFailures"] == [] for a in answers)
    assert calls.ecs.counts["DescribeServices"] == 2  # one per job
    skipped = stack.runtime.rollouts.status(bodies[0]["rotation_id"], f"{PROD}/prod-stale-0")
    assert skipped is not None and skipped.status is Status.SKIPPED
    assert skipped.detail.startswith("already fresh")
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-1": 1})


def test_a_debounced_job_carries_no_snapshot_and_describes(
    clients, ecs_world, redeploy_queue, queued_runtime, calls
):
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    sqs_calls = ApiCalls().attach(clients.sqs)
    stack = queued_runtime(debounce_seconds=300)

    stack.rotation(rotation_event(db), FakeLambdaContext())

    (batch,) = sqs_calls.of("SendMessageBatch")
    bodies = [json.loads(entry["MessageBody"]) for entry in batch["Entries"]]
    assert [(b["snapshot"], b["described_at"]) for b in bodies] == [(None, None)] * 2
    # The delay is over: the jobs look at their services now.
    redeploy_queue.sqs.purge_queue(QueueUrl=redeploy_queue.url)
    _send(redeploy_queue, bodies)
    calls.reset()
    drain(redeploy_queue, stack.worker)

    assert calls.ecs.counts["DescribeServices"] == 2
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1, "prod-stale-1": 1})


def test_a_job_sent_again_to_wait_drops_its_snapshot_and_describes(
    clients, ecs_world, redeploy_queue, queued_runtime, calls
):
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    sqs_calls = ApiCalls().attach(clients.sqs)
    stack = queued_runtime(max_rollouts_per_cluster=1)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    calls.reset()

    drain(redeploy_queue, stack.worker)  # one deploys; the other waits for the cluster's slot

    assert calls.ecs.counts["DescribeServices"] == 0
    assert sum(ecs_world.updates_reached_moto.values()) == 1
    (again,) = [
        json.loads(entry["MessageBody"])
        for batch in sqs_calls.of("SendMessageBatch")[1:]  # the first: the planner's
        for entry in batch["Entries"]
    ]
    assert (again["snapshot"], again["described_at"]) == (None, None)
    # Its delay is over (the slot is still held: it waits again), having looked at the service.
    redeploy_queue.sqs.purge_queue(QueueUrl=redeploy_queue.url)
    _send(redeploy_queue, [again])
    calls.reset()
    drain(redeploy_queue, stack.worker)

    assert calls.ecs.counts["DescribeServices"] == 1
    assert sum(ecs_world.updates_reached_moto.values()) == 1


def test_a_job_retried_after_a_failure_describes(
    clients, ecs_world, redeploy_queue, queued_runtime, calls
):
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime()
    throttle = ErrorInjector(1.0, operations={"UpdateService"}).attach(clients.ecs)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    calls.reset()

    (message,) = redeploy_queue.receive()
    first = stack.worker(redeploy_queue.sqs_event([message]), FakeLambdaContext())
    assert first["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    assert calls.ecs.counts["DescribeServices"] == 0  # the planner's look, just made
    # Time passes: the job is visible again, and ECS answers.
    redeploy_queue.sqs.change_message_visibility(
        QueueUrl=redeploy_queue.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    throttle.rate = 0.0
    calls.reset()
    (again,) = redeploy_queue.receive()
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    second = stack.worker(redeploy_queue.sqs_event([again]), FakeLambdaContext())

    assert second["batchItemFailures"] == []
    assert calls.ecs.counts["DescribeServices"] == 1
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1})


def test_a_message_written_before_jobs_carried_snapshots_still_runs(
    ecs_world, redeploy_queue, queued_runtime, calls
):
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime()
    stack.rotation(rotation_event(db), FakeLambdaContext())
    (body,) = _bodies(redeploy_queue)
    del body["snapshot"], body["described_at"]  # as rotor wrote jobs before
    _send(redeploy_queue, [body])
    calls.reset()

    answers = drain(redeploy_queue, stack.worker)

    assert all(a["batchItemFailures"] == [] for a in answers)
    assert calls.ecs.counts["DescribeServices"] == 1
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1})


def test_a_bound_of_zero_always_describes(ecs_world, redeploy_queue, queued_runtime, calls):
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(snapshot_max_age=0)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    calls.reset()

    drain(redeploy_queue, stack.worker)

    assert calls.ecs.counts["DescribeServices"] == 2
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1, "prod-stale-1": 1})


def test_a_service_deleted_after_the_planners_look_is_skipped_not_failed(
    clients, ecs_world, redeploy_queue, queued_runtime, calls
):
    """Its UpdateService fails for good (AWS: ServiceNotActiveException; moto would take it):
    the job looks at the service then, and ECS's answer says why it is skipped."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime()
    stack.rotation(rotation_event(db), FakeLambdaContext())
    ecs_world.ecs.delete_service(cluster="prod", service="prod-stale-0", force=True)
    FailFor("UpdateService", "ServiceNotActiveException").attach(clients.ecs)
    calls.reset()

    answers = drain(redeploy_queue, stack.worker)

    assert [a["batchItemFailures"] for a in answers] == [[]]
    assert redeploy_queue.counts(redeploy_queue.dlq_url) == 0
    assert calls.ecs.counts["DescribeServices"] == 1  # the look after the failure
    stages = clients.secretsmanager.describe_secret(SecretId=db)["VersionIdsToStages"]
    current = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
    status = stack.runtime.rollouts.status(f"{db}@{current}", f"{PROD}/prod-stale-0")
    assert status is not None and status.status is Status.SKIPPED
    assert status.detail == "service is INACTIVE, not ACTIVE"
