"""Heavy throttling loses nothing: with 30% of ECS calls throttled at random, a replay for 200
consumers redeploys 200 of 200, every time (several seeds; sleeps recorded, never slept).

The runtime is built the way ``rotor replay`` builds it (one run, the command line's deadline).
"""

from __future__ import annotations

from collections import Counter

import pytest

from orchestration.aws.retry import RetryPolicy
from orchestration.cli.main import CLI_DEADLINE_SECONDS
from orchestration.dispatch import process
from orchestration.events.classification import classify
from orchestration.runtime import Runtime, fixed_deadline
from orchestration.settings import Settings
from orchestration.state.task_definitions import TaskDefinitionCache
from tests.aws_fakes import ErrorInjector
from tests.integration.conftest import rotation_event

pytestmark = pytest.mark.integration

CONSUMERS = 200


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_replay_for_200_consumers_with_30_percent_of_ecs_calls_throttled_redeploys_all(
    clients, sleeps, ecs_world, ecs_calls, seed
):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    uses_db = ecs_world.task_definition(secrets=[db])
    names = [f"svc-{i:03d}" for i in range(CONSUMERS)]
    for name in names:
        ecs_world.service("prod", name, uses_db)
    injector = ErrorInjector(0.3, seed=seed).attach(clients.ecs)
    runtime = Runtime.build(
        clients,
        Settings(),
        retry=RetryPolicy(sleep=sleeps),
        task_definitions=TaskDefinitionCache(),
    ).with_deadline(fixed_deadline(CLI_DEADLINE_SECONDS))

    outcome = process(classify(rotation_event(db)), runtime)

    assert outcome.failed == []
    assert len(outcome.redeployed) == CONSUMERS
    assert ecs_world.updates_reached_moto == Counter(dict.fromkeys(names, 1))
    assert injector.injected["UpdateService"] > 0.2 * CONSUMERS
    # A throttled UpdateService is retried as it is: no DescribeServices in between.
    sent = ecs_calls.counts["UpdateService"]
    assert sent == CONSUMERS + injector.injected["UpdateService"]
    describes = ecs_calls.counts["DescribeServices"]
    assert describes == CONSUMERS // 10 + injector.injected["DescribeServices"]
