"""Pacing policies: debounce, the flap guard, the per-cluster cap, notify-only services.

Each is read back from what AWS (moto) holds: deployments, the queue's delayed messages, the
notifications a subscriber of the topic receives.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from orchestration.dispatch import process
from orchestration.events.classification import classify
from orchestration.fanout.jobs import JobReference, RedeployJob
from orchestration.secrets.references import ReferenceField, SecretReference, parse_reference
from orchestration.settings import Settings
from tests.aws_fakes import ApiCalls
from tests.conftest import ACCOUNT, REGION, make_runtime
from tests.integration.conftest import ROTATED_AT, label_event, rotation_event
from tests.integration.workers import FakeLambdaContext, drain, stale_world

pytestmark = pytest.mark.integration

PROD = "arn:aws:ecs:us-east-1:123456789012:service/prod"


def secrets_reference(secret_arn: str) -> SecretReference:
    return parse_reference(
        secret_arn, ReferenceField.SECRETS, partition="aws", region=REGION, account=ACCOUNT
    )


def versioned_label(secret_arn: str, version: str, at):
    event = label_event(secret_arn, "prod/db", at=at)
    event["detail"]["versionId"] = version
    return event


# --- debounce ----------------------------------------------------------------------------


def test_debounce_delays_every_job_on_the_queue(
    clients, retry, ecs_world, redeploy_queue, queued_runtime
):
    db = stale_world(ecs_world, {"prod": 3})
    sqs_calls = ApiCalls().attach(clients.sqs)
    stack = queued_runtime(debounce_seconds=300)

    result = stack.rotation(rotation_event(db), FakeLambdaContext())

    assert len(result["queued"]) == 3
    (batch,) = sqs_calls.of("SendMessageBatch")
    assert {entry["DelaySeconds"] for entry in batch["Entries"]} == {300}
    delayed = redeploy_queue.sqs.get_queue_attributes(
        QueueUrl=redeploy_queue.url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
    assert delayed == "3"
    assert redeploy_queue.receive() == []  # nothing to do before the delay ends


def test_secrets_rotated_together_give_one_rollout_when_the_delayed_jobs_run(
    clients, retry, ecs_world, redeploy_queue, queued_runtime
):
    """Two secrets of one service rotated a few seconds apart: two jobs, one deployment."""
    ecs_world.cluster("prod")
    first, second = ecs_world.secret("prod/db"), ecs_world.secret("prod/api-key")
    ecs_world.service("prod", "api", ecs_world.task_definition(secrets=[first, second]))
    stack = queued_runtime(debounce_seconds=0)
    jobs = [
        RedeployJob(
            secret_arn=secret,
            rotated_at=at,
            service_arn=f"{PROD}/api",
            cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/prod",
            references=(JobReference.of("app", secrets_reference(secret)),),
        )
        for secret, at in ((first, ROTATED_AT), (second, ROTATED_AT + timedelta(seconds=5)))
    ]
    # What the queue delivers once the debounce delay is over: both jobs in one batch.
    redeploy_queue.sqs.send_message_batch(
        QueueUrl=redeploy_queue.url,
        Entries=[{"Id": str(i), "MessageBody": j.model_dump_json()} for i, j in enumerate(jobs)],
    )

    drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter({"api": 1})


# --- flap guard --------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory", "state_table"])
def test_flap_guard_skips_past_the_limit_counts_and_notifies(
    clients, retry, ecs_world, inbox, request, store
):
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    table = request.getfixturevalue("state_table") if store == "state_table" else None
    runtime = make_runtime(
        clients,
        retry,
        Settings(topic_arn=inbox.topic_arn, max_redeploys_per_hour=2, state_table=table),
    )

    now = datetime.now(UTC).replace(microsecond=0)  # moto stamps deployments with the clock
    outcomes = []
    for i in range(1, 4):
        # A secret rewritten in a loop: each value newer than the last deployment.
        version = clients.secretsmanager.put_secret_value(SecretId=db, SecretString=f"v{i}")
        event = versioned_label(db, version["VersionId"], now + timedelta(minutes=i))
        outcomes.append(process(classify(event), runtime))

    assert [len(o.redeployed) for o in outcomes] == [1, 1, 0]
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 2})
    (skip,) = outcomes[2].skipped
    assert skip.reason.startswith("flapping: 2 forced deployments in the last hour")
    assert outcomes[2].metrics["RedeployFlapping"] == 1
    (envelope,) = inbox.drain()
    assert envelope["Subject"].startswith("rotor: prod-stale-0 redeployed 2 times in an hour")
    assert f"{PROD}/prod-stale-0" in envelope["Message"]


def test_a_flapping_notice_is_sent_once_per_value(clients, retry, ecs_world, inbox, state_table):
    db = stale_world(ecs_world, {"prod": 1}, fresh=0)
    runtime = make_runtime(
        clients,
        retry,
        Settings(topic_arn=inbox.topic_arn, max_redeploys_per_hour=1, state_table=state_table),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    first = process(classify(versioned_label(db, current_version(clients, db), now)), runtime)
    v2 = clients.secretsmanager.put_secret_value(SecretId=db, SecretString="v2")["VersionId"]
    later = now + timedelta(minutes=1)
    # The label event and RotationSucceeded of v2, and a retry of the first.
    repeats = [
        process(classify(event), runtime)
        for event in (
            versioned_label(db, v2, later),
            rotation_event(db, at=later + timedelta(seconds=3)),
            versioned_label(db, v2, later),
        )
    ]

    assert len(first.redeployed) == 1 and all(r.redeployed == [] for r in repeats)
    assert [r.skipped[0].reason.split(":")[0] for r in repeats] == ["flapping"] * 3
    (envelope,) = inbox.drain()
    assert envelope["Subject"].startswith("rotor: prod-stale-0 redeployed 1 times in an hour")
    assert [r.metrics.get("NotificationsSuppressed", 0) for r in repeats] == [0, 1, 1]


# --- per-cluster cap ---------------------------------------------------------------------


def test_the_cluster_cap_defers_services_past_it_and_leaves_other_clusters_alone(
    clients, retry, ecs_world
):
    db = stale_world(ecs_world, {"prod": 5, "batch": 1}, fresh=0)
    runtime = make_runtime(clients, retry, Settings(max_rollouts_per_cluster=2))

    outcome = process(classify(rotation_event(db)), runtime)

    deployed = Counter(ecs_world.updates_reached_moto)
    assert sum(n for s, n in deployed.items() if s.startswith("prod-")) == 2
    assert deployed["batch-stale-0"] == 1
    assert outcome.failed == [] and outcome.ok  # waiting is not failing
    assert len(outcome.deferred) == 3
    assert all("rollouts under way" in d.reason for d in outcome.deferred)
    assert len(outcome.retryable_failures) == 3  # a Lambda retries the event for them
    assert outcome.metrics["RedeploysDeferred"] == 3
    assert outcome.metrics.get("RedeployFailures", 0) == 0


def current_version(clients, secret_arn: str) -> str:
    stages = clients.secretsmanager.describe_secret(SecretId=secret_arn)["VersionIdsToStages"]
    return next(v for v, labels in stages.items() if "AWSCURRENT" in labels)


def send_jobs(redeploy_queue, *jobs: RedeployJob) -> None:
    redeploy_queue.sqs.send_message_batch(
        QueueUrl=redeploy_queue.url,
        Entries=[{"Id": str(i), "MessageBody": j.model_dump_json()} for i, j in enumerate(jobs)],
    )


def stale_job(clients, secret_arn: str, service: str, at: datetime) -> RedeployJob:
    return RedeployJob(
        secret_arn=secret_arn,
        version=current_version(clients, secret_arn),
        rotated_at=at,
        service_arn=f"{PROD}/{service}",
        cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/prod",
        references=(JobReference.of("app", secrets_reference(secret_arn)),),
    )


def test_a_duplicate_job_does_not_free_the_slot_of_a_deployment_under_way(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table
):
    """The label event and RotationSucceeded give two jobs for one service and value. The
    second, refused by the ledger, must not free the slot the first one's deployment holds."""
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(state_table=state_table, max_rollouts_per_cluster=1)
    send_jobs(redeploy_queue, stale_job(clients, db, "prod-stale-0", ROTATED_AT))
    drain(redeploy_queue, stack.worker)
    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1})

    # The second delivery's time is after the first job's deployment: stale by the time rule,
    # refused by the ledger (deployed for this value already).
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    send_jobs(redeploy_queue, stale_job(clients, db, "prod-stale-0", later))
    drain(redeploy_queue, stack.worker)
    send_jobs(redeploy_queue, stale_job(clients, db, "prod-stale-1", ROTATED_AT))
    drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter({"prod-stale-0": 1})
    assert redeploy_queue.counts() == 1  # stale-1 waits: its job sent again, delayed


