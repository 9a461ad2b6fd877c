"""Rotation → redeploy: after a secret gets a new current value, redeploy each stale consumer once.

classify (events) → resolve the secret (secret_lookup) → discover consumers (discovery)
→ decide per consumer (freshness) → one job per stale consumer → the worker
(``orchestration.fanout.worker``): UpdateService(forceNewDeployment) (redeploy).

With a redeploy queue (``ROTOR_REDEPLOY_QUEUE_URL``) the jobs are enqueued and a worker Lambda
carries them out; without one they run here, inline. Each rotation and each consumer's status
is recorded in the rollout store (``orchestration.state.rollouts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestration.ecs.discovery import Inventory
from orchestration.errors import AwsCallError, OutOfTime, RetryableAwsError
from orchestration.events.classification import Classification
from orchestration.fanout import consume
from orchestration.fanout.jobs import JobReference, PlanJob, RedeployJob, Rotation
from orchestration.fanout.queue import JobQueue
from orchestration.fanout.worker import JobResult, JobStatus, decide_with_policies
from orchestration.models import Action, ServiceSnapshot, Verdict
from orchestration.outcome import (
    CONSUMERS_FOUND,
    MANUAL_REDEPLOYS,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_SUPPRESSED,
    REDEPLOY_FAILURES,
    REDEPLOYS_QUEUED,
    REDEPLOYS_SKIPPED,
    REDEPLOYS_STARTED,
    EventOutcome,
    Failure,
    Skipped,
)
from orchestration.ports import Adapters
from orchestration.rotation.indexed import indexed_inventory
from orchestration.rotation.manual import manual_notification, manual_redeploy
from orchestration.secrets.lookup import SecretFacts, SecretLookup
from orchestration.secrets.references import SecretIdentity
from orchestration.state.redeploy_ledger import NewValue, value_key
from orchestration.state.rollouts import ServiceStatus, Status

log = logging.getLogger(__name__)


class RotationAdapters(Adapters, Protocol):
    """What the rotation use case is given: a job's adapters and the redeploy queue."""

    @property
    def queue(self) -> JobQueue | None:
        """The redeploy queue; None: jobs run inline."""
        ...


#: With a queue, stop planning and hand the rest to the worker when less time than this is left.
PLAN_RESERVE_SECONDS = 30.0


def handle_new_secret_value(event: Classification, runtime: RotationAdapters) -> EventOutcome:
    """Redeploy every stale consumer of the secret ``event`` says got a new current value."""
    outcome = EventOutcome(event)
    lookup = runtime.secret_lookup()
    described: SecretFacts | None = None  # when resolving already described it
    if event.secret_written_by_aws:
        secret = lookup.resolve(
            event.secret_id, account=event.account, region=event.region, written_by_aws=True
        )
    else:
        described = lookup.describe(event.secret_id, account=event.account, region=event.region)
        secret = described.identity
    outcome.secret = secret.arn
    # The new value is described only when there is something to deploy for it.
    rotation = RotationRecorder(
        runtime,
        lambda: Rotation.of(new_value(event, secret, lookup, described), event),
        Rotation.unresolved(secret.arn, event),
    )
    if runtime.queue is None:
        inventory = indexed_inventory(secret, runtime, outcome)
        if inventory is None:  # no index rotor may trust: scan
            inventory = runtime.discovery().scan()
        planned = plan_inventory(inventory, secret, rotation, runtime, outcome)
        run_inline(planned, runtime, outcome)
    else:
        plan_to_queue(secret, rotation, None, runtime, runtime.queue, outcome)
    finish(event, rotation.close(), runtime, outcome)
    log.info(
        "secret %s: %d consumers, %d queued, %d redeployed, %d skipped, %d by hand, %d failed",
        secret.arn,
        len(outcome.consumers),
        len(outcome.queued),
        len(outcome.redeployed),
        len(outcome.skipped),
        len(outcome.manual),
        len(outcome.failed),
    )
    return outcome


