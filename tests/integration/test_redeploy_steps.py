"""The redeploy of one service as one state machine: describe, policies, lease, claim,
redeploy, record. Each test drives the worker as Lambda's SQS event source does (receive,
invoke, delete what succeeded, make the rest visible again), with crashes and redeliveries,
and reads the outcome back from moto: deployments, the queue, the state table, the inbox.

Each is a regression test of a bug found by review (issue 14, bugs 1 to 8).
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.fanout.jobs import JobReference, RedeployJob
from orchestration.state.rollouts import Status
from tests.aws_fakes import ErrorInjector, FailFor, LoseFirstAnswer
from tests.conftest import ACCOUNT, REGION
from tests.integration.conftest import (
    MAX_RECEIVES,
    ROTATED_AT,
    label_event,
    rotation_event,
)
from tests.integration.test_policies import current_version, secrets_reference, send_jobs
from tests.integration.test_tracking import deployment_event
from tests.integration.workers import FakeLambdaContext, drain, stale_world

pytestmark = pytest.mark.integration

PROD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/prod"
PROD_CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod"
BACKENDS = ["memory", "state_table"]


def _table(request: Any, backend: str) -> str | None:
    return request.getfixturevalue("state_table") if backend == "state_table" else None


def _one_round(redeploy_queue, worker, messages) -> dict[str, Any]:
    """One invocation on ``messages``; the failures become visible again at once (time passes)."""
    answer: dict[str, Any] = worker(redeploy_queue.sqs_event(messages), FakeLambdaContext())
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    redeploy_queue.delete(messages, failed)
    for m in messages:
        if m["MessageId"] in failed:
            redeploy_queue.sqs.change_message_visibility(
                QueueUrl=redeploy_queue.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
    return answer


def _statuses(runtime, secret_arn: str) -> dict[str, dict[str, tuple[str, str]]]:
    """rotation id -> service name -> (status, detail), as ``rotor status`` reads them."""
    since = datetime.now(UTC) - timedelta(days=1)
    return {
        r.rotation_id: {
            arn.rsplit("/", 1)[-1]: (s.status.value, s.detail) for arn, s in r.services.items()
        }
        for r in runtime.rollouts.rotations(since, secret_arn)
    }


def _versioned_label(secret_arn: str, version: str, at: datetime) -> dict[str, Any]:
    event = label_event(secret_arn, "prod/db", at=at)
    event["detail"]["versionId"] = version
    return event


# --- bug 1: the flap-guard slot ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_job_whose_secret_cannot_be_described_for_a_while_is_not_taken_for_flapping(
    clients, ecs_world, redeploy_queue, queued_runtime, inbox, request, backend
):
    """Every receive whose DescribeSecret fails must give its flap-guard slot back: with the
    limit at 2, two throttled receives used to leak both, and the third, with Secrets Manager
    healthy again, skipped the job as flapping (0 deployments, a false notice)."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime(
        state_table=_table(request, backend),
        topic_arn=inbox.topic_arn,
        max_redeploys_per_hour=MAX_RECEIVES - 1,
    )
    stack.rotation(rotation_event(db), FakeLambdaContext())
    throttle = ErrorInjector(1.0, operations={"DescribeSecret"}).attach(clients.secretsmanager)

    for _ in range(MAX_RECEIVES - 1):
        messages = redeploy_queue.receive()
        assert len(messages) == 1
        answer = _one_round(redeploy_queue, stack.worker, messages)
        assert len(answer["batchItemFailures"]) == 1
    throttle.rate = 0.0
    drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1})
    assert [e for e in inbox.drain() if "times in an hour" in e["Subject"]] == []
    assert redeploy_queue.counts(redeploy_queue.dlq_url) == 0


