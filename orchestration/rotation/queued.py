"""One message from the redeploy queue: a redeploy job for the worker, or the rest of a plan."""

from __future__ import annotations

from orchestration.events.classification import Classification, EventKind
from orchestration.fanout import consume
from orchestration.fanout.consume import JobReport
from orchestration.fanout.jobs import PlanJob, RedeployJob
from orchestration.models import ServiceSnapshot, Verdict
from orchestration.outcome import EventOutcome
from orchestration.rotation.indexed import indexed_inventory
from orchestration.rotation.new_value import (
    RotationAdapters,
    RotationRecorder,
    finish,
    plan_inventory,
    plan_to_queue,
    run_inline,
)


def run_job(
    job: RedeployJob | PlanJob,
    runtime: RotationAdapters,
    planned: tuple[ServiceSnapshot, Verdict] | None = None,
    *,
    receive_count: int = 1,
) -> JobReport:
    """Do one queue message, received ``receive_count`` times (more than once: retried after
    a failure, so a redeploy job looks at its service again). A redeploy job takes the path
    the inline jobs take (``orchestration.fanout.consume.run_redeploy_job``); the rest of a
    plan is planned here. AWS errors that stop it propagate (the message comes back later)."""
    if isinstance(job, PlanJob):
        return _plan(job, runtime)
    return consume.run_redeploy_job(job, runtime, planned, receive_count=receive_count)


def _plan(job: PlanJob, runtime: RotationAdapters) -> JobReport:
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
    # A replica's consumers are planned in the replica's region (the state stays the stack's).
    runtime = runtime.in_region(job.secret.region)
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
        inventory = indexed_inventory(job.secret, runtime, outcome, job.clusters)
        if inventory is None:  # no index rotor may trust: scan
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