class RotationRecorder:
    """Records the rotation in the rollout store once its new value is known: described
    when the first consumer needs a deployment (or by hand), else named by the event alone.
    Statuses found before that wait here."""

    def __init__(
        self,
        runtime: RotationAdapters,
        resolve: Callable[[], Rotation],
        fallback: Rotation,
        known: Rotation | None = None,
    ) -> None:
        self._runtime = runtime
        self._resolve = resolve
        self._fallback = fallback
        self._pending: list[tuple[str, ServiceStatus]] = []
        self.rotation: Rotation | None = None
        if known is not None:
            self._fix(known)

    @classmethod
    def of(cls, runtime: RotationAdapters, rotation: Rotation) -> RotationRecorder:
        return cls(runtime, lambda: rotation, rotation, rotation)

    @property
    def rotated_at(self) -> datetime:
        """When the new value became current (the event's time): known without describing."""
        return (self.rotation or self._fallback).rotated_at

    def need(self) -> Rotation:
        """The rotation, its new value described if it was not yet."""
        return self.rotation or self._fix(self._resolve())

    def status(self, service_arn: str, status: ServiceStatus, *, only_if_new: bool) -> None:
        if self.rotation is None:
            self._pending.append((service_arn, status))
            return
        self._runtime.rollouts.set_status(
            self.rotation.rotation_id, service_arn, status, only_if_new=only_if_new
        )

    def close(self) -> Rotation:
        """The rotation, recorded. Keyed by the value that became current whenever rotor can
        describe the secret, even when no consumer needed a deployment (one DescribeSecret, only
        when the rollout store is the state table that ``rotor status`` reads): the deliveries
        of one rotation are then one rotation, whatever their times."""
        if self.rotation is not None:
            return self.rotation
        if not self._runtime.rollouts.durable:  # kept by no one after this process: no call
            return self._fix(self._fallback)
        try:
            return self._fix(self._resolve())
        except AwsCallError as exc:
            log.warning("could not describe the new value (recorded by its time): %s", exc)
            return self._fix(self._fallback)

    def _fix(self, rotation: Rotation) -> Rotation:
        self.rotation = rotation
        self._runtime.rollouts.record_rotation(
            rotation.rotation_id, rotation.secret_arn, rotation.version, rotation.rotated_at
        )
        for service_arn, status in self._pending:
            self._runtime.rollouts.set_status(
                rotation.rotation_id, service_arn, status, only_if_new=True
            )
        self._pending.clear()
        return rotation


def finish(
    event: Classification,
    rotation: Rotation,
    runtime: RotationAdapters,
    outcome: EventOutcome,
    *,
    part: str = "",
) -> None:
    """Counts, and the one notification about services people must redeploy. ``part`` names
    the part of the plan ``outcome`` covers when it is not the event's own (a plan job's
    clusters): each part's services are told once."""
    if outcome.manual:
        outcome.count(MANUAL_REDEPLOYS, len(outcome.manual))
        _notify_manual(event, runtime, rotation, outcome, part)
    outcome.count(REDEPLOYS_STARTED, len(outcome.redeployed))
    outcome.count(REDEPLOYS_SKIPPED, len(outcome.skipped))
    outcome.count(REDEPLOY_FAILURES, sum(1 for f in outcome.failed if f.scope == "service"))
    if outcome.queued:
        outcome.count(REDEPLOYS_QUEUED, len(outcome.queued))
    if outcome.deferred:
        outcome.notes.append(
            f"{len(outcome.deferred)} stale service(s) wait for a rollout slot: their cluster "
            "has ROTOR_MAX_ROLLOUTS_PER_CLUSTER rollouts under way. Nothing failed; handle the "
            "event again once those finish (a Lambda retries the event for them)"
        )


