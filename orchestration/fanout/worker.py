"""Carry out one redeploy job: look at the service again, apply the policies, redeploy once.

The same code runs in the worker Lambda (one job per SQS message) and inline (``rotor replay``,
the demo, a stack without a queue), where the planner hands over the snapshot it has just read
instead of the worker describing the service again.

In order, for the job's service:

1. the freshness rule on the service as it is now (a debounced job may find it fresh);
2. notify-only (tag ``rotor:redeploy=notify``): a notification names the stale service;
3. the flap guard (``ROTOR_MAX_REDEPLOYS_PER_HOUR``): past it, skip, count, notify;
4. the per-cluster cap (``ROTOR_MAX_ROLLOUTS_PER_CLUSTER``): at it, the job is deferred;
5. the ledger claim and ``UpdateService`` (``orchestration.ecs.redeploy``).

Each step records the consumer's status in the rollout store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from orchestration.ecs.shapes import snapshot_of
from orchestration.fanout import notices
from orchestration.fanout.jobs import RedeployJob
from orchestration.models import (
    Action,
    Consumer,
    Outcome,
    ServiceSnapshot,
    TaskDefinitionSummary,
    Verdict,
)
from orchestration.notifications import Notification
from orchestration.outcome import (
    REDEPLOY_FLAPPING,
    REDEPLOYS_DEFERRED,
    STALE_SERVICES_NOTIFIED,
)
from orchestration.rotation.freshness import OPT_TAG, decide
from orchestration.tracking.store import DeploymentRecord, ServiceStatus, Status

if TYPE_CHECKING:
    from orchestration.runtime import Runtime

log = logging.getLogger(__name__)

FLAP_WINDOW = timedelta(hours=1)
NOTIFY_ONLY_VALUE = "notify"


class JobStatus(StrEnum):
    REDEPLOYED = "redeployed"
    SKIPPED = "skipped"
    NOTIFIED = "notified"  # notify-only: the stale service was reported, not redeployed
    FAILED = "failed"
    DEFERRED = "deferred"  # try again later: its cluster is at its cap


@dataclass
class JobResult:
    job: RedeployJob
    status: JobStatus
    reason: str = ""
    retryable: bool = False
    deployment_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)

    @property
    def service_arn(self) -> str:
        return self.job.service_arn

    def count(self, metric: str, value: float = 1) -> None:
        self.metrics[metric] = self.metrics.get(metric, 0) + value


def notify_only(service: ServiceSnapshot) -> bool:
    return service.tags.get(OPT_TAG, "").strip().lower() == NOTIFY_ONLY_VALUE


def decide_with_policies(consumer: Consumer, rotated_at: datetime, *, opt_in: bool) -> Verdict:
    """The freshness rule; a notify-only service counts as opted in (it is only reported)."""
    return decide(consumer, rotated_at, opt_in=opt_in and not notify_only(consumer.service))


class RedeployWorker:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._store = runtime.rollouts
        self._settings = runtime.settings

    def run(self, job: RedeployJob, snapshot: ServiceSnapshot | None = None) -> JobResult:
        """Do the job. AWS errors reading the service propagate (the job is retried)."""
        if snapshot is None:
            snapshot = self._describe(job)
            if snapshot is None:
                return self._finish(job, JobStatus.SKIPPED, "the service no longer exists")
        refs = tuple(r.reference() for r in job.references)
        task_definitions = tuple(
            TaskDefinitionSummary(arn, refs) for arn in snapshot.task_definitions
        )
        consumer = Consumer(snapshot, task_definitions, refs)
        verdict = decide_with_policies(consumer, job.rotated_at, opt_in=self._settings.opt_in)
        if verdict.action is Action.SKIP:
            return self._finish(job, JobStatus.SKIPPED, verdict.reason)
        if verdict.action is Action.MANUAL:  # its controller changed since the plan
            return self._finish(job, JobStatus.SKIPPED, f"by hand: {verdict.reason}")
        if notify_only(snapshot):
            return self._notify_only(job, verdict)
        now = datetime.now(UTC)
        flap_limit = self._settings.max_redeploys_per_hour
        if flap_limit and not self._store.take_redeploy_slot(
            job.service_arn, now, flap_limit, FLAP_WINDOW
        ):
            return self._flapping(job, flap_limit)
        cap = self._settings.max_rollouts_per_cluster
        if cap and not self._store.take_rollout_slot(job.cluster_arn, job.service_arn, now, cap):
            if flap_limit:
                self._store.give_back_redeploy_slot(job.service_arn, now)
            result = self._finish(
                job,
                JobStatus.DEFERRED,
                f"cluster {snapshot.cluster_name} has {cap} rollouts under way "
                "(ROTOR_MAX_ROLLOUTS_PER_CLUSTER); waiting",
                retryable=True,
                status=Status.QUEUED,
            )
            result.count(REDEPLOYS_DEFERRED)
            return result
        [done] = self._runtime.redeployer().redeploy([verdict], job.rotated_at, job.new_value())
        if done.outcome is not Outcome.REDEPLOYED:
            if flap_limit:
                self._store.give_back_redeploy_slot(job.service_arn, now)
            if cap:
                self._store.free_rollout_slot(job.cluster_arn, job.service_arn)
        if done.outcome is Outcome.REDEPLOYED:
            if done.deployment_id:
                self._store.record_deployment(
                    DeploymentRecord(
                        done.deployment_id,
                        job.rotation_id,
                        job.service_arn,
                        job.cluster_arn,
                        job.rotated_at,
                    )
                )
            return self._finish(
                job,
                JobStatus.REDEPLOYED,
                f"deployment {done.deployment_id or '?'} started",
                deployment_id=done.deployment_id,
                status=Status.DEPLOYING,
            )
        if done.outcome is Outcome.ALREADY_FRESH:
            return self._finish(job, JobStatus.SKIPPED, done.reason or "already fresh")
        return self._finish(
            job,
            JobStatus.FAILED,
            done.error or "?",
            retryable=done.retryable,
            status=Status.QUEUED if done.retryable else Status.FAILED,
        )

    def _describe(self, job: RedeployJob) -> ServiceSnapshot | None:
        ecs = self._runtime.clients.ecs
        answer = self._runtime.retry.call(
            "DescribeServices",
            ecs.describe_services,
            cluster=job.cluster_arn,
            services=[job.service_arn],
            include=["TAGS"],
        )
        services = answer.get("services") or []
        found = snapshot_of(services[0]) if services else None
        return found if isinstance(found, ServiceSnapshot) else None

    def _notify_only(self, job: RedeployJob, verdict: Verdict) -> JobResult:
        return self._reported(
            job,
            notices.stale_service(job.secret_arn, job.service_arn, job.rotated_at, verdict.reason),
            JobStatus.NOTIFIED,
            f"notify-only (tag {OPT_TAG}={NOTIFY_ONLY_VALUE}): stale, reported, not redeployed",
            STALE_SERVICES_NOTIFIED,
        )

    def _flapping(self, job: RedeployJob, limit: int) -> JobResult:
        return self._reported(
            job,
            notices.flapping(job.secret_arn, job.service_arn, job.rotated_at, limit),
            JobStatus.SKIPPED,
            f"flapping: {limit} forced deployments in the last hour (ROTOR_MAX_REDEPLOYS_PER_HOUR)",
            REDEPLOY_FLAPPING,
        )

    def _reported(
        self,
        job: RedeployJob,
        notification: Notification,
        outcome: JobStatus,
        detail: str,
        metric: str,
    ) -> JobResult:
        """Publish ``notification`` about a job rotor does not redeploy, and finish the job."""
        self._runtime.notifier.publish(notification)
        result = self._finish(job, outcome, detail)
        result.notifications.append(notification)
        result.count(metric)
        return result

    def _finish(
        self,
        job: RedeployJob,
        outcome: JobStatus,
        reason: str,
        *,
        retryable: bool = False,
        deployment_id: str | None = None,
        status: Status = Status.SKIPPED,
    ) -> JobResult:
        log.info("job %s: %s (%s)", job.service_arn, outcome.value, reason)
        self._store.set_status(
            job.rotation_id,
            job.service_arn,
            ServiceStatus(
                status, reason, datetime.now(UTC), job.cluster_arn, deployment_id=deployment_id
            ),
        )
        return JobResult(job, outcome, reason, retryable=retryable, deployment_id=deployment_id)
