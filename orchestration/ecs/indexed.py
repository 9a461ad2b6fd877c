"""ECS reads the consumer index needs: its candidates described at rotation time, and one service
described when an ECS event says it changed.

At rotation time, with a usable index, only the candidate services are read: ``DescribeServices``
ten at a time, per cluster, with tags (``describe_candidates``). Their task definitions come from
the task-definition cache (stored summaries: a known revision costs no ECS call). What ECS says
now is what counts, so the result is an ``Inventory`` exactly like a scan's, and the rotation
plans on it unchanged: a candidate that no longer references the secret is no consumer. A
candidate found running other task definitions than indexed is re-indexed alone (its own
``record_service``); one ECS no longer knows, or shows DRAINING or INACTIVE (deleted), is
forgotten.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestration.ecs.discovery import (
    DESCRIBE_BATCH,
    ConsumerDiscovery,
    Described,
    Inventory,
    ScanFailure,
    cluster_name,
)
from orchestration.errors import AwsCallError
from orchestration.models import ServiceSnapshot, TaskDefinitionSummary
from orchestration.state.consumer_index import ConsumerIndex, IndexedCandidates, IndexedService

log = logging.getLogger(__name__)

INACTIVE = "INACTIVE"  # a deleted service, as DescribeServices shows it for a while
#: Deleted, its tasks still stopping: never runs again, and ListServices no longer lists it
DRAINING = "DRAINING"
GONE = frozenset({INACTIVE, DRAINING})


@dataclass
class IndexedRead:
    """What describing the candidates found: the inventory to plan on, and what changed in the
    index on the way."""

    inventory: Inventory
    described: int = 0  # candidates asked about
    calls: int = 0  # DescribeServices calls
    rescanned: list[str] = field(default_factory=list)  # re-indexed: other task definitions
    forgotten: list[str] = field(default_factory=list)  # gone from ECS


def describe_candidates(
    candidates: IndexedCandidates,
    discovery: ConsumerDiscovery,
    index: ConsumerIndex,
    clusters: Sequence[str] | None = None,
) -> IndexedRead:
    """Describe the candidates (of ``clusters`` only, when given: a plan's part) and read their
    task definitions; keep the index in step with what ECS says."""
    wanted = {cluster_name(c) for c in clusters} if clusters is not None else None
    batches: list[tuple[str, list[IndexedService]]] = []
    for cluster, services in candidates.by_cluster().items():
        if wanted is not None and cluster_name(cluster) not in wanted:
            continue
        for start in range(0, len(services), DESCRIBE_BATCH):
            batches.append((cluster, services[start : start + DESCRIBE_BATCH]))
    read = IndexedRead(Inventory())
    if not batches:
        return read
    seen_at = datetime.now(UTC)  # before the describes: what they show is at least this recent
    workers = max(1, min(discovery.max_workers, len(batches)))
    with ThreadPoolExecutor(workers, thread_name_prefix="rotor-indexed") as pool:
        answers = list(pool.map(lambda b: _describe(discovery, *b), batches))
    failed_clusters: set[str] = set()
    for (cluster, batch), answer in zip(batches, answers, strict=True):
        read.described += len(batch)
        read.calls += 1
        if isinstance(answer, AwsCallError):
            if cluster not in failed_clusters:
                failed_clusters.add(cluster)
                read.inventory.failures.append(ScanFailure.of("cluster", cluster, answer))
            continue
        found, missing, skipped = answer
        read.inventory.skipped.extend(skipped)
        indexed = {s.service_arn: s for s in batch}
        for arn in missing:
            _forget(index, arn, read, seen_at)
        for snapshot in found:
            if snapshot.status in GONE:
                _forget(index, snapshot.arn, read, seen_at)
                continue
            summaries = _summaries(discovery, snapshot, read.inventory)
            if summaries is None:
                continue
            read.inventory.services.extend((snapshot, td) for td in summaries)
            known = indexed.get(snapshot.arn)
            indexing = snapshot.indexed_task_definitions
            if known is None or set(known.task_definitions) != set(indexing):
                read.rescanned.append(snapshot.arn)
                replaced = [a for a in indexing if a not in snapshot.task_definitions]
                try:
                    summaries += [discovery.task_definition(arn) for arn in replaced]
                    index.record_service(
                        snapshot.arn, snapshot.cluster_arn, summaries, observed_at=seen_at
                    )
                except AwsCallError as exc:  # the rotation goes on: the reconciler heals it
                    log.warning("could not re-index %s: %s", snapshot.arn, exc)
    return read


def describe_one(discovery: ConsumerDiscovery, cluster: str, service: str) -> Described:
    """One service, by ARN or name, in its cluster (one ``DescribeServices``)."""
    return discovery.describe(cluster, [service])


def summaries_of(
    discovery: ConsumerDiscovery, snapshot: ServiceSnapshot
) -> list[TaskDefinitionSummary]:
    """The summaries of every task definition the index keeps the service under: those it
    runs, and those a deployment in progress replaces (cache first). AWS errors propagate."""
    return [discovery.task_definition(arn) for arn in snapshot.indexed_task_definitions]


def _describe(
    discovery: ConsumerDiscovery, cluster: str, batch: list[IndexedService]
) -> Described | AwsCallError:
    try:
        return discovery.describe(cluster, [s.service_arn for s in batch])
    except AwsCallError as exc:
        return exc


def _summaries(
    discovery: ConsumerDiscovery, snapshot: ServiceSnapshot, inventory: Inventory
) -> list[TaskDefinitionSummary] | None:
    """The service's summaries; None (recorded as a failure) when one cannot be read: the
    service is then neither planned nor re-indexed on a partial view."""
    found = []
    for arn in snapshot.task_definitions:
        try:
            found.append(discovery.task_definition(arn))
        except AwsCallError as exc:
            if not any(f.subject == arn for f in inventory.failures):
                inventory.failures.append(ScanFailure.of("task_definition", arn, exc))
            return None
    return found


def _forget(index: ConsumerIndex, service_arn: str, read: IndexedRead, seen_at: datetime) -> None:
    log.info("indexed service %s is gone: forgotten", service_arn)
    read.forgotten.append(service_arn)
    try:
        index.forget_service(service_arn, deleted_at=seen_at)
    except AwsCallError as exc:
        log.warning("could not forget %s in the index: %s", service_arn, exc)


def index_records(inventory: Inventory) -> list[tuple[str, str, list[TaskDefinitionSummary]]]:
    """A scan's services as ``ConsumerIndex.rebuild`` takes them: (service ARN, cluster ARN,
    task definitions). Only a complete scan may rebuild (no ``inventory.failures``): a service
    whose task definition could not be read is absent here, and a rebuild forgets it."""
    by_service: dict[str, tuple[str, list[TaskDefinitionSummary]]] = {}
    for snapshot, task_definition in inventory.services:
        by_service.setdefault(snapshot.arn, (snapshot.cluster_arn, []))[1].append(task_definition)
    return [(arn, cluster, tds) for arn, (cluster, tds) in by_service.items()]
