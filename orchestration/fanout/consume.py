"""One redeploy job, from the redeploy queue or the inline path, and its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestration.fanout.jobs import RedeployJob
from orchestration.fanout.worker import JobResult, JobStatus, RedeployWorker
from orchestration.models import ServiceSnapshot, Verdict
from orchestration.outcome import (
    REDEPLOY_FAILURES,
    REDEPLOYS_DEFERRED,
    REDEPLOYS_SKIPPED,
    REDEPLOYS_STARTED,
)
from orchestration.ports import Adapters


@dataclass
class JobReport:
    """What one message did: for the worker's logs and metrics, and whether to try again."""

    status: str
    retryable: bool = False
    deferred: bool = False  # waiting (its cluster's cap, its replica): send it again later
    metrics: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    result: JobResult | None = None  # a redeploy job's own result (None: a plan job)


def run_redeploy_job(
    job: RedeployJob,
    runtime: Adapters,
    planned: tuple[ServiceSnapshot, Verdict] | None = None,
    *,
    receive_count: int = 1,
) -> JobReport:
    """Do one redeploy job: the worker's path (``orchestration.rotation.queued.run_job``; the
    message received ``receive_count`` times), and the inline path's (no queue), which hands
    over the snapshot the planner has just read and its verdict (``planned``). AWS errors that
    stop it propagate (the message comes back later)."""
    snapshot, verdict = planned if planned is not None else (None, None)
    result = RedeployWorker(runtime).run(job, snapshot, verdict, receive_count=receive_count)
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
