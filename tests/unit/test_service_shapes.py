"""DescribeServices / DescribeTaskDefinition answers of every shape AWS may give.

The ECS API reference marks every member of ``Service``, ``Deployment``, ``TaskSet`` and
``TaskDefinition`` optional: rotor reads them as optional, and skips (with a reason) a service it
cannot scan, instead of raising and stopping every rotation in the account.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestration.ecs.discovery import distinct_clusters
from orchestration.ecs.shapes import primary_created_at, snapshot_of, summarize_task_definition
from orchestration.models import DeploymentController, ServiceSnapshot, SkippedService

ARN = "arn:aws:ecs:us-east-1:123456789012:service/prod/api"
TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/api:3"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 11, 2, tzinfo=UTC)


def test_the_smallest_service_aws_may_describe_is_read() -> None:
    snapshot = snapshot_of({"serviceArn": ARN, "taskDefinition": TD})

    assert isinstance(snapshot, ServiceSnapshot)
    assert snapshot.name == "api"
    assert snapshot.cluster_arn == "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
    assert (snapshot.status, snapshot.desired_count, snapshot.tags) == ("UNKNOWN", 0, {})
    assert snapshot.primary_created_at is None
    assert snapshot.controller is DeploymentController.ECS
    assert snapshot.task_definitions == (TD,)


def test_external_service_without_task_definition_is_read_through_its_task_sets() -> None:
    snapshot = snapshot_of(
        {
            "serviceArn": ARN,
            "serviceName": "api",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/prod",
            "deploymentController": {"type": "EXTERNAL"},
            "taskSets": [
                {"id": "ecs-svc/1", "taskDefinition": TD, "status": "PRIMARY", "createdAt": T1},
                {"id": "ecs-svc/2", "taskDefinition": TD[:-1] + "2", "status": "DRAINING"},
                {"id": "ecs-svc/3"},  # no task definition: nothing to scan in it
            ],
        }
    )

    assert isinstance(snapshot, ServiceSnapshot)
    assert snapshot.task_definition is None
    assert snapshot.task_definitions == (TD, TD[:-1] + "2")
    assert snapshot.primary_created_at == T1
    assert not snapshot.rotor_can_redeploy


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        ({"taskDefinition": TD}, "without serviceArn"),
        ({"serviceArn": ARN}, "no task definition"),
        ({"serviceArn": ARN, "deploymentController": {"type": "EXTERNAL"}}, "no task definition"),
        (
            {"serviceArn": ARN, "taskDefinition": TD, "deploymentController": {"type": "NEW"}},
            "unknown deployment controller 'NEW'",
        ),
        ({"serviceArn": ARN, "taskDefinition": 42}, "not a string"),
    ],
)
def test_a_service_rotor_cannot_scan_is_skipped_with_a_reason(
    service: dict[str, Any], reason: str
) -> None:
    skipped = snapshot_of(service)

    assert isinstance(skipped, SkippedService)
    assert reason in skipped.reason


def test_deployments_and_tags_with_missing_fields_are_read() -> None:
    service = {
        "serviceArn": ARN,
        "taskDefinition": TD,
        "deployments": [{"status": "ACTIVE", "createdAt": T0}, {"status": "PRIMARY"}],
        "tags": [{"key": "rotor:redeploy"}, {"value": "orphan"}],
        "loadBalancers": [{"targetGroupArn": "tg"}, {"containerName": "app"}],
    }

    snapshot = snapshot_of(service)

    assert isinstance(snapshot, ServiceSnapshot)
    assert snapshot.primary_created_at is None  # PRIMARY without createdAt: of unknown age
    assert snapshot.tags == {"rotor:redeploy": ""}
    assert [(lb.container_name, lb.container_port) for lb in snapshot.load_balancers] == [
        ("app", 0)
    ]
    assert primary_created_at({"deployments": [{"status": "PRIMARY", "createdAt": T0}]}) == T0


def test_a_rolling_deployment_names_the_task_definitions_it_replaces() -> None:
    """A circuit breaker's rollback returns the service to an ACTIVE deployment's task
    definition without an API call: the consumer index keeps the service under it too."""
    old = TD.replace(":3", ":2")
    snapshot = snapshot_of(
        {
            "serviceArn": ARN,
            "taskDefinition": TD,
            "deployments": [
                {"status": "PRIMARY", "taskDefinition": TD},
                {"status": "ACTIVE", "taskDefinition": old},
                {"status": "ACTIVE", "taskDefinition": TD},  # a forced redeploy: the same
                {"status": "ACTIVE"},
                {"status": "INACTIVE", "taskDefinition": TD.replace(":3", ":1")},
            ],
        }
    )

    assert isinstance(snapshot, ServiceSnapshot)
    assert snapshot.task_definitions == (TD,)  # what it runs: what a rotation plans on
    assert snapshot.replaced_task_definitions == (old,)
    assert snapshot.indexed_task_definitions == (TD, old)


def test_a_task_definition_with_missing_fields_is_read() -> None:
    summary = summarize_task_definition(
        {
            "containerDefinitions": [
                {"secrets": [{"valueFrom": "prod/db"}]},  # no name
                {"name": "log", "logConfiguration": {"logDriver": "splunk"}},
                {"name": "x", "secrets": None, "repositoryCredentials": None},
            ]
        },
        TD,
    )

    assert summary.arn == TD
    assert [(container, ref.raw) for container, ref in summary.references] == [("?", "prod/db")]


def test_a_cluster_named_by_name_and_by_arn_counts_once() -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"

    assert distinct_clusters(["prod", arn, "batch", "prod"]) == ["prod", "batch"]
    assert distinct_clusters([arn, "prod"]) == [arn]