# --- bug 2: the cluster-cap slot ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_job_that_fails_before_its_claim_frees_its_place_under_the_cluster_cap(
    clients, ecs_world, redeploy_queue, queued_runtime, request, backend
):
    """Job A (secret db) takes the cluster's only rollout slot, then DescribeSecret fails. The
    slot is A's no longer: job B (secret api, same cluster) must not wait 30 minutes for a
    rollout that does not exist."""
    ecs_world.cluster("prod")
    db, api = ecs_world.secret("prod/db"), ecs_world.secret("prod/api")
    ecs_world.service("prod", "a", ecs_world.task_definition(secrets=[db]))
    ecs_world.service("prod", "b", ecs_world.task_definition(secrets=[api]))
    stack = queued_runtime(state_table=_table(request, backend), max_rollouts_per_cluster=1)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    [job_a] = redeploy_queue.receive()
    stack.rotation(rotation_event(api), FakeLambdaContext())
    [job_b] = redeploy_queue.receive()
    FailFor("DescribeSecret", "ThrottlingException", SecretId=db).attach(clients.secretsmanager)

    first = _one_round(redeploy_queue, stack.worker, [job_a])
    second = _one_round(redeploy_queue, stack.worker, [job_b])

    assert len(first["batchItemFailures"]) == 1  # A comes back later
    assert second["batchItemFailures"] == []
    assert ecs_world.updates_reached_moto == Counter({"b": 1})  # B did not wait


