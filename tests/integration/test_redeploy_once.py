"""Exactly once, even when the freshness rule alone would not see it.

The native label event and RotationSucceeded for one rotation carry different times, and
they are often handled at the same moment by two Lambda containers. The redeploy ledger (in
memory, or in DynamoDB when ROTOR_STATE_TABLE is set) makes each service's redeploy a claim.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.dispatch import process
from orchestration.events.classification import classify
from orchestration.settings import Settings
from orchestration.state.redeploy_ledger import (
    DynamoDbRedeployLedger,
    MemoryRedeployLedger,
    NewValue,
)
from tests.conftest import ACCOUNT, REGION, make_runtime
from tests.integration.conftest import (
    NOW,
    OTHER_ACCOUNT,
    label_event,
    rotation_event,
    update_calls_per_service,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def two_consumers(ecs_world):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    for name in ("api", "worker"):
        ecs_world.service("prod", name, ecs_world.task_definition(secrets=[db]))
    return db


def current_version(clients, secret_arn: str) -> str:
    stages = clients.secretsmanager.describe_secret(SecretId=secret_arn)["VersionIdsToStages"]
    return next(v for v, labels in stages.items() if "AWSCURRENT" in labels)


def test_label_event_then_a_later_rotation_succeeded_redeploy_once(
    clients, retry, ecs_world, ecs_calls, two_consumers
):
    db = two_consumers
    runtime = make_runtime(clients, retry)
    label = label_event(db, "prod/db", at=NOW - timedelta(seconds=2))
    label["detail"]["versionId"] = current_version(clients, db)
    # RotationSucceeded logged after rotor's redeploy for the label event already happened:
    # by the freshness rule alone, every deployment would look older than it.
    succeeded = rotation_event(db, at=NOW + timedelta(minutes=5))

    first = process(classify(label), runtime)
    second = process(classify(succeeded), runtime)

    assert sorted(first.redeployed) == sorted(
        f"arn:aws:ecs:us-east-1:123456789012:service/prod/{n}" for n in ("api", "worker")
    )
    assert second.redeployed == []
    assert {s.reason.split(" (")[0] for s in second.skipped} == {
        "already redeployed by rotor for this value"
    }
    assert update_calls_per_service(ecs_calls.of("UpdateService")) == Counter(
        {"api": 1, "worker": 1}
    )
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "worker": 1})


def test_secrets_rotated_together_coalesce_into_one_deployment(
    clients, retry, ecs_world, two_consumers
):
    db = two_consumers
    runtime = make_runtime(clients, retry)
    event = rotation_event(db, at=NOW - timedelta(seconds=5))
    event["detail"]["additionalEventData"]["SecretId"] = db

    process(classify(event), runtime)
    # A different secret rotated at the same moment, shared by both services: coalesced.
    other = ecs_world.secret("prod/other")
    again = rotation_event(other, at=NOW - timedelta(seconds=5))
    outcome = process(classify(again), runtime)

    assert outcome.redeployed == []
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "worker": 1})


def _atomic_conditional_writes() -> None:
    """DynamoDB evaluates a condition and writes atomically; moto, called from two threads,
    does not. Give moto's conditional writes (PutItem, UpdateItem, DeleteItem) that property,
    so the test measures rotor, not moto."""
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[ACCOUNT][REGION]
    lock = threading.Lock()

    def atomic(write: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return write(*args, **kwargs)

        return call

    # Not monkeypatch: moto resets its backends when the mock stops, which drops this too.
    for name in ("put_item", "update_item", "delete_item"):
        setattr(backend, name, atomic(getattr(backend, name)))


def _in_lockstep(clients, parties: int) -> None:
    """Hold every worker at its first DescribeServices until all have reached it: all plans
    are made from the same stale state before any redeploy starts."""
    barrier = threading.Barrier(parties, timeout=10)
    seen: set[int] = set()

    def wait(**_: Any) -> None:
        me = threading.get_ident()
        if me not in seen:
            seen.add(me)
            barrier.wait()

    clients.ecs.meta.events.register("before-call.ecs.DescribeServices", wait)


def _concurrently(work: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work[index]()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


@pytest.mark.parametrize("ledger_kind", ["memory", "dynamodb"])
def test_two_deliveries_handled_at_once_redeploy_once(
    clients, retry, ecs_world, two_consumers, state_table, ledger_kind
):
    db = two_consumers
    if ledger_kind == "memory":  # two threads of one process
        shared = MemoryRedeployLedger()
        runtimes = [make_runtime(clients, retry, ledger=shared) for _ in range(2)]
    else:  # two Lambda containers sharing the state table
        _atomic_conditional_writes()
        settings = Settings(state_table=state_table)
        runtimes = [make_runtime(clients, retry, settings) for _ in range(2)]
        assert all(isinstance(r.ledger, DynamoDbRedeployLedger) for r in runtimes)
    # The discovery pool makes one DescribeServices per batch; give each runtime one worker
    # so the barrier counts runtimes, not threads.
    runtimes = [
        r.__class__(
            **{
                **r.__dict__,
                "settings": Settings(state_table=r.settings.state_table, max_workers=1),
            }
        )
        for r in runtimes
    ]
    _in_lockstep(clients, parties=2)
    label = label_event(db, "prod/db", at=NOW - timedelta(seconds=2))
    label["detail"]["versionId"] = current_version(clients, db)
    succeeded = rotation_event(db, at=NOW - timedelta(seconds=1))

    outcomes = _concurrently(
        [
            lambda: process(classify(label), runtimes[0]),
            lambda: process(classify(succeeded), runtimes[1]),
        ]
    )

    redeployed = [arn for outcome in outcomes for arn in outcome.redeployed]
    assert sorted(a.rsplit("/", 1)[-1] for a in redeployed) == ["api", "worker"]
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "worker": 1})
    # The other delivery either saw the claim (or the service's lease) confirmed (skipped), or
    # gave up waiting on it and asks Lambda to retry the event (retryable failure): never a
    # second deployment.
    skipped = [s.reason for outcome in outcomes for s in outcome.skipped]
    waited_out = [
        f
        for outcome in outcomes
        for f in outcome.failed
        if "ClaimHeldElsewhere" in f.error or "LeaseHeldElsewhere" in f.error
    ]
    assert len(skipped) + len(waited_out) == 2
    assert all(f.retryable is True for f in waited_out)


def _label(clients, secret_arn: str, version: str, at) -> dict[str, Any]:
    event = label_event(secret_arn, "prod/db", at=at)
    event["detail"]["versionId"] = version
    return event


def test_a_rollback_to_an_earlier_value_redeploys_again(clients, retry, ecs_world, two_consumers):
    db = two_consumers
    sm = clients.secretsmanager
    runtime = make_runtime(clients, retry)
    v1 = current_version(clients, db)

    process(classify(_label(clients, db, v1, NOW - timedelta(seconds=2))), runtime)
    v2 = sm.put_secret_value(SecretId=db, SecretString="placeholder-2")["VersionId"]
    process(classify(_label(clients, db, v2, NOW + timedelta(minutes=1))), runtime)
    # v2 was bad: AWSCURRENT moved back to v1. Tasks hold v2 and must be replaced again.
    sm.update_secret_version_stage(
        SecretId=db, VersionStage="AWSCURRENT", MoveToVersionId=v1, RemoveFromVersionId=v2
    )
    rollback = process(classify(_label(clients, db, v1, NOW + timedelta(minutes=2))), runtime)

    assert len(rollback.redeployed) == 2
    assert ecs_world.updates_reached_moto == Counter({"api": 3, "worker": 3})


def test_a_failed_redeploy_gives_its_claim_back_so_the_retried_event_redeploys(
    clients, sleeps, ecs_world, two_consumers
):
    from orchestration.aws.retry import RetryPolicy
    from tests.aws_fakes import ErrorInjector

    db = two_consumers
    runtime = make_runtime(clients, RetryPolicy(max_attempts=2, sleep=sleeps))
    event = _label(clients, db, current_version(clients, db), NOW - timedelta(seconds=2))
    throttled = ErrorInjector(1.0, operations={"UpdateService"}).attach(clients.ecs)

    first = process(classify(event), runtime)
    clients.ecs.meta.events.unregister("before-call.ecs", throttled._maybe_fail)
    retried = process(classify(event), runtime)  # Lambda's retry of the same event

    assert [f.retryable for f in first.failed] == [True, True]
    assert len(retried.redeployed) == 2
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "worker": 1})


def test_an_update_that_landed_but_whose_answer_was_lost_counts_and_is_not_repeated(
    clients, sleeps, ecs_world, two_consumers
):
    from botocore.exceptions import ReadTimeoutError

    from orchestration.aws.retry import RetryPolicy

    db = two_consumers
    # One attempt only: the timeout is the last word, and only ECS knows it landed.
    runtime = make_runtime(clients, RetryPolicy(max_attempts=1, sleep=sleeps))

    def lose_the_answer(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com/")

    clients.ecs.meta.events.register("after-call.ecs.UpdateService", lose_the_answer)
    label = _label(clients, db, current_version(clients, db), NOW - timedelta(seconds=2))

    first = process(classify(label), runtime)
    later = process(classify(rotation_event(db, at=NOW + timedelta(minutes=5))), runtime)

    assert first.failed == []
    # rotor's own deployment (its answer lost): counted as made, so the tracker follows it.
    assert first.skipped == []
    assert len(first.redeployed) == 2
    assert later.redeployed == [] and later.failed == []
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "worker": 1})


@pytest.mark.parametrize("other_finishes", [True, False], ids=["confirmed", "still-held"])
def test_a_claim_held_elsewhere_is_waited_for(clients, ecs_world, two_consumers, other_finishes):
    from orchestration.aws.retry import RetryPolicy

    db = two_consumers
    ledger = MemoryRedeployLedger()
    version = current_version(clients, db)
    change = NewValue(db, version)
    services = {
        name: f"arn:aws:ecs:us-east-1:123456789012:service/prod/{name}"
        for name in ("api", "worker")
    }
    # Another invocation claimed both services and is deploying right now.
    held = {
        name: ledger.claim(arn, change, None, NOW - timedelta(seconds=1))
        for name, arn in services.items()
    }
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if other_finishes and len(waits) == 3:  # ... and finishes while rotor waits
            for claim in held.values():
                ledger.confirm(claim, NOW + timedelta(seconds=1))

    runtime = make_runtime(clients, RetryPolicy(max_attempts=5, sleep=sleep), ledger=ledger)
    event = _label(clients, db, version, NOW - timedelta(seconds=2))

    outcome = process(classify(event), runtime)

    assert ecs_world.updates_reached_moto == Counter()  # never a second deployment
    if other_finishes:
        assert outcome.failed == []
        # Both services are skipped, each for the claim the other invocation confirmed.
        assert sorted(s.service for s in outcome.skipped) == sorted(services.values())
        assert all(s.reason.startswith("already redeployed by rotor") for s in outcome.skipped)
    else:
        assert sorted(f.retryable for f in outcome.failed) == [True, True]
        assert all("ClaimHeldElsewhere" in f.error for f in outcome.failed)
        assert sorted(f.subject for f in outcome.failed) == sorted(services.values())
    assert waits  # it waited rather than giving up at once


# --------------------------------------------------------- once per rotation, in messy accounts


def started() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_a_rollback_after_two_quick_values_redeploys_though_v1s_event_came_late(
    clients, retry, ecs_world, two_consumers
):
    now = started()  # not collection time: this test may start late
    db = two_consumers
    sm = clients.secretsmanager
    runtime = make_runtime(clients, retry)
    v1 = current_version(clients, db)
    v2 = sm.put_secret_value(SecretId=db, SecretString="placeholder-2")["VersionId"]
    # v1 became current, then v2, and rotor handles v1's event only now: its deployment holds v2.
    late = process(classify(_label(clients, db, v1, now - timedelta(seconds=2))), runtime)
    on_time = process(classify(_label(clients, db, v2, now - timedelta(seconds=1))), runtime)
    # v2 was bad: AWSCURRENT moved back to v1, which no task holds.
    sm.update_secret_version_stage(
        SecretId=db, VersionStage="AWSCURRENT", MoveToVersionId=v1, RemoveFromVersionId=v2
    )
    rollback = process(classify(_label(clients, db, v1, now + timedelta(minutes=2))), runtime)

    assert len(late.redeployed) == 2 and on_time.redeployed == []
    assert len(rollback.redeployed) == 2, rollback.skipped
    assert ecs_world.updates_reached_moto == Counter({"api": 2, "worker": 2})


@pytest.fixture
def cross_account_consumers(ecs_world):
    """Two services using another account's secret, which rotor cannot describe."""
    shared = f"arn:aws:secretsmanager:{REGION}:{OTHER_ACCOUNT}:secret:shared/db-Sh4r3d"
    ecs_world.cluster("prod")
    for name in ("api", "worker"):
        ecs_world.service("prod", name, ecs_world.task_definition(secrets=[shared]))
    return shared


