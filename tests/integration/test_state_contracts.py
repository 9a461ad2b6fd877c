"""The contracts of the service lease and the task-definition summaries, on both backends, and
the check that every store of the state layer with two backends runs its contract on both.

One fixture, ``backend`` (``tests/integration/conftest.py``), runs each store's contract against
memory and against the state table in moto: the state store (``test_state_store.py``), the
redeploy ledger (``test_redeploy_ledger.py``), the notify window (``test_notify_window.py``),
the rollout store (``test_rollout_store_contract.py``), and the two below.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from datetime import timedelta

import pytest

import orchestration.state
from orchestration.ecs.shapes import summarize_task_definition
from orchestration.models import TaskDefinitionSummary
from tests.integration.conftest import BACKEND_BUILDERS, NOW, Backend

pytestmark = pytest.mark.integration

API = "arn:aws:ecs:us-east-1:123456789012:service/prod/api"
WORKER = "arn:aws:ecs:us-east-1:123456789012:service/prod/worker"
MINUTE = timedelta(minutes=1)
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"
TASK_DEFINITION = "arn:aws:ecs:us-east-1:123456789012:task-definition/app:7"


# --- every store ---------------------------------------------------------------------------


def _stores_with_a_backend() -> set[type]:
    """The stores of orchestration/state/ (what an invocation's retry policy reaches:
    ``with_retry``) named for a backend (Memory*, DynamoDb*, Stored*)."""
    found: set[type] = set()
    for info in pkgutil.iter_modules(orchestration.state.__path__):
        module = importlib.import_module(f"orchestration.state.{info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and name.startswith(("Memory", "DynamoDb", "Stored"))
                and hasattr(cls, "with_retry")
            ):
                found.add(cls)
    return found


def test_every_store_with_two_backends_is_built_on_both(backend: Backend) -> None:
    """A store given a memory and a DynamoDB class must be built by ``Backend``, so the
    contract suites (which take their stores from it) run it on both."""
    built = {type(getattr(backend, builder)()) for builder in BACKEND_BUILDERS}
    mine = ("Memory",) if backend.name == "memory" else ("DynamoDb", "Stored")
    expected = {cls for cls in _stores_with_a_backend() if cls.__name__.startswith(mine)}
    assert len(expected) >= 4
    assert expected - built == set()


# --- the service lease ---------------------------------------------------------------------


def test_a_free_service_lease_is_taken_and_a_held_one_is_not(backend: Backend) -> None:
    leases = backend.leases()
    lease = leases.take(API, NOW, 5 * MINUTE)

    assert lease is not None and lease.deployed_since is None
    assert leases.take(API, NOW + MINUTE, 5 * MINUTE) is None
    assert backend.leases().take(API, NOW + MINUTE, 5 * MINUTE) is None  # another container


def test_services_have_leases_of_their_own(backend: Backend) -> None:
    leases = backend.leases()
    assert leases.take(API, NOW, 5 * MINUTE) is not None
    assert leases.take(WORKER, NOW, 5 * MINUTE) is not None


def test_a_lease_given_back_without_a_deployment_lets_the_next_job_in(backend: Backend) -> None:
    leases = backend.leases()
    lease = leases.take(API, NOW, 5 * MINUTE)
    assert lease is not None
    leases.give_back(lease, None)

    after = backend.leases().take(API, NOW + MINUTE, 5 * MINUTE)
    assert after is not None and after.deployed_since is None


def test_a_lease_given_back_with_a_deployment_names_its_time_to_the_next_job(
    backend: Backend,
) -> None:
    deployed_at = NOW + timedelta(seconds=7, microseconds=123456)
    leases = backend.leases()
    lease = leases.take(API, NOW, 5 * MINUTE)
    assert lease is not None
    leases.give_back(lease, deployed_at)

    after = backend.leases().take(API, NOW + MINUTE, 5 * MINUTE)
    assert after is not None
    assert after.deployed_since == deployed_at  # to the microsecond, in both backends


def test_a_deployment_stays_known_after_a_job_that_made_none_held_the_lease(
    backend: Backend,
) -> None:
    """Three secrets of one service, three jobs that read it before any deployed: the first
    deploys; the second learns it and gives the lease back; the third must learn it too, or
    it deploys the service a second time on its older snapshot."""
    deployed_at = NOW + timedelta(seconds=30)
    leases = backend.leases()
    first = leases.take(API, NOW, 5 * MINUTE)
    assert first is not None
    leases.give_back(first, deployed_at)
    second = backend.leases().take(API, NOW + MINUTE, 5 * MINUTE)
    assert second is not None and second.deployed_since == deployed_at
    backend.leases().give_back(second, None)

    third = backend.leases().take(API, NOW + 2 * MINUTE, 5 * MINUTE)
    assert third is not None and third.deployed_since == deployed_at


def test_an_expired_lease_is_taken_over_and_its_old_holder_cannot_give_it_back(
    backend: Backend,
) -> None:
    leases = backend.leases()
    old = leases.take(API, NOW, MINUTE)
    assert old is not None
    later = NOW + 2 * MINUTE  # past the lease and its margin

    new = backend.leases().take(API, later, 5 * MINUTE)
    assert new is not None
    leases.give_back(old, None)  # the old job ends: it must not free the new job's lease

    assert backend.leases().take(API, later + MINUTE, 5 * MINUTE) is None


def test_a_lease_reached_through_another_retry_policy_is_the_same_lease(
    backend: Backend,
) -> None:
    leases = backend.leases()
    assert leases.take(API, NOW, 5 * MINUTE) is not None
    assert leases.with_retry(backend.retry).take(API, NOW, 5 * MINUTE) is None


# --- task-definition summaries -------------------------------------------------------------


def summary() -> TaskDefinitionSummary:
    return summarize_task_definition(
        {
            "taskDefinitionArn": TASK_DEFINITION,
            "taskRoleArn": "arn:aws:iam::123456789012:role/app",
            "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
            "containerDefinitions": [
                {
                    "name": "app",
                    "secrets": [
                        {"name": "A", "valueFrom": f"{SECRET}:password::"},
                        {"name": "B", "valueFrom": f"{SECRET}:password:AWSPREVIOUS:"},
                        {"name": "C", "valueFrom": "arn:aws:secretsmanager:nonsense"},
                    ],
                }
            ],
        }
    )


def test_an_unknown_revision_has_no_summary(backend: Backend) -> None:
    cache = backend.task_definitions()
    assert cache.get(TASK_DEFINITION) is None


def test_a_summary_put_reads_back_the_same_in_every_cache_of_the_backend(
    backend: Backend,
) -> None:
    written = summary()
    assert written.unreadable and len(written.references) == 2  # every part is exercised
    backend.task_definitions().put(written)

    assert backend.task_definitions().get(TASK_DEFINITION) == written
    assert backend.task_definitions().get(TASK_DEFINITION + "0") is None


def test_a_cache_reached_through_another_retry_policy_keeps_its_summaries(
    backend: Backend,
) -> None:
    cache = backend.task_definitions()
    cache.put(summary())
    bounded = cache.with_retry(backend.retry)

    assert bounded.get(TASK_DEFINITION) == summary()
    assert len(bounded) == len(cache) == 1
