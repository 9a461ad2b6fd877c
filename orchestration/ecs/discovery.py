"""Find the ECS services whose task definitions reference a secret.

One scan walks every cluster (or those in ``ROTOR_CLUSTERS``): ``ListServices`` 100 per page,
``DescribeServices`` ten at a time with tags, ``DescribeTaskDefinition`` once per distinct task
definition. Task definition revisions are immutable, so they are cached by ARN for the life of
the runtime (a warm Lambda container keeps its runtime, and so the cache). Calls run on a
thread pool; the client's rate limiter (``orchestration.aws.ratelimit``) keeps them under ECS's
published limits, and every
call goes through the retry policy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import InvalidReferenceError
from orchestration.secrets.references import (
    ReferenceField,
    SecretIdentity,
    SecretReference,
    parse_reference,
)

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 100  # ListServices and ListClusters maximum
DESCRIBE_BATCH = 10  # DescribeServices maximum


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
class ServiceSnapshot:
    """One ECS service as DescribeServices shows it."""

    arn: str
    name: str
    cluster_arn: str
    status: str
    desired_count: int
    task_definition: str
    tags: dict[str, str]
    primary_created_at: datetime | None

    @property
    def cluster_name(self) -> str:
        return self.cluster_arn.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Consumer:
    """A service whose current task definition references the secret."""

    service: ServiceSnapshot
    task_definition: TaskDefinitionSummary
    references: tuple[tuple[str, SecretReference], ...]  # only those pointing at the secret

    @property
    def pinned(self) -> bool:
        return all(ref.pinned for _, ref in self.references)

    def to_dict(self) -> dict[str, Any]:
        service = self.service
        return {
            "cluster": service.cluster_name,
            "service": service.name,
            "service_arn": service.arn,
            "task_definition": service.task_definition,
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


@dataclass
class Inventory:
    """Every service scanned, with its task definition."""

    services: list[tuple[ServiceSnapshot, TaskDefinitionSummary]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # services that vanished mid-scan

    def consumers_of(self, secret: SecretIdentity) -> list[Consumer]:
        found = []
        for service, task_definition in self.services:
            refs = tuple(
                (container, ref)
                for container, ref in task_definition.references
                if ref.points_at(secret)
            )
            if refs:
                found.append(Consumer(service, task_definition, refs))
        return found

    @property
    def unreadable(self) -> list[UnreadableReference]:
        seen: dict[str, TaskDefinitionSummary] = {td.arn: td for _, td in self.services}
        return [bad for td in seen.values() for bad in td.unreadable]


class TaskDefinitionCache:
    """Task definition summaries by ARN. Revisions never change, so entries never expire."""

    def __init__(self) -> None:
        self._entries: dict[str, TaskDefinitionSummary] = {}
        self._lock = threading.Lock()

    def get(self, arn: str) -> TaskDefinitionSummary | None:
        with self._lock:
            return self._entries.get(arn)

    def put(self, summary: TaskDefinitionSummary) -> None:
        with self._lock:
            self._entries[summary.arn] = summary

    def __len__(self) -> int:
        return len(self._entries)


class ConsumerDiscovery:
    def __init__(
        self,
        ecs: ECSClient,
        retry: RetryPolicy,
        *,
        clusters: Sequence[str] = (),
        cache: TaskDefinitionCache | None = None,
        max_workers: int = 8,
    ) -> None:
        self._ecs = ecs
        self._retry = retry
        self._clusters = tuple(clusters)
        self._cache = cache if cache is not None else TaskDefinitionCache()
        self._max_workers = max_workers

    def consumers(self, secret: SecretIdentity) -> list[Consumer]:
        return self.scan().consumers_of(secret)

    def scan(self) -> Inventory:
        inventory = Inventory()
        with ThreadPoolExecutor(self._max_workers, thread_name_prefix="rotor-scan") as pool:
            pages = [pool.submit(self._service_arns, c) for c in self._cluster_arns()]
            describes: list[Future[tuple[list[ServiceSnapshot], list[str]]]] = []
            for page in pages:
                cluster, arns = page.result()
                for start in range(0, len(arns), DESCRIBE_BATCH):
                    batch = arns[start : start + DESCRIBE_BATCH]
                    describes.append(pool.submit(self._describe_services, cluster, batch))
            snapshots: list[ServiceSnapshot] = []
            for described in describes:
                found, missing = described.result()
                snapshots.extend(found)
                inventory.missing.extend(missing)
            wanted = sorted({s.task_definition for s in snapshots})
            fetched = dict(zip(wanted, pool.map(self._task_definition, wanted), strict=True))
        inventory.services = [(s, fetched[s.task_definition]) for s in snapshots]
        return inventory

    def _cluster_arns(self) -> list[str]:
        if self._clusters:
            return list(self._clusters)
        return self._all_pages("ListClusters", self._ecs.list_clusters, "clusterArns")

    def _service_arns(self, cluster: str) -> tuple[str, list[str]]:
        arns = self._all_pages(
            "ListServices", self._ecs.list_services, "serviceArns", cluster=cluster
        )
        return cluster, arns

    def _all_pages(
        self, operation: str, call: Callable[..., Any], key: str, **params: Any
    ) -> list[str]:
        """Every item of a paginated ECS list call, 100 a page (the maximum), each page retried."""
        items: list[str] = []
        token: str | None = None
        while True:
            page = self._retry.call(
                operation,
                call,
                maxResults=LIST_PAGE_SIZE,
                **params,
                **({"nextToken": token} if token else {}),
            )
            items.extend(page.get(key, []))
            token = page.get("nextToken")
            if not token:
                return items

    def _describe_services(
        self, cluster: str, arns: list[str]
    ) -> tuple[list[ServiceSnapshot], list[str]]:
        answer = self._retry.call(
            "DescribeServices",
            self._ecs.describe_services,
            cluster=cluster,
            services=arns,
            include=["TAGS"],
        )
        missing = [f.get("arn", "?") for f in answer.get("failures", [])]
        return [snapshot_of(s) for s in answer.get("services", [])], missing

    def _task_definition(self, arn: str) -> TaskDefinitionSummary:
        cached = self._cache.get(arn)
        if cached is not None:
            return cached
        answer = self._retry.call(
            "DescribeTaskDefinition", self._ecs.describe_task_definition, taskDefinition=arn
        )
        summary = summarize_task_definition(answer["taskDefinition"])
        self._cache.put(summary)
        return summary


def snapshot_of(service: Any) -> ServiceSnapshot:
    """A ``ServiceSnapshot`` from one DescribeServices ``services[]`` entry."""
    primary = next(
        (d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None
    )
    return ServiceSnapshot(
        arn=service["serviceArn"],
        name=service["serviceName"],
        cluster_arn=service["clusterArn"],
        status=service.get("status", "UNKNOWN"),
        desired_count=int(service.get("desiredCount", 0)),
        task_definition=service["taskDefinition"],
        tags={t["key"]: t.get("value", "") for t in service.get("tags", []) if "key" in t},
        primary_created_at=primary.get("createdAt") if primary else None,
    )


def summarize_task_definition(task_definition: Any) -> TaskDefinitionSummary:
    """Every secret reference in every container of a task definition."""
    arn = task_definition["taskDefinitionArn"]
    _, partition, _, region, account, _ = arn.split(":", 5)
    references: list[tuple[str, SecretReference]] = []
    unreadable: list[UnreadableReference] = []
    for container in task_definition.get("containerDefinitions", []):
        name = container.get("name", "?")
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


def _reference_values(container: Any) -> Iterator[tuple[ReferenceField, Any]]:
    for secret in container.get("secrets") or []:
        yield ReferenceField.SECRETS, secret.get("valueFrom")
    credentials = (container.get("repositoryCredentials") or {}).get("credentialsParameter")
    if credentials:
        yield ReferenceField.REPOSITORY_CREDENTIALS, credentials
    log_config = container.get("logConfiguration") or {}
    for option in log_config.get("secretOptions") or []:
        yield ReferenceField.SECRET_OPTIONS, option.get("valueFrom")
