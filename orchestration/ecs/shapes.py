"""AWS's answers mapped onto ``orchestration.models``: the one place that reads ECS shapes.

DescribeServices ``services[]``, their ``deployments`` and ``taskSets``, and DescribeTaskDefinition
``taskDefinition``. The ECS API reference marks every member of ``Service``, ``Deployment``,
``TaskSet`` and ``TaskDefinition`` optional, so every one is read as optional: a service rotor
cannot scan becomes a ``SkippedService`` with the reason, never an exception. The PRIMARY
deployment is found here only (``primary_deployment``), for discovery, the redeployer and the demo.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestration.errors import InvalidReferenceError
from orchestration.models import (
    PRIMARY,
    DeploymentController,
    LoadBalancerTarget,
    ServiceSnapshot,
    SkippedService,
    TaskDefinitionSummary,
    TaskSetSnapshot,
    UnreadableReference,
)
from orchestration.secrets.references import ReferenceField, SecretReference, parse_reference

log = logging.getLogger(__name__)

ACTIVE = "ACTIVE"  # a deployment that a PRIMARY one is replacing


def primary_deployment(service: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The PRIMARY entry of a DescribeServices/UpdateService ``deployments`` list, if any.

    The one place that reads it: discovery, the redeployer and the demo all go through here.
    """
    deployments: Sequence[Any] = service.get("deployments") or []
    return next(
        (d for d in deployments if isinstance(d, Mapping) and d.get("status") == PRIMARY), None
    )


def snapshot_of(service: Mapping[str, Any]) -> ServiceSnapshot | SkippedService:
    """A ``ServiceSnapshot`` from one DescribeServices ``services[]`` entry, or why not.

    The ECS API reference marks every member of ``Service`` optional: only the ARN is needed
    to name the service, and a task definition (its own, or its task sets') to scan it.
    """
    arn = service.get("serviceArn")
    if not isinstance(arn, str) or not arn:
        return SkippedService("?", "DescribeServices gave a service without serviceArn")
    kind = (service.get("deploymentController") or {}).get("type") or "ECS"
    try:
        controller = DeploymentController(kind)
    except ValueError:
        return SkippedService(arn, f"unknown deployment controller {kind!r}")
    task_sets = tuple(ts for ts in map(_task_set_of, service.get("taskSets") or []) if ts)
    task_definition = service.get("taskDefinition") or None
    if task_definition is not None and not isinstance(task_definition, str):
        return SkippedService(arn, f"taskDefinition is not a string: {task_definition!r}")
    if task_definition is None and not task_sets:
        return SkippedService(
            arn, f"no task definition: no taskDefinition and no task sets ({controller} controller)"
        )
    cluster_arn = service.get("clusterArn") or _cluster_of_service(arn)
    return ServiceSnapshot(
        arn=arn,
        name=str(service.get("serviceName") or arn.rsplit("/", 1)[-1]),
        cluster_arn=str(cluster_arn),
        status=str(service.get("status") or "UNKNOWN"),
        desired_count=_int(service.get("desiredCount")),
        task_definition=task_definition,
        tags={
            str(t["key"]): str(t.get("value") or "")
            for t in service.get("tags") or []
            if isinstance(t, Mapping) and t.get("key")
        },
        primary_created_at=_primary_created_at(service, task_sets),
        controller=controller,
        task_sets=task_sets,
        load_balancers=tuple(
            LoadBalancerTarget(str(lb["containerName"]), _int(lb.get("containerPort")))
            for lb in service.get("loadBalancers") or []
            if isinstance(lb, Mapping) and lb.get("containerName")
        ),
        replaced_task_definitions=tuple(
            dict.fromkeys(
                str(d["taskDefinition"])
                for d in service.get("deployments") or []
                if isinstance(d, Mapping)
                and d.get("status") == ACTIVE
                and isinstance(d.get("taskDefinition"), str)
                and d["taskDefinition"] != task_definition
            )
        ),
    )


def primary_created_at(service: Mapping[str, Any]) -> datetime | None:
    """When the PRIMARY deployment (or, without deployments, the PRIMARY task set) was made."""
    task_sets = tuple(ts for ts in map(_task_set_of, service.get("taskSets") or []) if ts)
    return _primary_created_at(service, task_sets)


def _primary_created_at(
    service: Mapping[str, Any], task_sets: tuple[TaskSetSnapshot, ...]
) -> datetime | None:
    primary = primary_deployment(service)
    if primary is not None:
        created = primary.get("createdAt")
        return created if isinstance(created, datetime) else None
    return next((ts.created_at for ts in task_sets if ts.status == PRIMARY), None)


def _task_set_of(task_set: Any) -> TaskSetSnapshot | None:
    if not isinstance(task_set, Mapping) or not task_set.get("taskDefinition"):
        return None
    created = task_set.get("createdAt")
    return TaskSetSnapshot(
        id=str(task_set.get("id") or task_set.get("taskSetArn") or "?"),
        task_definition=str(task_set["taskDefinition"]),
        status=str(task_set.get("status") or "UNKNOWN"),
        created_at=created if isinstance(created, datetime) else None,
    )


def _cluster_of_service(service_arn: str) -> str:
    # arn:aws:ecs:region:account:service/cluster/name (the long format); the short format
    # (service/name) does not say, and then the cluster is unknown.
    prefix, _, path = service_arn.partition(":service/")
    parts = path.split("/")
    return f"{prefix}:cluster/{parts[0]}" if len(parts) == 2 else "?"


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def summarize_task_definition(
    task_definition: Mapping[str, Any], arn: str | None = None
) -> TaskDefinitionSummary:
    """Every secret reference in every container of a task definition."""
    arn = str(task_definition.get("taskDefinitionArn") or arn or "?")
    parts = arn.split(":", 5)
    partition, region, account = (parts[1], parts[3], parts[4]) if len(parts) == 6 else ("", "", "")
    references: list[tuple[str, SecretReference]] = []
    unreadable: list[UnreadableReference] = []
    for container in task_definition.get("containerDefinitions") or []:
        if not isinstance(container, Mapping):
            continue
        name = str(container.get("name") or "?")
        for ref_field, value in _reference_values(container):
            try:
                ref = parse_reference(
                    value, ref_field, partition=partition, region=region, account=account
                )
            except InvalidReferenceError as exc:
                log.warning("unreadable reference in %s container %s: %s", arn, name, exc)
                unreadable.append(UnreadableReference(arn, name, str(value), str(exc)))
                continue
            references.append((name, ref))
    return TaskDefinitionSummary(
        arn=arn,
        references=tuple(references),
        unreadable=tuple(unreadable),
        task_role_arn=task_definition.get("taskRoleArn"),
        execution_role_arn=task_definition.get("executionRoleArn"),
    )


def _reference_values(container: Mapping[str, Any]) -> Iterator[tuple[ReferenceField, Any]]:
    for secret in container.get("secrets") or []:
        if isinstance(secret, Mapping):
            yield ReferenceField.SECRETS, secret.get("valueFrom")
    credentials = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
    if credentials:
        yield ReferenceField.REPOSITORY_CREDENTIALS, credentials
    log_config = container.get("logConfiguration") or {}
    for option in log_config.get("secretOptions") or []:
        if isinstance(option, Mapping):
            yield ReferenceField.SECRET_OPTIONS, option.get("valueFrom")