# --- notify-only -------------------------------------------------------------------------


@pytest.mark.parametrize("opt_in", [False, True])
def test_a_notify_only_service_is_reported_not_redeployed(clients, retry, ecs_world, inbox, opt_in):
    ecs_world.cluster("prod")
    db = ecs_world.secret("prod/db")
    task_definition = ecs_world.task_definition(secrets=[db])
    ecs_world.service("prod", "ledger", task_definition, tags={"rotor:redeploy": "notify"})
    ecs_world.service("prod", "api", task_definition, tags={"rotor:redeploy": "true"})
    runtime = make_runtime(clients, retry, Settings(topic_arn=inbox.topic_arn, opt_in=opt_in))

    outcome = process(classify(rotation_event(db)), runtime)

    assert ecs_world.updates_reached_moto == Counter({"api": 1})
    (skip,) = outcome.skipped
    assert skip.service == f"{PROD}/ledger"
    assert skip.reason.startswith("notify-only")
    assert outcome.metrics["StaleServicesNotified"] == 1
    (envelope,) = inbox.drain()
    assert envelope["Subject"] == "rotor: ledger holds the old value of prod/db"
    assert f"{PROD}/ledger" in envelope["Message"]
    assert json.loads(json.dumps(envelope))["MessageAttributes"]["kind"]["Value"] == (
        "stale_service"
    )