# --- bug 3: one rollout per service ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_workers_with_jobs_for_two_secrets_of_one_service_make_one_rollout(
    clients, ecs_world, redeploy_queue, queued_runtime, request, backend
):
    """Two debounced jobs for different secrets of one service run at once in two workers. Both
    see it stale and their ledger keys differ: the per-service lease makes one rollout."""
    from handlers.worker import make_worker_handler

    ecs_world.cluster("prod")
    first, second = ecs_world.secret("prod/db"), ecs_world.secret("prod/api-key")
    ecs_world.service("prod", "api", ecs_world.task_definition(secrets=[first, second]))
    stack = queued_runtime(state_table=_table(request, backend))
    jobs = [
        RedeployJob(
            secret_arn=secret,
            version=current_version(clients, secret),
            rotated_at=at,
            service_arn=f"{PROD}/api",
            cluster_arn=PROD_CLUSTER,
            references=(JobReference.of("app", secrets_reference(secret)),),
        )
        for secret, at in ((first, ROTATED_AT), (second, ROTATED_AT + timedelta(seconds=5)))
    ]
    send_jobs(redeploy_queue, *jobs)
    messages = redeploy_queue.receive()
    assert len(messages) == 2
    # Both workers have read the service (stale) before either goes on.
    both_described = threading.Barrier(2, timeout=10)
    described = Counter[str]()

    def hold(**_: Any) -> None:
        described["DescribeServices"] += 1
        if described["DescribeServices"] <= 2:
            both_described.wait()

    clients.ecs.meta.events.register("before-call.ecs.DescribeServices", hold)
    workers = [make_worker_handler(lambda: stack.runtime) for _ in messages]
    answers: list[dict[str, Any]] = []

    def run(worker: Any, message: dict[str, Any]) -> None:
        answers.append(worker(redeploy_queue.sqs_event([message]), FakeLambdaContext()))

    threads = [
        threading.Thread(target=run, args=pair) for pair in zip(workers, messages, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    clients.ecs.meta.events.unregister("before-call.ecs.DescribeServices", hold)
    failed = {f["itemIdentifier"] for a in answers for f in a["batchItemFailures"]}
    redeploy_queue.delete(messages, failed)
    for m in messages:
        if m["MessageId"] in failed:  # the loser comes back: it finds the service fresh
            redeploy_queue.sqs.change_message_visibility(
                QueueUrl=redeploy_queue.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
    drain(redeploy_queue, stack.worker)

    assert len(answers) == 2
    assert ecs_world.updates_reached_moto == Counter({"api": 1})
    assert redeploy_queue.counts() == redeploy_queue.counts(redeploy_queue.dlq_url) == 0


# --- bug 4: a lost UpdateService answer --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotors_own_deployment_whose_answer_was_lost_is_tracked_to_its_rollback(
    clients, ecs_world, redeploy_queue, queued_runtime, inbox, request, backend
):
    """UpdateService landed, its answer was lost, the retry found the deployment: it is rotor's
    own, so it is recorded, and its rollback is rotor's to report."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime(state_table=_table(request, backend), topic_arn=inbox.topic_arn)
    LoseFirstAnswer("UpdateService").attach(clients.ecs)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1})
    deployment = ecs_world.primary("prod", "prod-stale-0")["id"]

    result = stack.tracker(
        deployment_event(f"{PROD}/prod-stale-0", deployment, failed=True), FakeLambdaContext()
    )

    assert result["notes"] != [f"deployment {deployment} was not started by rotor"]
    (envelope,) = [e for e in inbox.drain() if "rolled back" in e["Subject"]]
    assert envelope["Subject"] == "rotor: redeploy of prod-stale-0 rolled back"
    [statuses] = _statuses(stack.runtime, db).values()
    assert statuses["prod-stale-0"][0] == Status.FAILED


# --- bug 5: the status of the value a job really deployed --------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_late_job_records_its_deployment_under_the_value_it_deployed(
    clients, ecs_world, redeploy_queue, queued_runtime, request, backend
):
    """v1's job runs after v2 became current: its deployment holds v2. ``rotor status`` must
    say so under v2 (deploying), not under v1, and v2's own job must not make it read
    "already fresh". After a rollback to v1, v1 reads deploying again."""
    now = datetime.now(UTC).replace(microsecond=0)
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    sm = clients.secretsmanager
    stack = queued_runtime(state_table=_table(request, backend))
    v1 = current_version(clients, db)
    stack.rotation(_versioned_label(db, v1, now - timedelta(seconds=2)), FakeLambdaContext())
    v2 = sm.put_secret_value(SecretId=db, SecretString="placeholder-2")["VersionId"]
    stack.rotation(_versioned_label(db, v2, now - timedelta(seconds=1)), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)
    deployed = ecs_world.primary("prod", "prod-stale-0")["id"]

    statuses = _statuses(stack.runtime, db)
    assert statuses[f"{db}@{v2}"]["prod-stale-0"][0] == Status.DEPLOYING
    assert statuses[f"{db}@{v1}"]["prod-stale-0"][0] != Status.DEPLOYING
    assert stack.runtime.rollouts.deployment(deployed).rotation_id == f"{db}@{v2}"

    sm.update_secret_version_stage(
        SecretId=db, VersionStage="AWSCURRENT", MoveToVersionId=v1, RemoveFromVersionId=v2
    )
    stack.rotation(_versioned_label(db, v1, now + timedelta(minutes=2)), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 2})
    statuses = _statuses(stack.runtime, db)
    assert statuses[f"{db}@{v1}"]["prod-stale-0"][0] == Status.DEPLOYING


# --- bug 6: "queued" after the job is done -----------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_queued_never_overwrites_a_job_the_worker_already_finished(
    clients, ecs_world, redeploy_queue, queued_runtime, request, backend
):
    """The worker runs the job between SendMessageBatch and the planner's "queued" write: a
    redeploy that failed for good must read "failed", not "queued" forever."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime(state_table=_table(request, backend))
    FailFor("UpdateService", "AccessDeniedException").attach(clients.ecs)
    ran: list[dict[str, Any]] = []

    def worker_runs_at_once(**_: Any) -> None:
        if not ran:
            messages = redeploy_queue.receive()
            ran.append(_one_round(redeploy_queue, stack.worker, messages))

    clients.sqs.meta.events.register("after-call.sqs.SendMessageBatch", worker_runs_at_once)
    stack.rotation(rotation_event(db), FakeLambdaContext())

    assert ran and ran[0]["batchItemFailures"] == []
    [statuses] = _statuses(stack.runtime, db).values()
    assert statuses["prod-stale-0"][0] == Status.FAILED


# --- bug 7: one rotation, one entry ------------------------------------------------------


def test_a_second_delivery_finding_every_consumer_fresh_lists_the_rotation_once(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table
):
    """``rotor status`` (the state table) lists a rotation once, by the value that became
    current, though the second delivery had nothing to deploy and carries another time."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=1)
    stack = queued_runtime(state_table=state_table)
    stack.rotation(
        _versioned_label(db, current_version(clients, db), ROTATED_AT), FakeLambdaContext()
    )
    drain(redeploy_queue, stack.worker)
    # RotationSucceeded of the same rotation, a little later: every consumer is fresh now.
    stack.rotation(rotation_event(db, at=ROTATED_AT + timedelta(seconds=3)), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)

    statuses = _statuses(stack.runtime, db)
    assert list(statuses) == [f"{db}@{current_version(clients, db)}"]
    assert statuses[f"{db}@{current_version(clients, db)}"]["prod-stale-0"][0] == Status.DEPLOYING


# --- bug 8: statuses only move forward ---------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_second_delivery_of_a_rotation_does_not_move_deploying_back_to_skipped(
    clients, ecs_world, redeploy_queue, queued_runtime, request, backend
):
    """The label event and RotationSucceeded of one version both queue a job before either
    runs; the first deploys, the second finds the service fresh. The status stays deploying,
    and then the tracker makes it fresh."""
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime(state_table=_table(request, backend))
    version = current_version(clients, db)
    stack.rotation(_versioned_label(db, version, ROTATED_AT), FakeLambdaContext())
    stack.rotation(rotation_event(db, at=ROTATED_AT + timedelta(seconds=3)), FakeLambdaContext())
    assert redeploy_queue.counts() == 2
    drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1})
    [statuses] = _statuses(stack.runtime, db).values()
    assert statuses["prod-stale-0"][0] == Status.DEPLOYING

    deployment = ecs_world.primary("prod", "prod-stale-0")["id"]
    stack.tracker(deployment_event(f"{PROD}/prod-stale-0", deployment), FakeLambdaContext())
    # A late retry of the first delivery changes nothing any more.
    stack.rotation(_versioned_label(db, version, ROTATED_AT), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)
    statuses = _statuses(stack.runtime, db)[f"{db}@{version}"]
    assert statuses["prod-stale-0"][0] == Status.FRESH


# --- one job path ------------------------------------------------------------------------


def test_the_inline_path_runs_the_workers_job_on_the_planners_verdict(
    clients, retry, ecs_world, monkeypatch
):
    """Without a queue each job runs through the worker's own ``run_redeploy_job`` on the
    snapshot the planner read, and the freshness rule is decided once (by the planner), not
    again."""
    from orchestration import fanout
    from orchestration.dispatch import process
    from orchestration.events.classification import classify
    from tests.conftest import make_runtime

    db = stale_world(ecs_world, {"prod": 2}, fresh=1)
    runtime = make_runtime(clients, retry)
    jobs_run: list[str] = []
    real_run_job = fanout.consume.run_redeploy_job

    def counting_run_job(job, runtime, planned=None):
        jobs_run.append(job.service_arn.rsplit("/", 1)[-1])
        return real_run_job(job, runtime, planned)

    def decided_again(*_: Any, **__: Any) -> Any:
        raise AssertionError("the worker decided freshness a second time")

    monkeypatch.setattr(fanout.consume, "run_redeploy_job", counting_run_job)
    monkeypatch.setattr(fanout.worker, "decide_with_policies", decided_again)

    outcome = process(classify(rotation_event(db)), runtime)

    assert sorted(jobs_run) == ["prod-stale-0", "prod-stale-1"]
    assert len(outcome.redeployed) == 2 and outcome.failed == []
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1, "prod-stale-1": 1})
