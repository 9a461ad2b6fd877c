"""Rotation → redeploy: after a secret gets a new current value, redeploy each stale consumer once.

classify (events) → resolve the secret (secret_lookup) → discover consumers (discovery)
→ decide per consumer (freshness) → one job per stale consumer → the worker
(``orchestration.fanout.worker``): UpdateService(forceNewDeployment) (redeploy).

With a redeploy queue (``ROTOR_REDEPLOY_QUEUE_URL``) the jobs are enqueued and a worker Lambda
carries them out; without one they run here, inline. Each rotation and each consumer's status
is recorded in the rollout store (``orchestration.state.rollouts``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestration.aws.clients import region_of_arn
from orchestration.ecs.discovery import Inventory
from orchestration.errors import AwsCallError, OutOfTime, RetryableAwsError
from orchestration.events.classification import Classification
from orchestration.fanout import consume
from orchestration.fanout.jobs import JobReference, PlanJob, RedeployJob, Rotation
from orchestration.fanout.notices import REPLICATION_FAILED, replication_failed
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
    REPLICA_REGIONS_SKIPPED,
    REPLICATION_FAILURES,
    EventOutcome,
    Failure,
    Skipped,
)
from orchestration.ports import Adapters
from orchestration.rotation.indexed import indexed_inventory
from orchestration.rotation.manual import manual_notification, manual_redeploy
from orchestration.secrets.lookup import ReplicaFacts, SecretFacts, SecretLookup, replica_identity
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
    primary = DescribedOnce(lookup, secret, described)
    # The new value is described only when there is something to deploy for it.
    rotation = RotationRecorder(
        runtime,
        lambda: Rotation.of(new_value(event, secret, lookup, primary.get()), event),
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
    plan_replicas(event, primary, rotation, runtime, outcome)
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

    @property
    def fresh_from(self) -> datetime:
        """For the freshness rule: ``rotated_at``, or later for a replica found lagging."""
        return (self.rotation or self._fallback).fresh_from

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
            f"{len(outcome.deferred)} stale service(s) wait for a rollout slot (their cluster "
            "has ROTOR_MAX_ROLLOUTS_PER_CLUSTER rollouts under way) or for their replica of the "
            "secret to hold the new value (see each one's reason). Nothing failed; handle the "
            "event again later (a Lambda retries the event for them)"
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
        decide_with_policies(c, rotation.fresh_from, opt_in=runtime.settings.opt_in)
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
            manual = manual_redeploy(verdict)
            lagging = rotation.need()
            if lagging.replica_waited_at is not None:  # a replica that lacks the value yet
                manual = dataclasses.replace(
                    manual,
                    reason=f"{manual.reason}; but the replica in {lagging.replica_region} does "
                    f"not hold the new value yet: deploy once `aws secretsmanager "
                    f"describe-secret --region {lagging.replica_region} --secret-id "
                    f"{lagging.secret_arn}` shows AWSCURRENT on {lagging.version} (before, "
                    "new tasks get the old value)",
                )
            outcome.manual.append(manual)
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
    described_at = datetime.now(UTC)  # no later than the DescribeServices of what it plans
    indexed = indexed_inventory(secret, runtime, outcome, clusters)
    if indexed is not None:  # only the index's candidates: no plan to split
        enqueue(
            plan_inventory(indexed, secret, rotation, runtime, outcome),
            rotation,
            runtime,
            queue,
            outcome,
            described_at=described_at,
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
            described_at = datetime.now(UTC)
            inventory = runtime.discovery(tuple(part)).scan()
            planned = plan_inventory(inventory, secret, rotation, runtime, outcome)
            enqueue(planned, rotation, runtime, queue, outcome, described_at=described_at)
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
    *,
    described_at: datetime | None = None,
) -> None:
    """Send the planned jobs. Not debounced, each carries the planner's look at its service,
    read no earlier than ``described_at``: a worker that runs it promptly decides on that
    instead of describing the service once more (``ROTOR_SNAPSHOT_MAX_AGE``; 0: none do). A
    debounced job waits to look at the service later: it carries none."""
    if not planned:
        return
    settings = runtime.settings
    jobs = [p.job for p in planned]
    if described_at is not None and not settings.debounce_seconds and settings.snapshot_max_age:
        jobs = [p.job.carrying(p.snapshot, described_at) for p in planned]
    queue.send(jobs, delay_seconds=settings.debounce_seconds)
    now = datetime.now(UTC)
    for p in planned:
        outcome.queued.append(p.job.service_arn)
        rotation.status(
            p.job.service_arn,
            ServiceStatus(Status.QUEUED, "job on the redeploy queue", now, p.job.cluster_arn),
            only_if_new=False,
        )


class DescribedOnce:
    """The primary secret's description, made at most once per event and shared: by the
    rotation's new value and by the planning of its replicas."""

    def __init__(
        self, lookup: SecretLookup, secret: SecretIdentity, known: SecretFacts | None
    ) -> None:
        self._lookup = lookup
        self._secret = secret
        self.known = known

    def get(self) -> SecretFacts:
        if self.known is None:
            secret = self._secret
            self.known = self._lookup.describe(
                secret.arn, account=secret.account, region=secret.region, written_by_aws=True
            )
        return self.known