def test_a_notify_only_service_is_reported_once_per_value_through_the_queue(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table, inbox
):
    """Both deliveries of a rotation give a job; a job may run again (a retry): one notice."""
    ecs_world.cluster("prod")
    db = ecs_world.secret("prod/db")
    task_definition = ecs_world.task_definition(secrets=[db])
    ecs_world.service("prod", "ledger", task_definition, tags={"rotor:redeploy": "notify"})
    stack = queued_runtime(state_table=state_table, topic_arn=inbox.topic_arn)
    label = versioned_label(db, current_version(clients, db), ROTATED_AT)
    succeeded = rotation_event(db, at=ROTATED_AT + timedelta(seconds=3))

    stack.rotation(label, FakeLambdaContext())
    stack.rotation(succeeded, FakeLambdaContext())
    assert redeploy_queue.counts() == 2  # one job per delivery
    drain(redeploy_queue, stack.worker)
    stack.rotation(succeeded, FakeLambdaContext())  # a retry of the event: its job again
    drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter()
    (envelope,) = inbox.drain()
    assert envelope["Subject"] == "rotor: ledger holds the old value of prod/db"


def test_a_state_table_that_cannot_answer_holds_up_no_redeploy(
    clients, sleeps, ecs_world, state_table
):
    """Statuses and pacing counters are best effort: with every rollout-store call throttled,
    the policies let the job through and the ledger (which retries) keeps it once."""
    from orchestration.aws.retry import RetryPolicy
    from tests.aws_fakes import ErrorInjector

    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    runtime = make_runtime(
        clients,
        RetryPolicy(sleep=sleeps),
        Settings(state_table=state_table, max_redeploys_per_hour=1, max_rollouts_per_cluster=1),
    )
    # The ledger's claims and confirms go through; the rollout store's calls do not.
    ErrorInjector(
        1.0, code="ProvisionedThroughputExceededException", operations={"GetItem", "UpdateItem"}
    ).attach(clients.dynamodb)

    outcome = process(classify(rotation_event(db)), runtime)

    assert sorted(outcome.redeployed) == [f"{PROD}/prod-stale-0", f"{PROD}/prod-stale-1"]
    assert outcome.failed == []
    assert ecs_world.updates_reached_moto == Counter(["prod-stale-0", "prod-stale-1"])