@pytest.mark.parametrize("ledger_kind", ["memory", "dynamodb"])
def test_label_event_and_rotation_succeeded_of_an_undescribable_secret_redeploy_once(
    clients, retry, ecs_world, cross_account_consumers, state_table, ledger_kind
):
    now = started()  # not collection time: this test may start late
    shared = cross_account_consumers
    settings = Settings(state_table=state_table) if ledger_kind == "dynamodb" else None
    runtime = make_runtime(clients, retry, settings)
    label = label_event(shared, "shared/db", at=now - timedelta(seconds=2))
    label["account"] = OTHER_ACCOUNT
    label["detail"]["versionId"] = "88ce1149-cf2c-4804-b1d9-2d213dd5ba3b"
    # RotationSucceeded (no version) logged after rotor already redeployed for the label event.
    succeeded = rotation_event(shared, at=now + timedelta(minutes=1), account=OTHER_ACCOUNT)

    first = process(classify(label), runtime)
    second = process(classify(succeeded), runtime)

    assert len(first.redeployed) == 2
    assert second.redeployed == [] and second.failed == []
    assert {s.reason.split(" (")[0] for s in second.skipped} == {
        "already redeployed by rotor for this value"
    }
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "worker": 1})


def test_with_dynamodb_throttled_the_ledger_retries_inside_one_budget_per_service(
    clients, sleeps, ecs_world, two_consumers, state_table
):
    from orchestration.aws.retry import RetryPolicy
    from tests.aws_fakes import ApiCalls, ErrorInjector

    db = two_consumers
    retry = RetryPolicy(max_attempts=10, sleep=sleeps)
    runtime = make_runtime(clients, retry, Settings(state_table=state_table))
    table_calls = ApiCalls().attach(clients.dynamodb)
    ErrorInjector(1.0, code="ProvisionedThroughputExceededException").attach(clients.dynamodb)

    outcome = process(classify(_label(clients, db, current_version(clients, db), NOW)), runtime)

    assert sorted(f.retryable for f in outcome.failed) == [True, True]
    assert ecs_world.updates_reached_moto == Counter()
    # One budget per service: ten attempts each, not ten ledger attempts per redeploy attempt.
    assert table_calls.counts["PutItem"] == 2 * 10
    assert len(sleeps) == 2 * 9
    assert sum(sleeps) <= 2 * 9 * retry.max_wait_seconds


