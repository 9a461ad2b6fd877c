"""Drive the worker Lambda as its SQS event source does, and build worlds of stale services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import ACCOUNT, REGION
from tests.integration.conftest import STALE, EcsWorld, RedeployQueue


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


def replica_with_a_consumer(clients: Any, region: str, *, failed: bool = False) -> str:
    """``replicated/db`` in the clients' region, replicated to ``region`` (moto's replica: in
    sync at once, or its status set as AWS reports a failed replication), and a stale service
    there (cluster ``prod``, service ``replica-api``) that references the replica's ARN.
    Returns the primary's ARN."""
    import boto3
    from moto.ecs.models import ecs_backends
    from moto.secretsmanager.models import secretsmanager_backends

    from orchestration.cli.world import backdate_deployment

    arn: str = clients.secretsmanager.create_secret(
        Name="replicated/db", SecretString="x", AddReplicaRegions=[{"Region": region}]
    )["ARN"]
    if failed:
        (replica,) = secretsmanager_backends[ACCOUNT][clients.region].secrets[arn].replicas
        replica.config.update(Status="Failed", StatusMessage="Replication failed: KMS key disabled")
    ecs = boto3.client("ecs", region_name=region)
    ecs.create_cluster(clusterName="prod")
    container = {
        "name": "app",
        "image": "registry.example.com/app:1",
        "memory": 256,
        "secrets": [{"name": "DB", "valueFrom": arn.replace(f":{clients.region}:", f":{region}:")}],
    }
    task_definition = ecs.register_task_definition(
        family="replica-api", containerDefinitions=[container]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster="prod", serviceName="replica-api", taskDefinition=task_definition, desiredCount=1
    )
    backdate_deployment(ecs_backends[ACCOUNT][region], "prod", "replica-api", STALE)
    return arn