def _notify_manual(
    event: Classification,
    runtime: RotationAdapters,
    rotation: Rotation,
    outcome: EventOutcome,
    part: str,
) -> None:
    """One notification per change and part of the plan (deliveries of one rotation share
    the notify window; the rest of a plan, planned by the worker, has a window of its own)."""
    key = f"manual-redeploy|{value_key(rotation.new_value())}"
    if part:
        key += f"|{part}"
    if not runtime.notify_window.claim(key, event.event_time):
        outcome.notifications_suppressed += 1
        outcome.count(NOTIFICATIONS_SUPPRESSED)
        return
    notification = manual_notification(event, rotation.secret_arn, outcome.manual)
    # Not sent: the window is given back so the retried event notifies.
    with runtime.notify_window.released_on_failure(key):
        runtime.notifier.publish(notification)
    outcome.notifications.append(notification)
    outcome.count(NOTIFICATIONS_SENT)


@dataclass(frozen=True, slots=True)
class Planned:
    job: RedeployJob
    snapshot: ServiceSnapshot
    verdict: Verdict  # the freshness rule's, decided once, on ``snapshot``


def plan_inventory(
    inventory: Inventory,
    secret: SecretIdentity,
    rotation: RotationRecorder,
    runtime: RotationAdapters,
    outcome: EventOutcome,
) -> list[Planned]:
    """Decide for each consumer in ``inventory``; record skips; return the jobs to do."""
    consumers = inventory.consumers_of(secret)
    outcome.report_scan(inventory)
    verdicts = [
        decide_with_policies(c, rotation.rotated_at, opt_in=runtime.settings.opt_in)
        for c in consumers
    ]
    outcome.consumers.extend(describe_verdict(v) for v in verdicts)
    outcome.count(CONSUMERS_FOUND, len(consumers))
    planned: list[Planned] = []
    now = datetime.now(UTC)
    for verdict in verdicts:
        service = verdict.consumer.service
        if verdict.action is Action.SKIP:
            outcome.skipped.append(Skipped(verdict.service_arn, verdict.reason))
            status = ServiceStatus(Status.SKIPPED, verdict.reason, now, service.cluster_arn)
        elif verdict.action is Action.MANUAL:
            rotation.need()
            outcome.manual.append(manual_redeploy(verdict))
            status = ServiceStatus(
                Status.SKIPPED, f"by hand: {verdict.reason}", now, service.cluster_arn
            )
        else:
            job = RedeployJob(
                **rotation.need().rotation_fields(),
                service_arn=service.arn,
                cluster_arn=service.cluster_arn,
                references=tuple(JobReference.of(c, r) for c, r in verdict.consumer.references),
            )
            planned.append(Planned(job, service, verdict))
            status = ServiceStatus(Status.PLANNED, verdict.reason, now, service.cluster_arn)
        rotation.status(service.arn, status, only_if_new=True)
    return planned


def run_inline(planned: list[Planned], runtime: RotationAdapters, outcome: EventOutcome) -> None:
    """No queue: each job runs here through the worker's own ``run_redeploy_job``, on the
    snapshot the scan has just read and the verdict already decided on it (not decided a
    second time)."""
    if not planned:
        return
    workers = min(5, runtime.settings.max_workers, len(planned))
    with ThreadPoolExecutor(workers, thread_name_prefix="rotor-job") as pool:
        reports = list(
            pool.map(
                lambda p: consume.run_redeploy_job(p.job, runtime, (p.snapshot, p.verdict)), planned
            )
        )
    for report in reports:
        assert report.result is not None  # a redeploy job's report carries its result
        add_result(report.result, outcome)


def add_result(result: JobResult, outcome: EventOutcome) -> None:
    """What one job did, in the event's outcome."""
    for name, value in result.metrics.items():
        outcome.count(name, value)
    outcome.notifications.extend(result.notifications)
    if result.status is JobStatus.REDEPLOYED:
        outcome.redeployed.append(result.service_arn)
    elif result.status in (JobStatus.SKIPPED, JobStatus.NOTIFIED):
        outcome.skipped.append(Skipped(result.service_arn, result.reason))
    elif result.status is JobStatus.DEFERRED:
        outcome.deferred.append(Skipped(result.service_arn, result.reason))
    else:
        outcome.failed.append(Failure(result.service_arn, result.reason, result.retryable))


