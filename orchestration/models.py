"""rotor's domain models: what the adapters map AWS shapes onto, and what the use cases decide.

Adapters (``orchestration.ecs.discovery``, ``orchestration.ecs.redeploy``) build these from
DescribeServices / DescribeTaskDefinition answers; the freshness rule
(``orchestration.freshness``) turns them into verdicts; the redeployer into results.
Nothing here calls AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestration.secrets.references import SecretReference

PRIMARY = "PRIMARY"


class DeploymentController(StrEnum):
    """Who deploys a service (``deploymentController.type``; absent means ECS)."""

    ECS = "ECS"  # rolling updates: UpdateService(forceNewDeployment) works
    CODE_DEPLOY = "CODE_DEPLOY"  # blue/green: only a CodeDeploy deployment starts new tasks
    EXTERNAL = "EXTERNAL"  # a third-party controller: only a new task set starts new tasks


@dataclass(frozen=True, slots=True)
class UnreadableReference:
    """A reference rotor could not parse: reported, never fatal."""

    task_definition: str
    container: str
    value: str
    error: str


@dataclass(frozen=True, slots=True)
class TaskDefinitionSummary:
    """What rotor needs from one task definition revision."""

    arn: str
    references: tuple[tuple[str, SecretReference], ...]  # (container name, reference)
    unreadable: tuple[UnreadableReference, ...] = ()
    task_role_arn: str | None = None
    execution_role_arn: str | None = None


@dataclass(frozen=True, slots=True)
class TaskSetSnapshot:
    """One task set of a CODE_DEPLOY or EXTERNAL service (``taskSets[]``)."""

    id: str
    task_definition: str
    status: str  # PRIMARY, ACTIVE or DRAINING
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LoadBalancerTarget:
    """The container and port a service's load balancer sends traffic to."""

    container_name: str
    container_port: int


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """One ECS service as DescribeServices shows it."""

    arn: str
    name: str
    cluster_arn: str
    status: str
    desired_count: int
    task_definition: str | None  # None on the EXTERNAL controller: its task sets carry them
    tags: dict[str, str]
    primary_created_at: datetime | None
    controller: DeploymentController = DeploymentController.ECS
    task_sets: tuple[TaskSetSnapshot, ...] = ()
    load_balancers: tuple[LoadBalancerTarget, ...] = ()
    #: The task definitions of its ACTIVE deployments (ECS controller): what a deployment in
    #: progress replaces, and what a circuit breaker's rollback returns to without any API call
    replaced_task_definitions: tuple[str, ...] = ()

    @property
    def cluster_name(self) -> str:
        return self.cluster_arn.rsplit("/", 1)[-1]

    @property
    def task_definitions(self) -> tuple[str, ...]:
        """Every task definition the service runs: its own, then its task sets' (distinct)."""
        arns = [self.task_definition] if self.task_definition else []
        arns += [ts.task_definition for ts in self.task_sets]
        return tuple(dict.fromkeys(arns))

    @property
    def indexed_task_definitions(self) -> tuple[str, ...]:
        """What the consumer index keeps the service under: every task definition it runs,
        and those a rollback may bring back."""
        return tuple(dict.fromkeys(self.task_definitions + self.replaced_task_definitions))

    @property
    def rotor_can_redeploy(self) -> bool:
        """Only the ECS controller takes UpdateService(forceNewDeployment); AWS refuses it for
        CODE_DEPLOY and EXTERNAL services."""
        return self.controller is DeploymentController.ECS


@dataclass(frozen=True, slots=True)
class SkippedService:
    """A service rotor did not scan because its shape is not one it expects."""

    arn: str
    reason: str


@dataclass(frozen=True, slots=True)
class Consumer:
    """A service whose task definition (or one of its task sets') references the secret."""

    service: ServiceSnapshot
    task_definitions: tuple[TaskDefinitionSummary, ...]  # those that reference the secret
    references: tuple[tuple[str, SecretReference], ...]  # only those pointing at the secret

    @property
    def task_definition(self) -> TaskDefinitionSummary:
        return self.task_definitions[0]

    @property
    def pinned(self) -> bool:
        return all(ref.pinned for _, ref in self.references)

    def to_dict(self) -> dict[str, Any]:
        service = self.service
        return {
            "cluster": service.cluster_name,
            "service": service.name,
            "service_arn": service.arn,
            "task_definition": self.task_definition.arn,
            "task_definitions": [td.arn for td in self.task_definitions],
            "deployment_controller": service.controller.value,
            "references": [
                {
                    "container": container,
                    "field": ref.field.value,
                    "value_from": ref.raw,
                    "pinned": ref.pinned,
                }
                for container, ref in self.references
            ],
        }


class Action(StrEnum):
    REDEPLOY = "redeploy"
    MANUAL = "manual"  # stale, but its deployment controller does not let rotor redeploy it
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Verdict:
    consumer: Consumer
    action: Action
    reason: str

    @property
    def service_arn(self) -> str:
        return self.consumer.service.arn


class Outcome(StrEnum):
    REDEPLOYED = "redeployed"
    ALREADY_FRESH = "already_fresh"  # the ledger or a retry found a deployment made for it
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RedeployResult:
    service_arn: str
    cluster_arn: str
    outcome: Outcome
    deployment_id: str | None = None
    error: str | None = None
    retryable: bool = False  # for FAILED: a later retry of the event may succeed
    reason: str | None = None  # for ALREADY_FRESH: why
    created_at: datetime | None = None  # when the deployment that makes it fresh was created
