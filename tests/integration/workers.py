"""Drive the worker Lambda as its SQS event source does, and build worlds of stale services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import ACCOUNT, REGION
from tests.integration.conftest import EcsWorld, RedeployQueue


class FakeLambdaContext:
    function_name = "rotor"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rotor"

    def __init__(self, remaining_millis: int = 900_000) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._remaining = remaining_millis

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining


def drain(queue: RedeployQueue, worker: Any, rounds: int = 20) -> list[dict[str, Any]]:
    """Run the worker on whatever the queue holds until it is empty; return the answers."""
    answers = []
    for _ in range(rounds):
        messages = queue.receive()
        if not messages:
            return answers
        answer = worker(queue.sqs_event(messages), FakeLambdaContext())
        answers.append(answer)
        queue.delete(messages, {f["itemIdentifier"] for f in answer["batchItemFailures"]})
    raise AssertionError("the queue never emptied")


def stale_world(ecs_world: EcsWorld, clusters: dict[str, int], fresh: int = 1) -> str:
    """``clusters``: name -> stale consumers; each cluster also has ``fresh`` fresh ones."""
    db = ecs_world.secret("prod/db")
    fresh_at = datetime.now(UTC) - timedelta(seconds=5)
    task_definition = ecs_world.task_definition(secrets=[db])
    for cluster, stale in clusters.items():
        ecs_world.cluster(cluster)
        for i in range(stale):
            ecs_world.service(cluster, f"{cluster}-stale-{i}", task_definition)
        for i in range(fresh):
            # Deployed just now: after any rotation a test makes (at collection or later).
            ecs_world.service(
                cluster, f"{cluster}-fresh-{i}", task_definition, deployed_at=fresh_at
            )
    return db