def plan_replicas(
    event: Classification,
    primary: DescribedOnce,
    rotation: RotationRecorder,
    runtime: RotationAdapters,
    outcome: EventOutcome,
) -> None:
    """The consumers of the secret's replicas (``ReplicationStatus``), each in its region: the
    same reference rules against the replica's ARN, planned as jobs of the replica's own
    rotation (its ARN and the primary's new version), which the worker redeploys only once the
    replica holds that version. A replica in a region outside ``ROTOR_REGIONS`` is reported,
    not touched; one whose replication ``Failed`` is reported, and its consumers are not
    redeployed into the old value. The secret is described for this (once per event) when
    ``ROTOR_REGIONS`` is set, or when the rotation is recorded in the state table (which
    describes it anyway: so replicas outside ``ROTOR_REGIONS`` are reported even when no
    consumer in the stack's region needed the new value); otherwise only when its new value
    was described anyway."""
    facts = primary.known
    if facts is None and runtime.settings.regions:
        facts = primary.get()
    elif facts is None and runtime.rollouts.durable:
        try:
            facts = primary.get()
        except AwsCallError as exc:  # the rotation's record tries again, and copes
            log.warning("could not describe the secret for its replicas: %s", exc)
            return
    if facts is None or not facts.described or not facts.replicas:
        return
    value = rotation.need()
    if not value.described or not value.version:
        return
    allowed = set(runtime.settings.regions)
    for replica in sorted(facts.replicas, key=lambda r: r.region):
        identity = replica_identity(facts.identity, replica.region)
        if replica.region not in allowed:
            outcome.count(REPLICA_REGIONS_SKIPPED)
            outcome.notes.append(
                f"replica {identity.arn} ({replica.status or '?'}) not looked at: "
                f"{replica.region} is not in ROTOR_REGIONS (the stack's ActRegions); its "
                "consumers keep the old value until they are deployed"
            )
            log.warning("replica in %s skipped: not in ROTOR_REGIONS", replica.region)
            continue
        clusters = tuple(
            c
            for c in runtime.settings.clusters
            if not c.startswith("arn:") or region_of_arn(c) == replica.region
        )
        if runtime.settings.clusters and not clusters:
            outcome.notes.append(
                f"replica {identity.arn}: ROTOR_CLUSTERS names no cluster in {replica.region}"
            )
            continue
        regional = runtime.in_region(replica.region)
        recorder = RotationRecorder.of(
            regional,
            Rotation(
                secret_arn=identity.arn,
                version=value.version,
                described=True,
                rotated_at=value.rotated_at,
                event_id=value.event_id,
                replica_region=replica.region,
                primary_secret_arn=facts.identity.arn,
                # Not holding the new value yet: a deployment made there until now holds the
                # old value, however long after the primary's event.
                replica_waited_at=(
                    None
                    if replica.in_sync and _replica_holds(regional, identity, value.version)
                    else datetime.now(UTC)
                ),
            ),
        )
        if replica.failed:
            _replication_failed(event, identity, replica, recorder, regional, outcome, clusters)
        elif runtime.queue is None:
            inventory = indexed_inventory(identity, regional, outcome, clusters or None)
            if inventory is None:  # no index of that region rotor may trust: scan
                inventory = regional.discovery(clusters or None).scan()
            planned = plan_inventory(inventory, identity, recorder, regional, outcome)
            run_inline(planned, regional, outcome)
        else:
            plan_to_queue(identity, recorder, clusters or None, regional, runtime.queue, outcome)