def test_a_confirm_lost_to_throttling_does_not_hold_up_the_next_delivery(
    clients, sleeps, ecs_world, two_consumers, state_table
):
    now = started()  # not collection time: this test may start late
    from orchestration.aws.retry import RetryPolicy
    from tests.aws_fakes import ErrorInjector

    db = two_consumers
    runtime = make_runtime(
        clients, RetryPolicy(max_attempts=3, sleep=sleeps), Settings(state_table=state_table)
    )
    throttled = ErrorInjector(
        1.0, code="ProvisionedThroughputExceededException", operations={"UpdateItem"}
    ).attach(clients.dynamodb)
    label = _label(clients, db, current_version(clients, db), now - timedelta(seconds=2))

    first = process(classify(label), runtime)
    throttled.rate = 0.0
    # RotationSucceeded of the same rotation, logged after rotor's deployments: the claims are
    # still pending (never confirmed), but the services were deployed since they were made.
    later = process(classify(rotation_event(db, at=now + timedelta(minutes=5))), runtime)

    assert len(first.redeployed) == 2
    assert throttled.injected["UpdateItem"] > 0
    assert later.redeployed == [] and later.failed == []
    assert sorted(s.service.rsplit("/", 1)[-1] for s in later.skipped) == ["api", "worker"]
    assert all(s.reason.startswith("already redeployed") for s in later.skipped)
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "worker": 1})
