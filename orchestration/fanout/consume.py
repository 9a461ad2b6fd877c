"""One message from the redeploy queue: a redeploy job for the worker, or the rest of a plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestration.fanout.jobs import PlanJob, RedeployJob
from orchestration.fanout.worker import JobResult, JobStatus, RedeployWorker
from orchestration.models import ServiceSnapshot, Verdict
from orchestration.outcome import (
    REDEPLOY_FAILURES,
    REDEPLOYS_DEFERRED,
    REDEPLOYS_SKIPPED,
    REDEPLOYS_STARTED,
)
from orchestration.runtime import Runtime


@dataclass
class JobReport:
    """What one message did: for the worker's logs and metrics, and whether to try again."""

    status: str
    retryable: bool = False
    deferred: bool = False  # a redeploy job waiting for its cluster's cap: send it again later
    metrics: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    result: JobResult | None = None  # a redeploy job's own result (None: a plan job)


def run_job(
    job: RedeployJob | PlanJob,
    runtime: Runtime,
    planned: tuple[ServiceSnapshot, Verdict] | None = None,
) -> JobReport:
    """Do one job: the worker's path, and the inline path's (no queue), which hands over the
    snapshot the planner has just read and its verdict (``planned``). AWS errors that stop
    it propagate (the message comes back later)."""
    if isinstance(job, PlanJob):
        return _plan(job, runtime)
    snapshot, verdict = planned if planned is not None else (None, None)
    result = RedeployWorker(runtime).run(job, snapshot, verdict)
    metrics = dict(result.metrics)
    counted = {
        JobStatus.REDEPLOYED: REDEPLOYS_STARTED,
        JobStatus.SKIPPED: REDEPLOYS_SKIPPED,
        JobStatus.NOTIFIED: REDEPLOYS_SKIPPED,
    }.get(result.status)
    if counted:
        metrics[counted] = metrics.get(counted, 0) + 1
    if result.status is JobStatus.FAILED:
        counted = REDEPLOYS_DEFERRED if result.retryable else REDEPLOY_FAILURES
        metrics[counted] = metrics.get(counted, 0) + 1
    return JobReport(
        result.status.value,
        result=result,
        retryable=result.retryable,
        deferred=result.status is JobStatus.DEFERRED,
        metrics=metrics,
        detail={
            "service_arn": job.service_arn,
            "rotation": job.rotation_id,
            "reason": result.reason,
            "deployment": result.deployment_id,
        },
    )


def _plan(job: PlanJob, runtime: Runtime) -> JobReport:
    # Imported here: the rotation use case imports this package's worker.
    from orchestration.events.classification import Classification, EventKind
    from orchestration.outcome import EventOutcome
    from orchestration.rotation.new_value import (
        RotationRecorder,
        finish,
        plan_inventory,
        plan_to_queue,
        run_inline,
    )

    outcome = EventOutcome(
        Classification(
            kind=EventKind.ROTATION,
            reason="the rest of a plan",
            event_id=job.event_id,
            event_time=job.rotated_at,
            account=job.secret.account,
            region=job.secret.region,
            source="rotor",
            detail_type="PlanJob",
            secret=job.secret_arn,
        )
    )
    rotation = RotationRecorder.of(runtime, job)
    if runtime.queue is not None:
        plan_to_queue(
            job.secret,
            rotation,
            job.clusters,
            runtime,
            runtime.queue,
            outcome,
            hand_on_errors=False,  # this message comes back: maxReceiveCount applies
        )
    else:
        inventory = runtime.discovery().scan()
        planned = plan_inventory(inventory, job.secret, rotation, runtime, outcome)
        run_inline(planned, runtime, outcome)
    # The handler told its own part's manual redeploys under the value's key: this part's
    # services get a notice of their own (under the same key it would always be suppressed).
    finish(outcome.classification, job, runtime, outcome, part=job.key)
    return JobReport(
        "planned",
        retryable=bool(outcome.retryable_failures),
        metrics=dict(outcome.metrics),
        detail={
            "rotation": job.rotation_id,
            "queued": outcome.queued,
            "skipped": len(outcome.skipped),
            "notes": outcome.notes,
        },
    )