def _replica_holds(regional: RotationAdapters, replica: SecretIdentity, version: str) -> bool:
    """Whether the replica's own ``DescribeSecret``, in its region, shows AWSCURRENT on
    ``version`` (the primary's ``InSync`` alone may predate the new version reaching it).
    Unknown (it cannot be described) counts as not: toward redeploying."""
    try:
        facts = regional.secret_lookup().describe(
            replica.arn, account=replica.account, region=replica.region, written_by_aws=True
        )
    except AwsCallError as exc:
        log.warning("could not describe the replica %s: %s", replica.arn, exc)
        return False
    return facts.described and facts.current_version == version


def _replication_failed(
    event: Classification,
    identity: SecretIdentity,
    replica: ReplicaFacts,
    recorder: RotationRecorder,
    regional: RotationAdapters,
    outcome: EventOutcome,
    clusters: tuple[str, ...],
) -> None:
    """Replication to the replica's region failed: it holds the old value, so its stale
    consumers are not redeployed (that would start tasks with the old value again). They are
    recorded as failed and named in one notification per replica and new value, which is
    counted (``ReplicationFailures``) once with it: a replica without stale consumers is a
    note only, nothing of rotor's is left holding the old value."""
    inventory = regional.discovery(clusters or None).scan()
    outcome.report_scan(inventory)
    detail = f"replication to {replica.region} failed: {replica.message or '(no message)'}"
    verdicts = [  # the replica holds the old value: so does every deployment made there since
        decide_with_policies(c, recorder.fresh_from, opt_in=regional.settings.opt_in)
        for c in inventory.consumers_of(identity)
    ]
    stale = [v for v in verdicts if v.action is not Action.SKIP]
    outcome.notes.append(f"replica {identity.arn}: {detail}; {len(stale)} stale consumer(s)")
    if not stale:
        return
    now = datetime.now(UTC)
    for verdict in stale:
        service = verdict.consumer.service
        outcome.skipped.append(Skipped(service.arn, f"not redeployed into the old value: {detail}"))
        recorder.status(
            service.arn,
            ServiceStatus(Status.FAILED, detail, now, service.cluster_arn),
            only_if_new=True,
        )
    log.warning("%s; %d consumer(s) there not redeployed", detail, len(stale))
    key = f"{REPLICATION_FAILED}|{value_key(recorder.need().new_value())}"
    if not regional.notify_window.claim(key, event.event_time):
        outcome.notifications_suppressed += 1
        outcome.count(NOTIFICATIONS_SUPPRESSED)
        return
    outcome.count(REPLICATION_FAILURES)
    notification = replication_failed(
        identity.arn,
        replica.region,
        detail,
        [v.service_arn for v in stale],
        recorder.rotated_at,
    )
    with regional.notify_window.released_on_failure(key):
        regional.notifier.publish(notification)
    outcome.notifications.append(notification)
    outcome.count(NOTIFICATIONS_SENT)


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
