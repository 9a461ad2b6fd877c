"""A redeploy job's message with the planner's look at its service: every field the worker
reads survives the queue, older messages still parse, bad ones are refused clearly, and a
batch of ten stays well under SQS's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.ecs.shapes import snapshot_of
from orchestration.errors import InvalidEventError
from orchestration.fanout.jobs import MAX_CARRYING_BYTES, RedeployJob, parse_job
from orchestration.fanout.queue import BATCH
from orchestration.models import DeploymentController, ServiceSnapshot
from orchestration.settings import Settings

ACCOUNT = "123456789012"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/db-AbCdEf"
CLUSTER = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/prod"
SERVICE = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/api"
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
#: SQS: at most 256 KiB per message, and per SendMessageBatch (all ten entries together).
SQS_LIMIT = 256 * 1024


def task_definition(revision: int) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/api:{revision}"


def described(
    controller: str = "ECS", *, tags: int = 3, key_length: int = 20, value_length: int = 40
) -> dict[str, Any]:
    """One DescribeServices ``services[]`` entry with everything rotor reads, as AWS writes it."""
    service: dict[str, Any] = {
        "serviceArn": SERVICE,
        "serviceName": "api",
        "clusterArn": CLUSTER,
        "status": "ACTIVE",
        "desiredCount": 3,
        "deploymentController": {"type": controller},
        "tags": [
            {"key": f"k{i}".ljust(key_length, "k"), "value": "v" * value_length}
            for i in range(tags)
        ]
        + [{"key": "rotor:redeploy", "value": "notify"}],
        "loadBalancers": [
            {
                "targetGroupArn": "arn:aws:elasticloadbalancing:tg",
                "containerName": "app",
                "containerPort": 8080,
            }
        ],
    }
    if controller == "ECS":
        service["taskDefinition"] = task_definition(3)
        service["deployments"] = [
            {
                "id": "ecs-svc/1",
                "status": "PRIMARY",
                "taskDefinition": task_definition(3),
                "rolloutState": "IN_PROGRESS",
                "createdAt": NOW - timedelta(days=2),
                "updatedAt": NOW - timedelta(days=1),
            },
            {
                "id": "ecs-svc/0",
                "status": "ACTIVE",
                "taskDefinition": task_definition(2),
                "rolloutState": "COMPLETED",
                "createdAt": NOW - timedelta(days=9),
                "updatedAt": NOW - timedelta(days=2),
            },
        ]
    else:  # CODE_DEPLOY, EXTERNAL: task sets carry the task definitions
        if controller == "CODE_DEPLOY":
            service["taskDefinition"] = task_definition(3)
        service["taskSets"] = [
            {
                "id": f"ecs-svc/{i}",
                "taskDefinition": task_definition(i + 1),
                "status": "PRIMARY" if i == 0 else "ACTIVE",
                "createdAt": NOW - timedelta(days=i + 1),
            }
            for i in range(3)
        ]
    return service


def snapshot(service: dict[str, Any]) -> ServiceSnapshot:
    found = snapshot_of(service)
    assert isinstance(found, ServiceSnapshot)
    return found


def job() -> RedeployJob:
    return RedeployJob(
        secret_arn=SECRET,
        version="v2",
        rotated_at=NOW - timedelta(minutes=1),
        service_arn=SERVICE,
        cluster_arn=CLUSTER,
    )


@pytest.mark.parametrize("controller", [c.value for c in DeploymentController])
def test_every_field_of_the_snapshot_survives_the_queue(controller: str) -> None:
    look = snapshot(described(controller))
    carried = job().carrying(look, NOW)

    back = parse_job(carried.model_dump_json())

    assert isinstance(back, RedeployJob)
    assert back.snapshot == look
    assert back.described_at == NOW
    # Field by field, with the worker's derived views of them.
    assert back.snapshot is not None
    for name in ServiceSnapshot.__dataclass_fields__:
        assert getattr(back.snapshot, name) == getattr(look, name), name
    assert back.snapshot.controller is DeploymentController(controller)
    assert back.snapshot.primary_created_at == look.primary_created_at is not None
    assert back.snapshot.task_definitions == look.task_definitions
    assert back.snapshot.indexed_task_definitions == look.indexed_task_definitions
    assert back.snapshot.tags["rotor:redeploy"] == "notify"
    if controller == "ECS":
        assert back.snapshot.replaced_task_definitions == (task_definition(2),)
    else:
        assert len(back.snapshot.task_sets) == 3
    assert back.key == job().key  # one job, with or without the look


def test_a_message_written_before_jobs_carried_snapshots_still_parses() -> None:
    body = json.loads(job().model_dump_json())
    del body["snapshot"], body["described_at"]

    back = parse_job(json.dumps(body))

    assert isinstance(back, RedeployJob)
    assert (back.snapshot, back.described_at) == (None, None)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"described_at": None}, "snapshot and described_at go together"),
        ({"snapshot": None}, "snapshot and described_at go together"),
        ({"described_at": "2026-11-21T09:00:00"}, "timezone"),
        ({"snapshot": {"arn": SERVICE}}, "snapshot."),
        ({"service_arn": f"{CLUSTER.replace('cluster/', 'service/')}/other"}, "another service"),
    ],
)
def test_a_bad_snapshot_is_refused_with_a_clear_error(change: dict[str, Any], problem: str) -> None:
    body = json.loads(job().carrying(snapshot(described()), NOW).model_dump_json())
    body.update(change)

    with pytest.raises(InvalidEventError) as refused:
        parse_job(json.dumps(body))

    assert str(refused.value).startswith("not a rotor job: ")
    assert problem in str(refused.value)


def test_a_batch_of_big_services_stays_well_under_the_sqs_limits() -> None:
    """50 tags (ECS's most), a deployment under way and one it replaces, a load balancer."""
    big = snapshot(described(tags=49, key_length=40, value_length=100))

    bodies = [job().carrying(big, NOW).model_dump_json() for _ in range(BATCH)]

    assert all('"snapshot":{' in body for body in bodies)
    assert max(len(body.encode()) for body in bodies) <= MAX_CARRYING_BYTES
    assert sum(len(body.encode()) for body in bodies) <= SQS_LIMIT * 3 // 4


def test_a_snapshot_too_big_to_carry_is_left_out() -> None:
    """ECS's 50 tags at their longest (128-character keys, 256-character values)."""
    huge = snapshot(described(tags=49, key_length=128, value_length=256))

    sent = job().carrying(huge, NOW)

    assert (sent.snapshot, sent.described_at) == (None, None)  # the worker describes it
    assert len(sent.model_dump_json().encode()) * BATCH <= SQS_LIMIT // 4


def test_the_bound_is_a_setting_and_zero_turns_it_off() -> None:
    assert Settings().snapshot_max_age == timedelta(seconds=60)
    assert Settings(snapshot_max_age="2m").snapshot_max_age == timedelta(minutes=2)
    assert Settings(snapshot_max_age="0").snapshot_max_age == timedelta(0)
