"""What one pass of the reconciler did: typed records; dicts only in ``to_dict``, sorted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestration.outcome import Failure
from orchestration.times import iso, iso_or_none


class Action(StrEnum):
    """What the pass did about one consumer."""

    FRESH = "fresh"  # deployed after the value became current: holds it
    SKIPPED = "skipped"  # nothing to do (pinned, opted out, desired count 0, the ledger…)
    QUEUED = "queued"  # stale: a redeploy job is on the queue (healed)
    #: stale, but a job for this value was queued or ran before (the reconciler's or the
    #: event path's): queued again, not counted again
    REQUEUED = "queued again"
    #: stale, notify-only (tag rotor:redeploy=notify): reported, never redeployed (not healed)
    NOTIFY = "notify"
    REDEPLOYED = "redeployed"  # stale: redeployed inline (healed)
    DEFERRED = "deferred"  # stale: its cluster is at its cap
    MANUAL = "manual"  # stale, on CODE_DEPLOY/EXTERNAL: people must redeploy
    FAILED = "failed"
    WOULD_QUEUE = "would queue"  # dry run
    WOULD_REDEPLOY = "would redeploy"  # dry run
    WOULD_REQUEUE = "would queue again"  # dry run: see REQUEUED

    @property
    def healed(self) -> bool:
        return self in (Action.QUEUED, Action.REDEPLOYED)


@dataclass
class ConsumerResult:
    service_arn: str
    cluster_arn: str
    deployed_at: datetime | None  # the PRIMARY deployment's creation
    stale: bool
    decided_by: str  # an ``Evidence`` value, or "" when time did not decide (pinned…)
    action: Action
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service_arn,
            "cluster": self.cluster_arn,
            "deployed_at": iso_or_none(self.deployed_at),
            "stale": self.stale,
            "decided_by": self.decided_by,
            "action": self.action.value,
            "reason": self.reason,
        }


@dataclass
class SecretResult:
    secret_arn: str
    version: str | None = None
    created_at: datetime | None = None  # the current version's CreatedDate
    became_current_at: datetime | None = None  # the moment judged by
    evidence: str = ""
    evidence_detail: str = ""
    #: Why rotor did not act on this secret (cannot describe it, pending deletion…).
    problem: str | None = None
    consumers: list[ConsumerResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "secret": self.secret_arn,
            "version": self.version,
            "created_at": iso_or_none(self.created_at),
            "became_current_at": (
                self.became_current_at.isoformat().replace("+00:00", "Z")
                if self.became_current_at
                else None
            ),
            "evidence": self.evidence,
            "evidence_detail": self.evidence_detail,
            "consumers": [
                c.to_dict()
                for c in sorted(self.consumers, key=lambda c: (c.cluster_arn, c.service_arn))
            ],
        }
        if self.problem:
            data["problem"] = self.problem
        return data


@dataclass
class ReconcileReport:
    started_at: datetime
    dry_run: bool = False
    only_secret: str | None = None  # ``--secret``: the one secret reconciled
    services_scanned: int = 0
    index: str = ""  # what happened to the consumer index
    secrets: list[SecretResult] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def count(self, metric: str, value: float = 1) -> None:
        self.metrics[metric] = self.metrics.get(metric, 0) + value

    @property
    def ok(self) -> bool:
        return not self.failed

    def consumers(self, action: Action) -> list[ConsumerResult]:
        return [c for s in self.secrets for c in s.consumers if c.action is action]

    @property
    def healed(self) -> list[ConsumerResult]:
        return [c for s in self.secrets for c in s.consumers if c.action.healed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": iso(self.started_at),
            "dry_run": self.dry_run,
            "secret": self.only_secret,
            "services_scanned": self.services_scanned,
            "index": self.index,
            "healed": len(self.healed),
            "secrets": [s.to_dict() for s in sorted(self.secrets, key=lambda s: s.secret_arn)],
            "failed": sorted(
                (f.to_dict() for f in self.failed), key=lambda f: sorted(f.items()).__repr__()
            ),
            "notes": sorted(self.notes),
            ("would_metrics" if self.dry_run else "metrics"): dict(sorted(self.metrics.items())),
        }
