"""What processing one event did: the same shape for the Lambda, ``rotor replay`` and tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestration.events.classification import Classification
from orchestration.notifications import Notification

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
PROCESSING_ERRORS = "ProcessingErrors"  # an AWS error stopped an event; Lambda retries it
REDEPLOYS_QUEUED = "RedeploysQueued"  # jobs sent to the redeploy queue
REDEPLOYS_DEFERRED = "RedeploysDeferred"  # a job put back: throttled or its cluster at its cap
REDEPLOY_FLAPPING = "RedeployFlapping"  # skipped: too many forced deployments in the last hour
STALE_SERVICES_NOTIFIED = "StaleServicesNotified"  # tag rotor:redeploy=notify: reported only
REDEPLOY_ROLLED_BACK = "RedeployRolledBack"  # rotor's deployment failed (circuit breaker)
TIME_TO_FRESH = "TimeToFresh"  # seconds from the new value to rotor's deployment completing
#: Units other than Count.
METRIC_UNITS = {TIME_TO_FRESH: "Seconds"}
UNTRUSTED_EVENTS = "UntrustedEvents"  # from an account neither ours nor ROTOR_TRUSTED_ACCOUNTS


@dataclass
class EventOutcome:
    classification: Classification
    secret: str | None = None
    consumers: list[dict[str, Any]] = field(default_factory=list)
    redeployed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # service, error, retryable
    queued: list[str] = field(default_factory=list)  # services with a job on the redeploy queue
    notifications: list[Notification] = field(default_factory=list)
    notifications_suppressed: int = 0
    restored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def count(self, metric: str, value: float = 1) -> None:
        self.metrics[metric] = self.metrics.get(metric, 0) + value

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        c = self.classification
        return {
            "kind": c.kind.value,
            "secret": self.secret or c.secret,
            "event_id": c.event_id,
            "reason": c.reason,
            "redeployed": self.redeployed,
            "skipped": self.skipped,
            "failed": self.failed,
            "queued": self.queued,
            "consumers": self.consumers,
            "notifications": [n.to_dict() for n in self.notifications],
            "notifications_suppressed": self.notifications_suppressed,
            "restored": self.restored,
            "notes": self.notes,
            "metrics": self.metrics,
        }
