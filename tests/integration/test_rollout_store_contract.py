"""The rollout store's contract, run against both backends: memory, and DynamoDB (moto).

The worker, the planner, the tracker and ``rotor status`` rely on exactly these rules:
statuses only move forward, rotations are listed once with every consumer, deployments are
found by id and as a service's latest, and the pacing policies (flap guard, cluster cap)
answer alike in both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestration.state.rollouts import (
    ROLLOUT_LEASE,
    DeploymentRecord,
    RolloutSlot,
    RolloutStore,
    ServiceStatus,
    Status,
    may_replace,
)
from tests.integration.conftest import Backend

pytestmark = pytest.mark.integration

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"
ROTATION = f"{SECRET}@v1"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
API = "arn:aws:ecs:us-east-1:123456789012:service/prod/api"
WORKER = "arn:aws:ecs:us-east-1:123456789012:service/prod/worker"
HOUR = timedelta(hours=1)


@pytest.fixture
def store(backend: Backend) -> RolloutStore:
    """The rollout store of each backend (``backend`` runs memory, then DynamoDB in moto)."""
    return backend.rollouts()


def at(status: Status, deployment: str | None = None, detail: str = "") -> ServiceStatus:
    return ServiceStatus(status, detail or status.value, datetime.now(UTC), CLUSTER, deployment)


def statuses(store: RolloutStore) -> dict[str, tuple[Status, str | None]]:
    [rotation] = store.rotations(datetime.now(UTC) - HOUR)
    return {arn: (s.status, s.deployment_id) for arn, s in rotation.services.items()}


def test_a_rotation_is_listed_once_with_every_status_and_its_first_facts(store):
    now = datetime.now(UTC)
    store.record_rotation(ROTATION, SECRET, "v1", now - timedelta(minutes=1))
    store.record_rotation(ROTATION, SECRET, "v1", now)  # a second delivery, another time
    store.set_status(ROTATION, API, at(Status.QUEUED))
    store.set_status(ROTATION, WORKER, at(Status.SKIPPED))

    [rotation] = store.rotations(now - HOUR)
    assert rotation.rotation_id == ROTATION
    assert rotation.version == "v1"
    assert abs(rotation.rotated_at - (now - timedelta(minutes=1))) < timedelta(seconds=1)
    assert statuses(store) == {API: (Status.QUEUED, None), WORKER: (Status.SKIPPED, None)}
    assert store.rotations(now - HOUR, "prod/other") == []
    assert [r.rotation_id for r in store.rotations(now - HOUR, "prod/db")] == [ROTATION]


@pytest.mark.parametrize(
    ("first", "then", "kept"),
    [
        ((Status.DEPLOYING, "d1"), (Status.QUEUED, None), (Status.DEPLOYING, "d1")),
        ((Status.DEPLOYING, "d1"), (Status.SKIPPED, None), (Status.DEPLOYING, "d1")),
        ((Status.FAILED, None), (Status.QUEUED, None), (Status.FAILED, None)),
        ((Status.FRESH, "d1"), (Status.SKIPPED, None), (Status.FRESH, "d1")),
        ((Status.FRESH, "d1"), (Status.FAILED, "d1"), (Status.FRESH, "d1")),
        ((Status.DEPLOYING, "d2"), (Status.FRESH, "d1"), (Status.DEPLOYING, "d2")),
        ((Status.QUEUED, None), (Status.DEPLOYING, "d1"), (Status.DEPLOYING, "d1")),
        ((Status.DEPLOYING, "d1"), (Status.FRESH, "d1"), (Status.FRESH, "d1")),
        ((Status.DEPLOYING, "d1"), (Status.FAILED, "d1"), (Status.FAILED, "d1")),
        ((Status.FRESH, "d1"), (Status.DEPLOYING, "d2"), (Status.DEPLOYING, "d2")),
        ((Status.SKIPPED, None), (Status.DEPLOYING, "d1"), (Status.DEPLOYING, "d1")),
    ],
)
def test_a_status_only_moves_forward(store, first, then, kept):
    store.record_rotation(ROTATION, SECRET, "v1", datetime.now(UTC))
    store.set_status(ROTATION, API, at(*first))

    store.set_status(ROTATION, API, at(*then))

    assert statuses(store) == {API: kept}
    assert may_replace(at(*first), at(*then)) is (kept == then)


def test_only_if_new_keeps_a_status_already_set(store):
    store.record_rotation(ROTATION, SECRET, "v1", datetime.now(UTC))
    store.set_status(ROTATION, API, at(Status.PLANNED), only_if_new=True)
    store.set_status(ROTATION, API, at(Status.SKIPPED), only_if_new=True)

    assert statuses(store) == {API: (Status.PLANNED, None)}


def test_a_deployment_is_found_by_id_and_as_the_services_latest(store):
    now = datetime.now(UTC).replace(microsecond=0)  # both keep whole seconds
    for deployment in ("d1", "d2"):
        store.record_deployment(DeploymentRecord(deployment, ROTATION, API, CLUSTER, now, SECRET))

    assert store.deployment("d1") == DeploymentRecord("d1", ROTATION, API, CLUSTER, now, SECRET)
    assert store.deployment("d3") is None
    latest = store.latest_deployment(API)
    assert latest is not None and latest.deployment_id == "d2"
    assert store.latest_deployment(WORKER) is None


def test_the_flap_guard_counts_within_its_window_and_gives_back(store):
    now = datetime.now(UTC)

    answers = [store.take_redeploy_slot(API, now + timedelta(seconds=i), 2, HOUR) for i in range(3)]
    store.give_back_redeploy_slot(API, now + timedelta(seconds=1))
    again = store.take_redeploy_slot(API, now + timedelta(seconds=3), 2, HOUR)
    later = store.take_redeploy_slot(API, now + HOUR + timedelta(seconds=2), 2, HOUR)

    assert answers == [True, True, False]
    assert again is True
    assert later is True  # the first two have left the window


def test_the_cluster_cap_holds_frees_and_reports_overdue_slots(store):
    now = datetime.now(UTC)

    first = store.take_rollout_slot(CLUSTER, API, now, 1)
    duplicate = store.take_rollout_slot(CLUSTER, API, now, 1)
    full = store.take_rollout_slot(CLUSTER, WORKER, now, 1)
    # Past the lease the slot still counts: overdue until someone asks ECS.
    late = now + ROLLOUT_LEASE + timedelta(seconds=1)
    still_full = store.take_rollout_slot(CLUSTER, WORKER, late, 1)
    overdue = store.overdue_rollouts(CLUSTER, late)
    store.renew_rollout_slot(CLUSTER, API, late)
    renewed = store.overdue_rollouts(CLUSTER, late)
    store.free_rollout_slot(CLUSTER, API)
    freed = store.take_rollout_slot(CLUSTER, WORKER, late, 1)

    assert (first, duplicate, full, still_full) == (
        RolloutSlot.TAKEN,
        RolloutSlot.HELD,
        RolloutSlot.FULL,
        RolloutSlot.FULL,
    )
    assert overdue == [API]
    assert renewed == []
    assert freed is RolloutSlot.TAKEN


def test_a_rotation_and_a_status_are_read_back_alone(store):
    assert store.rotation(ROTATION) is None
    assert store.status(ROTATION, API) is None
    became = datetime(2026, 11, 21, 8, 30, 0, 123456, tzinfo=UTC)
    store.record_rotation(ROTATION, SECRET, "v1", became)
    store.set_status(ROTATION, API, at(Status.QUEUED))
    found = store.rotation(ROTATION)
    assert found is not None
    assert (found.secret_arn, found.version, found.source) == (SECRET, "v1", "")
    assert found.rotated_at == became.replace(microsecond=0)  # an event's time: whole seconds
    status = store.status(ROTATION, API)
    assert status is not None and status.status is Status.QUEUED


def test_the_reconcilers_record_keeps_the_first_facts_and_its_moment_to_the_microsecond(store):
    seen = datetime(2026, 11, 21, 9, 0, 0, 654321, tzinfo=UTC)
    store.remember_current(ROTATION, SECRET, "v1", seen, "reconciler:first-seen")
    store.remember_current(ROTATION, SECRET, "v1", seen + HOUR, "reconciler:cloudtrail")
    found = store.rotation(ROTATION)
    assert found is not None
    assert (found.rotated_at, found.source) == (seen, "reconciler:first-seen")
    # The event path's record of a value is not replaced by the reconciler's either.
    other = f"{SECRET}@v2"
    store.record_rotation(other, SECRET, "v2", seen)
    store.remember_current(other, SECRET, "v2", seen + HOUR, "reconciler:first-seen")
    kept = store.rotation(other)
    assert kept is not None and kept.source == "" and kept.rotated_at == seen.replace(microsecond=0)
