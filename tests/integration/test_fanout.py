"""Fan-out through SQS: the rotation handler plans and enqueues, the worker handler redeploys.

A real (moto) redeploy queue with a dead-letter queue; the worker is driven the way Lambda's
SQS event source drives it: receive, invoke with the records, delete what did not fail.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.aws_fakes import ErrorInjector
from tests.integration.conftest import MAX_RECEIVES, label_event, rotation_event
from tests.integration.test_handler_rotation import emf_lines, emf_values, log_records
from tests.integration.workers import FakeLambdaContext, drain, stale_world

pytestmark = pytest.mark.integration


def test_rotation_enqueues_batches_of_ten_and_the_worker_redeploys_each_once(
    ecs_world, redeploy_queue, queued_runtime, sqs_calls
):
    db = stale_world(ecs_world, {"prod": 23})
    stack = queued_runtime()

    result = stack.rotation(rotation_event(db), FakeLambdaContext())

    assert result["status"] == "processed"
    assert result["redeployed"] == []
    assert len(result["queued"]) == 23
    batches = sqs_calls.of("SendMessageBatch")
    assert [len(b["Entries"]) for b in batches] == [10, 10, 3]
    assert redeploy_queue.counts() == 23
    assert ecs_world.updates_reached_moto == Counter()  # nothing deployed by the planner

    answers = drain(redeploy_queue, stack.worker)

    assert all(a["batchItemFailures"] == [] for a in answers)
    assert ecs_world.updates_reached_moto == Counter(f"prod-stale-{i}" for i in range(23))
    assert redeploy_queue.counts() == 0
    assert redeploy_queue.counts(redeploy_queue.dlq_url) == 0


def test_two_deliveries_of_one_rotation_redeploy_once(ecs_world, redeploy_queue, queued_runtime):
    db = stale_world(ecs_world, {"prod": 3})
    stack = queued_runtime()
    event = rotation_event(db)

    first = stack.rotation(event, FakeLambdaContext())
    second = stack.rotation(event, FakeLambdaContext())  # before any job ran: queued again
    drain(redeploy_queue, stack.worker)
    third = stack.rotation(event, FakeLambdaContext())  # after: everyone is fresh

    assert len(first["queued"]) == len(second["queued"]) == 3
    assert third["queued"] == []
    assert len(third["skipped"]) == 4
    assert ecs_world.updates_reached_moto == Counter(f"prod-stale-{i}" for i in range(3))


def test_a_handler_short_of_time_enqueues_the_rest_of_its_plan(
    ecs_world, redeploy_queue, queued_runtime, ecs_calls
):
    db = stale_world(ecs_world, {"blue": 2, "green": 2, "red": 2})
    stack = queued_runtime(max_workers=1)  # plan one cluster at a time

    # 39 s left, less the handler's 10 s margin: time for one cluster, then the reserve.
    result = stack.rotation(rotation_event(db), FakeLambdaContext(remaining_millis=39_000))

    assert result["status"] == "processed"
    assert len(result["queued"]) == 2  # the first cluster's stale consumers
    assert any("left to the worker" in note for note in result["notes"])
    assert ecs_calls.counts["DescribeServices"] == 1  # only one cluster was scanned
    plan_jobs = [json.loads(m["Body"]) for m in redeploy_queue.receive()]
    assert sorted(j["kind"] for j in plan_jobs) == ["plan", "redeploy", "redeploy"]
    (plan,) = [j for j in plan_jobs if j["kind"] == "plan"]
    assert len(plan["clusters"]) == 2
    redeploy_queue.sqs.purge_queue(QueueUrl=redeploy_queue.url)
    assert redeploy_queue.counts() == 0

    # Nothing is lost: the same rotation again, cut short the same way, then the worker.
    stack.rotation(rotation_event(db), FakeLambdaContext(remaining_millis=39_000))
    answers = drain(redeploy_queue, stack.worker)

    assert all(a["batchItemFailures"] == [] for a in answers)
    stale = {f"{c}-stale-{i}" for c in ("blue", "green", "red") for i in range(2)}
    assert ecs_world.updates_reached_moto == Counter(stale)


def test_a_job_throttled_past_its_retries_lands_in_the_dead_letter_queue(
    clients, ecs_world, redeploy_queue, queued_runtime, sqs_calls
):
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime()
    throttle = ErrorInjector(1.0, operations={"UpdateService"}).attach(clients.ecs)
    stack.rotation(rotation_event(db), FakeLambdaContext())

    for receive in range(1, MAX_RECEIVES + 1):
        messages = redeploy_queue.receive()
        assert len(messages) == 1, f"receive {receive}"
        answer = stack.worker(redeploy_queue.sqs_event(messages), FakeLambdaContext())
        assert answer["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]
        (hidden,) = sqs_calls.of("ChangeMessageVisibility")[-1:]
        # Comes back later, and later each time: 10-20 s, 20-40 s, 40-80 s.
        assert 10 * 2 ** (receive - 1) <= hidden["VisibilityTimeout"] <= 20 * 2 ** (receive - 1)
        # Time passes: the job is visible again.
        redeploy_queue.sqs.change_message_visibility(
            QueueUrl=redeploy_queue.url,
            ReceiptHandle=messages[0]["ReceiptHandle"],
            VisibilityTimeout=0,
        )

    assert redeploy_queue.receive() == []  # the next receive moves it to the DLQ
    (dead,) = redeploy_queue.receive(redeploy_queue.dlq_url)
    job = json.loads(dead["Body"])
    assert job["kind"] == "redeploy"
    assert job["service_arn"].endswith("/prod-stale-0")
    assert throttle.injected["UpdateService"] >= MAX_RECEIVES
    assert ecs_world.updates_reached_moto == Counter()


def test_a_message_that_is_not_a_job_is_dropped_not_retried(redeploy_queue, queued_runtime):
    stack = queued_runtime()
    redeploy_queue.sqs.send_message(QueueUrl=redeploy_queue.url, MessageBody='{"kind": "nope"}')
    messages = redeploy_queue.receive()

    answer = stack.worker(redeploy_queue.sqs_event(messages), FakeLambdaContext())

    assert answer["batchItemFailures"] == []


def _label(secret_arn: str, version: str, at: datetime) -> dict:
    event = label_event(secret_arn, "prod/db", at=at)
    event["detail"]["versionId"] = version
    return event


def test_a_rollback_after_two_quick_values_redeploys_though_v1s_job_ran_late(
    clients, ecs_world, redeploy_queue, queued_runtime
):
    """v1's job runs after v2 became current: its deployment holds v2, and the ledger must say
    so (the worker describes the secret right before its claim), or the rollback to v1 is
    refused as "already redeployed for v1"."""
    now = datetime.now(UTC).replace(microsecond=0)
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    sm = clients.secretsmanager
    stack = queued_runtime()
    v1 = sm.describe_secret(SecretId=db)["VersionIdsToStages"]
    (v1,) = [v for v, stages in v1.items() if "AWSCURRENT" in stages]
    stack.rotation(_label(db, v1, now - timedelta(seconds=2)), FakeLambdaContext())
    v2 = sm.put_secret_value(SecretId=db, SecretString="placeholder-2")["VersionId"]
    stack.rotation(_label(db, v2, now - timedelta(seconds=1)), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)  # v1's jobs deploy v2; v2's find the services fresh
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1, "prod-stale-1": 1})

    # v2 was bad: AWSCURRENT moved back to v1, which no task holds.
    sm.update_secret_version_stage(
        SecretId=db, VersionStage="AWSCURRENT", MoveToVersionId=v1, RemoveFromVersionId=v2
    )
    rollback = stack.rotation(_label(db, v1, now + timedelta(minutes=2)), FakeLambdaContext())
    answers = drain(redeploy_queue, stack.worker)

    assert len(rollback["queued"]) == 2
    assert all(a["batchItemFailures"] == [] for a in answers)
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 2, "prod-stale-1": 2})


def test_a_plan_job_throttled_again_and_again_lands_in_the_dead_letter_queue(
    clients, ecs_world, redeploy_queue, queued_runtime
):
    """The worker must not hand a throttled plan on as a new message (receive count 1 again,
    forever): the message itself comes back, and after maxReceiveCount it is dead-lettered."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime()
    throttle = ErrorInjector(1.0, operations={"ListClusters"}).attach(clients.ecs)
    result = stack.rotation(rotation_event(db), FakeLambdaContext())
    assert any("left to the worker" in note for note in result["notes"])

    for receive in range(1, MAX_RECEIVES + 1):
        messages = redeploy_queue.receive()
        assert [json.loads(m["Body"])["kind"] for m in messages] == ["plan"], f"receive {receive}"
        assert messages[0]["Attributes"]["ApproximateReceiveCount"] == str(receive)
        answer = stack.worker(redeploy_queue.sqs_event(messages), FakeLambdaContext())
        assert answer["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]
        redeploy_queue.delete(messages, {messages[0]["MessageId"]})
        redeploy_queue.sqs.change_message_visibility(  # time passes
            QueueUrl=redeploy_queue.url,
            ReceiptHandle=messages[0]["ReceiptHandle"],
            VisibilityTimeout=0,
        )

    assert redeploy_queue.receive() == []
    (dead,) = redeploy_queue.receive(redeploy_queue.dlq_url)
    assert json.loads(dead["Body"])["kind"] == "plan"
    assert throttle.injected["ListClusters"] > MAX_RECEIVES
    assert ecs_world.updates_reached_moto == Counter()


def test_manual_redeploys_found_by_the_rest_of_a_plan_are_notified_too(
    ecs_world, redeploy_queue, queued_runtime, inbox
):
    db = ecs_world.secret("prod/db")
    task_definition = ecs_world.task_definition(secrets=[db])
    for cluster in ("blue", "green", "red"):
        ecs_world.cluster(cluster)
        ecs_world.service(
            cluster,
            f"{cluster}-bluegreen",
            task_definition,
            controller="CODE_DEPLOY",
            load_balancers=[("app", 8080)],
        )
    stack = queued_runtime(max_workers=1, topic_arn=inbox.topic_arn)

    # Time for one cluster: the other two are left to the worker as a plan job.
    result = stack.rotation(rotation_event(db), FakeLambdaContext(remaining_millis=39_000))
    answers = drain(redeploy_queue, stack.worker)

    assert len(result["manual"]) == 1
    assert all(a["batchItemFailures"] == [] for a in answers)
    told = sorted(
        name
        for envelope in inbox.drain()
        for name in ("blue-bluegreen", "green-bluegreen", "red-bluegreen")
        if name in envelope["Message"]
    )
    assert told == ["blue-bluegreen", "green-bluegreen", "red-bluegreen"]
    assert ecs_world.updates_reached_moto == Counter()


@pytest.fixture
def worker_logs():
    """Everything the Powertools logger writes while the test runs (JSON lines)."""
    from handlers.observability import logger

    handler = logger.registered_handler
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


def test_an_unexpected_error_is_logged_with_the_job_counted_and_the_job_put_back(
    clients, ecs_world, redeploy_queue, queued_runtime, sqs_calls, capsys, worker_logs
):

    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime()
    stack.rotation(rotation_event(db), FakeLambdaContext())
    capsys.readouterr()

    def broken(**_):
        raise ValueError("an answer rotor did not expect")

    # The job runs on the planner's look at the service; it still asks which value is
    # AWSCURRENT now.
    clients.secretsmanager.meta.events.register(
        "before-call.secrets-manager.DescribeSecret", broken
    )
    messages = redeploy_queue.receive()
    answer = stack.worker(redeploy_queue.sqs_event(messages), FakeLambdaContext())

    assert answer["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]
    (record,) = emf_lines(capsys.readouterr().out)
    assert emf_values(record)["ProcessingErrors"] == 1
    (logged,) = [r for r in log_records(worker_logs) if "unexpected error" in r["message"]]
    assert logged["level"] == "ERROR"
    assert logged["job"].startswith("arn:aws:ecs:us-east-1:123456789012:service/prod/prod-stale-0#")
    assert logged["error_type"] == "ValueError"
    (hidden,) = sqs_calls.of("ChangeMessageVisibility")
    assert hidden["VisibilityTimeout"] >= 10
    assert ecs_world.updates_reached_moto == Counter()
