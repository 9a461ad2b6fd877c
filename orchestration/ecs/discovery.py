"""Find the ECS services whose task definitions reference a secret.

One scan walks every cluster (or those in ``ROTOR_CLUSTERS``, each once however it is named):
``ListServices`` 100 per page, ``DescribeServices`` ten at a time with tags,
``DescribeTaskDefinition`` once per distinct task definition. The scan is pipelined: a
cluster's services are described as soon as its list is in, and a task definition is read as
soon as the describe batch naming it returns. Task definition revisions are
immutable, so they are cached by ARN for the life of the runtime (a warm Lambda container keeps
its runtime, and so the cache). Calls run on a thread pool; the client's rate limiter
(``orchestration.aws.ratelimit``) keeps them under ECS's published limits, and every call goes
through the retry policy.

Nothing one cluster or one service holds stops the scan. A cluster that does not exist or cannot
be read, and a task definition that cannot be described, are recorded in
``Inventory.failures`` (with whether a retry may help); a service of a shape rotor does not
expect is recorded in ``Inventory.skipped`` with the reason; the others are scanned. Services on
the EXTERNAL deployment controller have no ``taskDefinition``: their task sets carry them, and
a reference in any task set's task definition makes the service a consumer.

``orchestration.ecs.shapes`` maps AWS's answers onto ``orchestration.models``, reading every
field that the ECS API reference marks optional as optional.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestration.aws.retry import RetryPolicy
from orchestration.ecs.shapes import snapshot_of, summarize_task_definition
from orchestration.errors import AwsCallError, ClusterNotFound, RetryableAwsError
from orchestration.models import (
    Consumer,
    ServiceSnapshot,
    SkippedService,
    TaskDefinitionSummary,
    UnreadableReference,
)
from orchestration.secrets.references import SecretIdentity
from orchestration.state.task_definitions import TaskDefinitionCache

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 100  # ListServices and ListClusters maximum
DESCRIBE_BATCH = 10  # DescribeServices maximum


@dataclass(frozen=True, slots=True)
class ScanFailure:
    """Part of the account rotor could not read: a cluster, or a task definition."""

    scope: str  # "cluster" or "task_definition"
    subject: str  # the cluster (as configured or listed) or the task definition ARN
    error: str
    retryable: bool  # a later retry of the event may read it

    @classmethod
    def of(cls, scope: str, subject: str, exc: AwsCallError) -> ScanFailure:
        log.warning("could not read %s %s: %s", scope.replace("_", " "), subject, exc)
        return cls(scope, subject, str(exc), isinstance(exc, RetryableAwsError))

    def describe(self) -> str:
        return f"could not read {self.scope.replace('_', ' ')} {self.subject}: {self.error}"


@dataclass
class Inventory:
    """Every service scanned, with its task definitions: one entry per service and task
    definition it runs (an EXTERNAL or CODE_DEPLOY service may run several, one per task set).
    """

    services: list[tuple[ServiceSnapshot, TaskDefinitionSummary]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # services that vanished mid-scan
    skipped: list[SkippedService] = field(default_factory=list)  # shapes rotor does not expect
    failures: list[ScanFailure] = field(default_factory=list)  # what could not be read

    def consumers_of(self, secret: SecretIdentity) -> list[Consumer]:
        by_service: dict[str, tuple[ServiceSnapshot, list[TaskDefinitionSummary], list[Any]]] = {}
        for service, task_definition in self.services:
            refs = [
                (container, ref)
                for container, ref in task_definition.references
                if ref.points_at(secret)
            ]
            if refs:
                _, tds, found = by_service.setdefault(service.arn, (service, [], []))
                tds.append(task_definition)
                found.extend(refs)
        return [
            Consumer(service, tuple(tds), tuple(refs)) for service, tds, refs in by_service.values()
        ]

    @property
    def unreadable(self) -> list[UnreadableReference]:
        seen: dict[str, TaskDefinitionSummary] = {td.arn: td for _, td in self.services}
        return [bad for td in seen.values() for bad in td.unreadable]


Described = tuple[list[ServiceSnapshot], list[str], list[SkippedService]]


class ConsumerDiscovery:
    def __init__(
        self,
        ecs: ECSClient,
        retry: RetryPolicy,
        *,
        clusters: Sequence[str] = (),
        cache: TaskDefinitionCache | None = None,
        max_workers: int = 8,
        absent_names_ok: bool = False,
    ) -> None:
        self._ecs = ecs
        self._retry = retry
        #: a cluster given by name that does not exist is no failure, only no services (a
        #: region other than the stack's, where the names of ROTOR_CLUSTERS apply too)
        self._absent_names_ok = absent_names_ok
        self._clusters = distinct_clusters(clusters)
        self._cache = cache if cache is not None else TaskDefinitionCache()
        self._max_workers = max_workers

    def consumers(self, secret: SecretIdentity) -> list[Consumer]:
        return self.scan().consumers_of(secret)

    def scan(self) -> Inventory:
        """One pipelined pass: each cluster's services are described as soon as its list is
        in, and each task definition is read as soon as the describe batch naming it returns,
        so the task-definition bucket starts draining at once instead of after a barrier."""
        inventory = Inventory()
        clusters = self.cluster_arns()
        list_failures: dict[str, ScanFailure] = {}
        describe_failures: dict[str, ScanFailure] = {}
        td_failures: dict[str, ScanFailure] = {}
        batches: list[Described | None] = []  # by submission: a deterministic result order
        fetched: dict[str, TaskDefinitionSummary] = {}
        requested: set[str] = set()
        listed: set[str] = set()
        # Two pools, one per ECS bucket: a call waiting for a task-definition token must not
        # hold up the describes queued behind it (each bucket drains at its own rate).
        with (
            ThreadPoolExecutor(self._max_workers, thread_name_prefix="rotor-scan") as services,
            ThreadPoolExecutor(self._max_workers, thread_name_prefix="rotor-td") as definitions,
        ):
            work: dict[Future[Any], tuple[str, str, int]] = {}  # future -> (step, subject, slot)

            def submit(
                step: str, subject: str, slot: int, call: Callable[..., Any], *args: Any
            ) -> None:
                pool = definitions if step == "task_definition" else services
                work[pool.submit(call, *args)] = (step, subject, slot)

            for cluster in clusters:
                submit("list", cluster, -1, self._service_arns, cluster)
            while work:
                done, _ = wait(work, return_when=FIRST_COMPLETED)
                for future in done:
                    step, subject, slot = work.pop(future)
                    try:
                        result = future.result()
                    except AwsCallError as exc:
                        if step == "task_definition":
                            td_failures[subject] = ScanFailure.of("task_definition", subject, exc)
                        elif step == "list":
                            if (
                                self._absent_names_ok
                                and isinstance(exc, ClusterNotFound)
                                and not subject.startswith("arn:")
                            ):
                                log.info("no cluster %s in this region: no services", subject)
                                continue
                            list_failures[subject] = ScanFailure.of("cluster", subject, exc)
                        elif subject not in describe_failures:  # once a cluster
                            describe_failures[subject] = ScanFailure.of("cluster", subject, exc)
                        continue
                    if step == "list":
                        arns = [arn for arn in dict.fromkeys(result) if arn not in listed]
                        listed.update(arns)
                        for start in range(0, len(arns), DESCRIBE_BATCH):
                            batches.append(None)
                            batch = arns[start : start + DESCRIBE_BATCH]
                            submit(
                                "describe",
                                subject,
                                len(batches) - 1,
                                self._describe_services,
                                subject,
                                batch,
                            )
                    elif step == "describe":
                        batches[slot] = result
                        for snapshot in result[0]:
                            for arn in snapshot.task_definitions:
                                if arn not in requested:
                                    requested.add(arn)
                                    submit("task_definition", arn, -1, self._task_definition, arn)
                    else:
                        fetched[subject] = result
        snapshots: list[ServiceSnapshot] = []
        for described in batches:
            if described is not None:
                found, missing, skipped = described
                snapshots.extend(found)
                inventory.missing.extend(missing)
                inventory.skipped.extend(skipped)
        inventory.failures.extend(list_failures[c] for c in clusters if c in list_failures)
        inventory.failures.extend(
            describe_failures[c]
            for c in clusters
            if c in describe_failures and c not in list_failures
        )
        inventory.failures.extend(td_failures[arn] for arn in sorted(td_failures))
        inventory.services = [
            (s, fetched[arn]) for s in snapshots for arn in s.task_definitions if arn in fetched
        ]
        return inventory

    def cluster_arns(self) -> list[str]:
        """The clusters a scan reads: ``clusters`` as given, else every cluster (ListClusters)."""
        if self._clusters:
            return list(self._clusters)
        return distinct_clusters(
            self._all_pages("ListClusters", self._ecs.list_clusters, "clusterArns")
        )

    def describe(self, cluster: str, arns: list[str]) -> Described:
        """One ``DescribeServices`` (at most ``DESCRIBE_BATCH`` services, with tags): the
        services found, those missing, and those of a shape rotor does not expect."""
        return self._describe_services(cluster, arns)

    def task_definition(self, arn: str) -> TaskDefinitionSummary:
        """The summary of one revision: from the cache, else one ``DescribeTaskDefinition``."""
        return self._task_definition(arn)

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def _service_arns(self, cluster: str) -> list[str]:
        return self._all_pages(
            "ListServices", self._ecs.list_services, "serviceArns", cluster=cluster
        )

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
            items.extend(item for item in page.get(key) or [] if isinstance(item, str))
            token = page.get("nextToken")
            if not token:
                return items

    def _describe_services(self, cluster: str, arns: list[str]) -> Described:
        answer = self._retry.call(
            "DescribeServices",
            self._ecs.describe_services,
            cluster=cluster,
            services=arns,
            include=["TAGS"],
        )
        missing = [str(f.get("arn") or "?") for f in answer.get("failures") or []]
        found: list[ServiceSnapshot] = []
        skipped: list[SkippedService] = []
        for service in answer.get("services") or []:
            try:
                snapshot = snapshot_of(service)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                arn = service.get("serviceArn") if isinstance(service, Mapping) else None
                snapshot = SkippedService(str(arn or "?"), f"unexpected shape: {exc!r}")
            if isinstance(snapshot, SkippedService):
                log.warning("skipped service %s: %s", snapshot.arn, snapshot.reason)
                skipped.append(snapshot)
            else:
                found.append(snapshot)
        return found, missing, skipped

    def _task_definition(self, arn: str) -> TaskDefinitionSummary:
        cached = self._cache.get(arn)
        if cached is not None:
            return cached
        answer = self._retry.call(
            "DescribeTaskDefinition", self._ecs.describe_task_definition, taskDefinition=arn
        )
        try:
            summary = summarize_task_definition(answer.get("taskDefinition") or {}, arn)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # Reported like a reference rotor cannot read: a consumer it may miss.
            problem = UnreadableReference(arn, "?", "", f"unexpected task definition: {exc!r}")
            summary = TaskDefinitionSummary(arn, (), (problem,))
        self._cache.put(summary)
        return summary


def distinct_clusters(clusters: Sequence[str]) -> list[str]:
    """Each cluster once, in the order given, whether named by name or by ARN."""
    seen: dict[str, str] = {}
    for cluster in clusters:
        seen.setdefault(cluster_name(cluster), cluster)
    return list(seen.values())


def cluster_name(cluster: str) -> str:
    """``prod`` for ``prod`` and for ``arn:aws:ecs:us-east-1:123456789012:cluster/prod``."""
    return cluster.rsplit("/", 1)[-1] if cluster.startswith("arn:") else cluster