def plan_to_queue(
    secret: SecretIdentity,
    rotation: RotationRecorder,
    clusters: Sequence[str] | None,
    runtime: RotationAdapters,
    queue: JobQueue,
    outcome: EventOutcome,
    *,
    hand_on_errors: bool = True,
) -> None:
    """Plan cluster by cluster (a few at a time), enqueueing each part's jobs as it is planned.
    Short of time, or stopped by a retryable error, the clusters left are enqueued as a
    ``PlanJob`` for the worker: nothing planned or left to plan is lost.

    A worker carrying out a ``PlanJob`` passes ``hand_on_errors=False``: a retryable error then
    propagates, so the job's own message comes back and, failing again and again, reaches the
    queue's maxReceiveCount and the dead-letter queue. (Handed on as a new message, each
    attempt would start again at receive count 1: an endless loop of ECS calls.)"""
    indexed = indexed_inventory(secret, runtime, outcome, clusters)
    if indexed is not None:  # only the index's candidates: no plan to split
        enqueue(
            plan_inventory(indexed, secret, rotation, runtime, outcome),
            rotation,
            runtime,
            queue,
            outcome,
        )
        return
    left: list[str] | None = list(clusters) if clusters is not None else None
    try:
        if left is None:
            left = runtime.discovery().cluster_arns()
        step = max(1, runtime.settings.max_workers)
        first = True
        while left:
            if not first and runtime.retry.remaining() < PLAN_RESERVE_SECONDS:
                raise OutOfTime
            first = False
            part = left[:step]
            inventory = runtime.discovery(tuple(part)).scan()
            planned = plan_inventory(inventory, secret, rotation, runtime, outcome)
            enqueue(planned, rotation, runtime, queue, outcome)
            left = left[step:]
    except (OutOfTime, RetryableAwsError) as exc:
        if isinstance(exc, RetryableAwsError) and not hand_on_errors:
            raise
        rest = PlanJob(
            **rotation.need().rotation_fields(),
            secret=secret,
            clusters=None if left is None else tuple(left),
        )
        queue.send([rest])
        where = f"{len(left)} cluster(s)" if left is not None else "every cluster"
        why = "short of time" if isinstance(exc, OutOfTime) else str(exc)
        outcome.notes.append(f"planning of {where} left to the worker ({why})")
        log.warning("planning of %s enqueued for the worker: %s", where, why)


def enqueue(
    planned: list[Planned],
    rotation: RotationRecorder,
    runtime: RotationAdapters,
    queue: JobQueue,
    outcome: EventOutcome,
) -> None:
    if not planned:
        return
    queue.send([p.job for p in planned], delay_seconds=runtime.settings.debounce_seconds)
    now = datetime.now(UTC)
    for p in planned:
        outcome.queued.append(p.job.service_arn)
        rotation.status(
            p.job.service_arn,
            ServiceStatus(Status.QUEUED, "job on the redeploy queue", now, p.job.cluster_arn),
            only_if_new=False,
        )


def new_value(
    event: Classification,
    secret: SecretIdentity,
    lookup: SecretLookup,
    described: SecretFacts | None = None,
) -> NewValue:
    """The value the redeploys will hold, as the redeploy ledger names it.

    The version that is AWSCURRENT as rotor describes the secret (once per event, reusing the
    description made to resolve it), whatever version the event names: a late event for v1,
    handled after v2 became current, deploys v2. A secret rotor cannot describe keeps the
    event's version, if any, and its time, which pairs the deliveries of one rotation.
    """
    facts = described or lookup.describe(
        secret.arn, account=secret.account, region=secret.region, written_by_aws=True
    )
    if facts.described and facts.current_version:
        return NewValue(secret.arn, facts.current_version)
    return NewValue(
        secret.arn, event.version_id, described=False, became_current_at=event.event_time
    )


def describe_verdict(verdict: Verdict) -> dict[str, Any]:
    return {
        **verdict.consumer.to_dict(),
        "action": verdict.action.value,
        "reason": verdict.reason,
    }
