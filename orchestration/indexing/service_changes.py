"""An ECS service was created, deleted, or may run other task definitions: update the index.

The CloudTrail events of ``CreateService``, ``UpdateService`` (with a task definition),
``DeleteService``, ``CreateTaskSet``, ``UpdateServicePrimaryTaskSet`` and ``DeleteTaskSet``
(``EventKind.SERVICE_CHANGED`` / ``SERVICE_DELETED``). The service is described (one
``DescribeServices``): what it runs now, every task set included, is what ECS says, not what the
event's request asked for. Its task definitions are read through the task-definition cache (a
known revision costs no ECS call), and the service is recorded under the secrets they reference
(``ConsumerIndex.record_service``). A deleted service is described too, and forgotten only if
ECS says it is gone (unknown, DRAINING or INACTIVE): a service created again under the same name
has the same ARN, and EventBridge neither orders events nor delivers them once, so a
DeleteService event may be handled after the CreateService of the service that replaced it.
Without a state table there is no index, and nothing is called; a service of a cluster outside
``ROTOR_CLUSTERS`` (ClusterNames) is not rotor's, and is neither described nor indexed.

AWS errors propagate: the event is retried (then dead-lettered), since until the next rebuild
it is the index's only word about the change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from orchestration.ecs.discovery import cluster_name
from orchestration.ecs.indexed import GONE, describe_one, summaries_of
from orchestration.events.classification import Classification
from orchestration.outcome import EventOutcome
from orchestration.ports import Adapters

log = logging.getLogger(__name__)


def handle_service_change(event: Classification, runtime: Adapters) -> EventOutcome:
    outcome = EventOutcome(event)
    index = runtime.consumer_index
    service = event.service_arn or ""
    if index is None:
        outcome.notes.append("no consumer index (ROTOR_STATE_TABLE is not set): nothing to record")
        return outcome
    cluster = event.cluster or "default"
    scope = {cluster_name(c) for c in runtime.settings.clusters}
    if scope and cluster_name(cluster) not in scope:
        # Not rotor's: a scan never reads it, and the IAM policy denies describing it.
        outcome.notes.append(f"cluster {cluster} is outside ROTOR_CLUSTERS: not indexed")
        return outcome
    discovery = runtime.discovery()
    seen_at = datetime.now(UTC)  # before the describe: what it shows is at least this recent
    found, missing, skipped = describe_one(discovery, cluster, service)
    for arn in missing:
        index.forget_service(arn, deleted_at=seen_at)
        outcome.notes.append(f"service {arn} does not exist (any more): forgotten")
    for bad in skipped:
        outcome.notes.append(f"service {bad.arn} not indexed: {bad.reason}")
    for snapshot in found:
        if snapshot.status in GONE:
            index.forget_service(snapshot.arn, deleted_at=seen_at)
            outcome.notes.append(f"service {snapshot.arn} deleted: forgotten by the consumer index")
            continue
        summaries = summaries_of(discovery, snapshot)
        index.record_service(snapshot.arn, snapshot.cluster_arn, summaries, observed_at=seen_at)
        references = {ref.raw for td in summaries for _, ref in td.references}
        running = ", ".join(snapshot.task_definitions) or "no task definition"
        outcome.notes.append(
            f"service {snapshot.arn} indexed on {running} ({len(references)} reference(s))"
        )
        log.info(
            "indexed %s: %d task definition(s), %d reference(s)",
            snapshot.arn,
            len(summaries),
            len(references),
        )
    return outcome
