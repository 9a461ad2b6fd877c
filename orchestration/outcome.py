"""What processing one event did: the same shape for the Lambda, ``rotor replay`` and tests.

Typed records all the way; ``to_dict`` is the edge (the JSON output and the handler's logs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestration.events.classification import Classification
from orchestration.notifications import Notification

if TYPE_CHECKING:
    from orchestration.ecs.discovery import Inventory

# Metric names (CloudWatch, embedded metric format). Handlers emit them; alarms watch them.
CONSUMERS_FOUND = "ConsumersFound"
REDEPLOYS_STARTED = "RedeploysStarted"
REDEPLOYS_SKIPPED = "RedeploysSkipped"
REDEPLOY_FAILURES = "RedeployFailures"
PENDING_DELETION_ACCESS = "PendingDeletionAccess"
DELETED_SECRET_STILL_REFERENCED = "DeletedSecretStillReferenced"
ROTATION_FAILURES = "RotationFailures"
NOTIFICATIONS_SENT = "NotificationsSent"
NOTIFICATIONS_SUPPRESSED = "NotificationsSuppressed"
SECRETS_RESTORED = "SecretsRestored"
INVALID_EVENTS = "InvalidEvents"
UNREADABLE_REFERENCES = "UnreadableReferences"  # valueFrom rotor cannot parse: may miss a consumer
PROCESSING_ERRORS = "ProcessingErrors"  # an error stopped an event; Lambda retries it
UNTRUSTED_EVENTS = "UntrustedEvents"  # from an account neither ours nor ROTOR_TRUSTED_ACCOUNTS
MANUAL_REDEPLOYS = "ManualRedeploysNeeded"  # stale CODE_DEPLOY/EXTERNAL services: people must act
DISCOVERY_FAILURES = "DiscoveryFailures"  # a cluster or task definition rotor could not read
REDEPLOYS_QUEUED = "RedeploysQueued"  # jobs sent to the redeploy queue
REDEPLOYS_DEFERRED = "RedeploysDeferred"  # a job put back: throttled or its cluster at its cap
REDEPLOY_FLAPPING = "RedeployFlapping"  # skipped: too many forced deployments in the last hour
STALE_SERVICES_NOTIFIED = "StaleServicesNotified"  # tag rotor:redeploy=notify: reported only
REDEPLOY_ROLLED_BACK = "RedeployRolledBack"  # rotor's deployment failed (circuit breaker)
#: a replica whose replication failed (or never caught up): its consumers keep the old value
REPLICATION_FAILURES = "ReplicationFailures"
#: a replica in a region outside ROTOR_REGIONS: reported, its consumers not looked at
REPLICA_REGIONS_SKIPPED = "ReplicaRegionsSkipped"
TIME_TO_FRESH = "TimeToFresh"  # seconds from the new value to rotor's deployment completing
#: stale consumers the reconciler queued or redeployed: the events rotor lost
HEALED_BY_RECONCILER = "HealedByReconciler"
#: Units other than Count.
METRIC_UNITS = {TIME_TO_FRESH: "Seconds"}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A consumer rotor did not redeploy, and why (pinned, fresh, opted out...)."""

    service: str  # service ARN
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Failure:
    """Something that failed while processing the event: a redeploy, or a part of the scan."""

    subject: str  # the service ARN, cluster or task definition ARN (see ``scope``)
    error: str
    retryable: bool  # a later retry of the event may succeed
    scope: str = "service"  # "service", "cluster", "task_definition", "secret" or "index"

    def to_dict(self) -> dict[str, Any]:
        return {self.scope: self.subject, "error": self.error, "retryable": self.retryable}


@dataclass(frozen=True, slots=True)
class ManualRedeploy:
    """A stale consumer rotor cannot redeploy (its deployment controller refuses): people must."""

    service: str  # service ARN
    controller: str  # CODE_DEPLOY or EXTERNAL
    reason: str
    command: str  # what to run

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "deployment_controller": self.controller,
            "reason": self.reason,
            "command": self.command,
        }


class ScanReport(Protocol):
    """Where what a scan could not see is written: an event's outcome, a reconciler's pass."""

    failed: list[Failure]
    notes: list[str]

    def count(self, metric: str, value: float = 1) -> None: ...


def report_scan_problems(inventory: Inventory, report: ScanReport) -> None:
    """What the scan could not see: parts it could not read (failures, retryable or not,
    counted as ``DiscoveryFailures``), references it could not parse, and services of a shape
    it does not expect."""
    for failure in inventory.failures:
        report.failed.append(
            Failure(failure.subject, failure.error, failure.retryable, failure.scope)
        )
        report.notes.append(failure.describe())
    if inventory.failures:
        report.count(DISCOVERY_FAILURES, len(inventory.failures))
    for bad in inventory.unreadable:
        report.notes.append(
            f"unreadable reference in {bad.task_definition} container {bad.container}: {bad.error}"
        )
    for skipped in inventory.skipped:
        report.notes.append(f"service {skipped.arn} not scanned: {skipped.reason}")


@dataclass
class EventOutcome:
    classification: Classification
    secret: str | None = None
    consumers: list[dict[str, Any]] = field(default_factory=list)
    redeployed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    #: Stale services whose cluster is at its cap (ROTOR_MAX_ROLLOUTS_PER_CLUSTER): not a
    #: failure; they are redeployed when the event is handled again after rollouts finish.
    deferred: list[Skipped] = field(default_factory=list)
    manual: list[ManualRedeploy] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # services that vanished mid-scan
    queued: list[str] = field(default_factory=list)  # services with a job on the redeploy queue
    notifications: list[Notification] = field(default_factory=list)
    notifications_suppressed: int = 0
    restored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def count(self, metric: str, value: float = 1) -> None:
        self.metrics[metric] = self.metrics.get(metric, 0) + value

    def report_scan(self, inventory: Inventory) -> None:
        """What the scan could not see: parts it could not read (failures, retryable or not),
        references it could not parse, services of a shape it does not expect, and services
        that vanished while it ran."""
        report_scan_problems(inventory, self)
        if inventory.unreadable:
            self.count(UNREADABLE_REFERENCES, len(inventory.unreadable))
        self.missing.extend(inventory.missing)
        for arn in inventory.missing:
            self.notes.append(f"service {arn} vanished during the scan (DescribeServices: MISSING)")

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def retryable_failures(self) -> list[Failure]:
        """Failures a later retry of the event may fix, and services waiting for their
        cluster's cap: the event should be retried."""
        return [f for f in self.failed if f.retryable] + [
            Failure(d.service, d.reason, retryable=True) for d in self.deferred
        ]

    def to_dict(self) -> dict[str, Any]:
        c = self.classification
        return {
            "kind": c.kind.value,
            "secret": self.secret or c.secret,
            "event_id": c.event_id,
            "reason": c.reason,
            "redeployed": self.redeployed,
            "skipped": [s.to_dict() for s in self.skipped],
            "failed": [f.to_dict() for f in self.failed],
            "deferred": [d.to_dict() for d in self.deferred],
            "queued": self.queued,
            "manual": [m.to_dict() for m in self.manual],
            "missing": self.missing,
            "consumers": self.consumers,
            "notifications": [n.to_dict() for n in self.notifications],
            "notifications_suppressed": self.notifications_suppressed,
            "restored": self.restored,
            "notes": self.notes,
            "metrics": self.metrics,
        }
