"""Carry out one redeploy job: look at the service again, apply the policies, redeploy once.

The same code runs in the worker Lambda (one job per SQS message) and inline (``rotor replay``,
the demo, a stack without a queue), where the planner hands over the snapshot it has just read
instead of the worker describing the service again. A queued job that the planner sent with
its snapshot, received for the first time within ``ROTOR_SNAPSHOT_MAX_AGE`` of that look,
decides on it too, without describing the service once more; a debounced job, one sent again
to wait, one retried after a failure or one older than that describes the service. A redeploy
on the planner's look that fails for good looks at the service then (deleted since: skipped).

In order, for the job's service:

1. the freshness rule on the service as it is now, or as the planner saw it just before
   (a debounced job may find it fresh);
2. for a consumer of a replica, the gate: the replica must hold the primary's new version
   (``_replica_gate``), else the job waits (a delayed retry) or, replication failed, is
   reported and not redeployed into the old value;
3. notify-only (tag ``rotor:redeploy=notify``): a notification names the stale service;
4. ``DescribeSecret`` (queued jobs): the version AWSCURRENT now is what the deployment holds;
5. the flap guard (``ROTOR_MAX_REDEPLOYS_PER_HOUR``): past it, skip, count, notify; and the
   per-cluster cap (``ROTOR_MAX_ROLLOUTS_PER_CLUSTER``): at it, the job is deferred;
6. the service's lease (``orchestration.state.service_lease``): one rotor job at a time;
7. the ledger claim for that value and ``UpdateService`` (``orchestration.ecs.redeploy``).

Each step records the consumer's status in the rollout store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from orchestration.aws.clients import region_of_arn
from orchestration.ecs.shapes import primary_deployment, snapshot_of
from orchestration.errors import (
    AwsCallError,
    ClusterNotFound,
    InvalidReferenceError,
    RetryableAwsError,
)
from orchestration.fanout import notices
from orchestration.fanout.jobs import RedeployJob, Rotation
from orchestration.freshness import OPT_TAG, decide
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
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_SUPPRESSED,
    REDEPLOY_FLAPPING,
    REDEPLOYS_DEFERRED,
    REPLICATION_FAILURES,
    STALE_SERVICES_NOTIFIED,
)
from orchestration.ports import Adapters
from orchestration.secrets.references import SecretIdentity
from orchestration.state.redeploy_ledger import NewValue, value_key
from orchestration.state.rollouts import DeploymentRecord, RolloutSlot, ServiceStatus, Status
from orchestration.state.service_lease import ServiceLease
from orchestration.times import iso, utc, value_current_by

log = logging.getLogger(__name__)

FLAP_WINDOW = timedelta(hours=1)
#: A snapshot the planner read this far ahead of the worker's clock is still taken (clocks of
#: two Lambda containers differ a little); further ahead, it is not trusted.
CLOCK_SKEW = timedelta(seconds=5)
NOTIFY_ONLY_VALUE = "notify"
IN_PROGRESS = "IN_PROGRESS"  # a deployment's rolloutState while it runs


class JobStatus(StrEnum):
    REDEPLOYED = "redeployed"
    SKIPPED = "skipped"
    NOTIFIED = "notified"  # notify-only: the stale service was reported, not redeployed
    FAILED = "failed"
    DEFERRED = "deferred"  # try again later: its cluster is at its cap, or its replica lags


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
    def __init__(self, runtime: Adapters) -> None:
        self._runtime = runtime

    def run(
        self,
        job: RedeployJob,
        snapshot: ServiceSnapshot | None = None,
        verdict: Verdict | None = None,
        *,
        receive_count: int = 1,
    ) -> JobResult:
        """Do the job (inline: on the planner's ``snapshot`` and ``verdict``; queued, received
        ``receive_count`` times). AWS errors reading the service or the secret propagate (the
        job is retried); whatever the job took is given back first, in one place."""
        steps = JobSteps(self._runtime, job)
        try:
            result = steps.run(snapshot, verdict, receive_count=receive_count)
        finally:
            steps.give_back()
        if result.status is JobStatus.DEFERRED:  # sent again to wait: it looks again then
            result.job = result.job.without_snapshot()
        return result


class JobSteps:
    """One job's redeploy as explicit steps: describe, decide, value, policies, lease, claim
    and redeploy, record. What a step takes (the flap-guard slot, the cluster-cap slot, the
    service's lease) is noted here, and ``give_back`` returns all of it unless a deployment
    was made (then the slots count it, and the lease says when it was made)."""

    def __init__(self, runtime: Adapters, job: RedeployJob) -> None:
        #: the stack's own adapters; ``_runtime`` acts in the service's region (its ARN's)
        self._home = runtime
        region = region_of_arn(job.service_arn)
        self._runtime = runtime.in_region(region) if region else runtime
        self._store = runtime.rollouts
        self._settings = runtime.settings
        self.job = job
        #: The rotation whose statuses this job writes: the value its deployment will hold.
        self.rotation: Rotation = job
        self.now = datetime.now(UTC)
        #: When the new value was current where the service reads it, for the freshness rule:
        #: the event's time; for a replica's consumer whose job found the replica lagging, not
        #: before now (the replica got it some time after that, and a deployment made
        #: meanwhile, by anyone, holds the old value there).
        self.value_at = (
            job.rotated_at if job.replica_waited_at is None else max(utc(job.rotated_at), self.now)
        )
        self.flap_slot = False
        self.cap_slot = False
        self.lease: ServiceLease | None = None
        #: The job decided on the planner's look at the service (``_carried``), not its own.
        self.carried = False
        self.deployed_at: datetime | None = None

    def run(
        self,
        snapshot: ServiceSnapshot | None,
        planned: Verdict | None = None,
        *,
        receive_count: int = 1,
    ) -> JobResult:
        job = self.job
        # Inline: planned (the service and the secret described) just now, in this process.
        # Queued, the job may run in another container minutes later: it takes the value
        # AWSCURRENT when it runs (step 4), whatever look at the service it decides on.
        inline = snapshot is not None
        if snapshot is None:
            snapshot = self._carried(receive_count)
            self.carried = snapshot is not None
        if snapshot is None:
            try:
                snapshot = self._describe()
            except ClusterNotFound:
                return self._finish(
                    JobStatus.SKIPPED, f"cluster {job.cluster_arn} no longer exists"
                )
            if snapshot is None:
                return self._finish(JobStatus.SKIPPED, "the service no longer exists")
        verdict = planned if planned is not None else self._decide(snapshot)
        if verdict.action is Action.SKIP:
            return self._finish(JobStatus.SKIPPED, verdict.reason)
        if verdict.action is Action.MANUAL:  # its controller changed since the plan
            return self._finish(JobStatus.SKIPPED, f"by hand: {verdict.reason}")
        # A replica's consumer waits until its replica holds the new value: before, a
        # deployment (rotor's, or a person's told by a notify-only report) gets the old one.
        gated: NewValue | None = None
        if job.is_replica:
            waited = self._replica_gate()
            if isinstance(waited, JobResult):
                return waited
            gated = waited
        if notify_only(snapshot):
            return self._notify_only(verdict)
        # Queued, the job may run minutes after it was planned (debounce, retries): the value
        # its deployment will hold is the one AWSCURRENT now, described before anything is taken.
        if gated is not None:
            value = gated
        elif inline:
            value = job.new_value()
        else:
            value = self._current_value()
        self._follow(value)
        waiting = self._take_policy_slots(snapshot)
        if waiting is not None:
            return waiting
        busy = self._take_lease(snapshot)
        if busy is not None:
            return busy
        return self._claim_and_redeploy(verdict, value)

    def give_back(self) -> None:
        """The one place where what the job took is given back (or kept for its deployment)."""
        job = self.job
        try:
            if self.lease is not None:
                self._runtime.leases.give_back(self.lease, self.deployed_at)
        except AwsCallError as exc:  # it runs out on its own
            log.warning("could not give back the lease of %s: %s", job.service_arn, exc)
        if self.deployed_at is not None:
            return  # the flap guard counts the deployment; the cap slot is its until it ends
        if self.flap_slot:
            self._store.give_back_redeploy_slot(job.service_arn, self.now)
        if self.cap_slot:  # only a slot this job took: a duplicate job finds the slot held
            self._store.free_rollout_slot(job.cluster_arn, job.service_arn)

    # the steps

    def _carried(self, receive_count: int) -> ServiceSnapshot | None:
        """The planner's look at the service that the job carries, when the job may decide on
        it: received for the first time (a retried job looks again) within
        ``ROTOR_SNAPSHOT_MAX_AGE`` of it. ``None``: describe the service."""
        job = self.job
        max_age = self._settings.snapshot_max_age
        if job.snapshot is None or job.described_at is None or max_age <= timedelta(0):
            return None
        age = self.now - utc(job.described_at)
        if receive_count > 1 or age > max_age or age < -CLOCK_SKEW:
            log.info(
                "job %s describes its service again (received %d times, snapshot %.0f s old)",
                job.service_arn,
                receive_count,
                age.total_seconds(),
            )
            return None
        return job.snapshot

    def _describe(self) -> ServiceSnapshot | None:
        ecs = self._runtime.clients.ecs
        answer = self._runtime.retry.call(
            "DescribeServices",
            ecs.describe_services,
            cluster=self.job.cluster_arn,
            services=[self.job.service_arn],
            include=["TAGS"],
        )
        services = answer.get("services") or []
        found = snapshot_of(services[0]) if services else None
        return found if isinstance(found, ServiceSnapshot) else None

    def _looked_again(self) -> str | None:
        """The redeploy, decided on the planner's look, failed for good: the service may have
        changed since (deleted, its cluster deleted, no longer ACTIVE). Look at it now: why
        the job is skipped, when ECS shows a reason to; else ``None`` (the failure stands)."""
        job = self.job
        try:
            snapshot = self._describe()
        except ClusterNotFound:
            return f"cluster {job.cluster_arn} no longer exists"
        except AwsCallError as exc:
            log.warning("could not look at %s again: %s", job.service_arn, exc)
            return None
        if snapshot is None:
            return "the service no longer exists"
        verdict = self._decide(snapshot)
        return verdict.reason if verdict.action is Action.SKIP else None

    def _decide(self, snapshot: ServiceSnapshot) -> Verdict:
        refs = tuple(r.reference() for r in self.job.references)
        task_definitions = tuple(
            TaskDefinitionSummary(arn, refs) for arn in snapshot.task_definitions
        )
        consumer = Consumer(snapshot, task_definitions, refs)
        return decide_with_policies(consumer, self.value_at, opt_in=self._settings.opt_in)

    def _current_value(self) -> NewValue:
        """The secret's AWSCURRENT version as DescribeSecret says now; the job's own value for
        a secret rotor cannot describe (the planner could not either). An AWS error that a
        retry may fix propagates (the job comes back)."""
        job = self.job
        if not job.described:
            return job.new_value()
        try:
            secret = SecretIdentity.from_full_arn(job.secret_arn)
        except InvalidReferenceError:
            return job.new_value()
        facts = (
            self._home.in_region(secret.region)
            .secret_lookup()
            .describe(secret.arn, account=secret.account, region=secret.region, written_by_aws=True)
        )
        if facts.described and facts.current_version:
            return NewValue(job.secret_arn, facts.current_version)
        return job.new_value()

    def _replica_gate(self) -> NewValue | JobResult:
        """A consumer of a replica: redeploy only once the replica holds the new value, i.e.
        the primary's ``ReplicationStatus`` for the replica's region is ``InSync`` AND the
        replica's own ``DescribeSecret`` (in its region) shows AWSCURRENT on the version that
        is AWSCURRENT in the primary now. Until then the job waits (``DEFERRED``: sent again
        later, as at the cluster cap), at most ``ROTOR_REPLICA_MAX_WAIT`` after the new value;
        past that, or when replication ``Failed``, it is reported (``ReplicationFailures``, a
        notification) and the service is not redeployed into the old value. AWS errors a
        retry may fix propagate (the job comes back)."""
        job = self.job
        region = job.replica_region
        assert region is not None and job.primary_secret_arn is not None  # is_replica
        primary = SecretIdentity.from_full_arn(job.primary_secret_arn)
        facts = (
            self._home.in_region(primary.region)
            .secret_lookup()
            .describe(
                primary.arn, account=primary.account, region=primary.region, written_by_aws=True
            )
        )
        if not facts.described:
            return self._finish(
                JobStatus.FAILED,
                f"cannot describe the primary secret {primary.arn} "
                f"({facts.why_not_described}): cannot tell whether the replica in {region} "
                "holds the new value",
                status=Status.FAILED,
            )
        target = facts.current_version or job.version or ""
        replica = facts.replica(region)
        if replica is None:
            return self._finish(
                JobStatus.SKIPPED, f"the secret is no longer replicated to {region}"
            )
        if replica.failed:
            return self._replication_failed(
                f"replication to {region} failed: {replica.message or '(no message)'}"
            )
        held: str | None = None
        if replica.in_sync:
            own = (
                self._home.in_region(region)
                .secret_lookup()
                .describe(
                    job.secret_arn, account=primary.account, region=region, written_by_aws=True
                )
            )
            if not own.described:  # denied, or gone: waiting cannot tell
                return self._finish(
                    JobStatus.FAILED,
                    f"cannot describe the replica {job.secret_arn} ({own.why_not_described}): "
                    "cannot tell whether it holds the new value",
                    status=Status.FAILED,
                )
            held = own.current_version
            if held == target:
                return NewValue(job.secret_arn, target)
        where = f"replication {replica.status or '?'}, AWSCURRENT there {held or 'unknown'}"
        max_wait = self._settings.replica_max_wait
        if self.now - utc(job.rotated_at) > max_wait:
            return self._replication_failed(
                f"the replica in {region} did not hold version {target} within "
                f"{max_wait} of the new value (ROTOR_REPLICA_MAX_WAIT; {where})"
            )
        result = self._finish(
            JobStatus.DEFERRED,
            f"waiting for the replica in {region} to hold version {target} ({where})",
            retryable=True,
            status=Status.QUEUED,
        )
        # Sent again saying so: a deployment of the service made from now until the replica
        # holds the new value is not fresh (``value_at``).
        result.job = job.model_copy(update={"replica_waited_at": self.now})
        result.count(REDEPLOYS_DEFERRED)
        return result

    def _replication_failed(self, detail: str) -> JobResult:
        job = self.job
        return self._reported(
            notices.replication_failed(
                job.secret_arn, job.replica_region or "", detail, [job.service_arn], job.rotated_at
            ),
            JobStatus.SKIPPED,
            f"not redeployed into the old value: {detail}",
            REPLICATION_FAILURES,
            status=Status.FAILED,
        )

    def _follow(self, value: NewValue) -> None:
        """A later version became current since the job was planned: its deployment holds
        that one, so the job's statuses go to that value's rotation, and the planned value's
        rotation says where they went."""
        job = self.job
        if not value.described or not value.version_id or value.version_id == job.version:
            return
        self.rotation = Rotation(
            secret_arn=job.secret_arn,
            version=value.version_id,
            described=True,
            rotated_at=job.rotated_at,
            event_id=job.event_id,
            replica_region=job.replica_region,
            primary_secret_arn=job.primary_secret_arn,
        )
        self._store.record_rotation(
            self.rotation.rotation_id, job.secret_arn, value.version_id, job.rotated_at
        )
        self._write_status(
            job.rotation_id,
            ServiceStatus(
                Status.SKIPPED,
                f"superseded: version {value.version_id} was current when the job ran "
                f"(see rotation {self.rotation.rotation_id})",
                datetime.now(UTC),
                job.cluster_arn,
            ),
        )

    def _take_policy_slots(self, snapshot: ServiceSnapshot) -> JobResult | None:
        """The flap guard and the cluster cap: ``None`` when the job may go on."""
        job = self.job
        flap_limit = self._settings.max_redeploys_per_hour
        if flap_limit:
            if not self._store.take_redeploy_slot(
                job.service_arn, self.now, flap_limit, FLAP_WINDOW
            ):
                return self._flapping(flap_limit)
            self.flap_slot = True
        cap = self._settings.max_rollouts_per_cluster
        if not cap:
            return None
        slot = self._store.take_rollout_slot(job.cluster_arn, job.service_arn, self.now, cap)
        if slot is RolloutSlot.FULL and self._settle_overdue():
            slot = self._store.take_rollout_slot(job.cluster_arn, job.service_arn, self.now, cap)
        self.cap_slot = slot is RolloutSlot.TAKEN
        if slot is not RolloutSlot.FULL:
            return None
        result = self._finish(
            JobStatus.DEFERRED,
            f"cluster {snapshot.cluster_name} has {cap} rollouts under way "
            "(ROTOR_MAX_ROLLOUTS_PER_CLUSTER); waiting",
            retryable=True,
            status=Status.QUEUED,
        )
        result.count(REDEPLOYS_DEFERRED)
        return result

    def _settle_overdue(self) -> bool:
        """The cluster is full, and some of its slots' leases have ended without a word from
        the tracker: ask ECS. A rollout still in progress keeps its slot (a new lease); the
        others' slots are freed. True when a slot was freed. If ECS cannot answer, the
        overdue slots are freed, as the policy fails open."""
        job = self.job
        names = self._store.overdue_rollouts(job.cluster_arn, self.now)[:10]
        if not names:
            return False
        ecs = self._runtime.clients.ecs
        try:
            answer = self._runtime.retry.call(
                "DescribeServices", ecs.describe_services, cluster=job.cluster_arn, services=names
            )
            running = {
                str(service.get("serviceArn"))
                for service in answer.get("services") or []
                if (primary_deployment(service) or {}).get("rolloutState") == IN_PROGRESS
            }
        except AwsCallError as exc:
            log.warning("could not read the overdue rollouts of %s: %s", job.cluster_arn, exc)
            running = set()
        for name in names:
            if name in running:
                self._store.renew_rollout_slot(job.cluster_arn, name, self.now)
            else:
                self._store.free_rollout_slot(job.cluster_arn, name)
        return len(running) < len(names)

    def _take_lease(self, snapshot: ServiceSnapshot) -> JobResult | None:
        """The service's lease (waiting a little while another job holds it): ``None`` when
        the job may go on."""
        job = self.job
        retry = self._runtime.retry
        leases = self._runtime.leases

        def take() -> ServiceLease:
            left = timedelta(seconds=min(max(retry.remaining(), 0.0), 86400.0))
            lease = leases.take(job.service_arn, datetime.now(UTC), left)
            if lease is None:
                raise RetryableAwsError(
                    "TakeServiceLease",
                    "LeaseHeldElsewhere",
                    "another rotor job is redeploying this service now",
                )
            return lease

        try:
            self.lease = retry.call("TakeServiceLease", take)
        except AwsCallError as exc:
            retryable = isinstance(exc, RetryableAwsError)
            return self._finish(
                JobStatus.FAILED,
                str(exc),
                retryable=retryable,
                status=Status.QUEUED if retryable else Status.FAILED,
            )
        since = self.lease.deployed_since
        primary = snapshot.primary_created_at
        if (
            since is not None
            and (primary is None or utc(since) > utc(primary))
            and utc(since) >= value_current_by(self.value_at)
        ):
            return self._finish(
                JobStatus.SKIPPED,
                f"already fresh: another rotor job redeployed it at {iso(since)}, "
                f"after the new value ({iso(self.value_at)})",
            )
        return None

    def _claim_and_redeploy(self, verdict: Verdict, value: NewValue) -> JobResult:
        job = self.job
        [done] = self._runtime.redeployer().redeploy([verdict], self.value_at, value)
        if done.outcome is Outcome.REDEPLOYED:
            self.deployed_at = done.created_at or datetime.now(UTC)
            if done.deployment_id:
                self._store.record_deployment(
                    DeploymentRecord(
                        done.deployment_id,
                        self.rotation.rotation_id,
                        job.service_arn,
                        job.cluster_arn,
                        job.rotated_at,
                        job.secret_arn,
                        done.created_at,
                    )
                )
            return self._finish(
                JobStatus.REDEPLOYED,
                f"deployment {done.deployment_id or '?'} started",
                deployment_id=done.deployment_id,
                status=Status.DEPLOYING,
            )
        if done.outcome is Outcome.ALREADY_FRESH:
            return self._finish(JobStatus.SKIPPED, done.reason or "already fresh")
        if self.carried and not done.retryable:
            gone = self._looked_again()
            if gone is not None:
                return self._finish(JobStatus.SKIPPED, gone)
        return self._finish(
            JobStatus.FAILED,
            done.error or "?",
            retryable=done.retryable,
            status=Status.QUEUED if done.retryable else Status.FAILED,
        )

    def _notify_only(self, verdict: Verdict) -> JobResult:
        job = self.job
        return self._reported(
            notices.stale_service(job.secret_arn, job.service_arn, job.rotated_at, verdict.reason),
            JobStatus.NOTIFIED,
            f"notify-only (tag {OPT_TAG}={NOTIFY_ONLY_VALUE}): stale, reported, not redeployed",
            STALE_SERVICES_NOTIFIED,
        )

    def _flapping(self, limit: int) -> JobResult:
        job = self.job
        return self._reported(
            notices.flapping(job.secret_arn, job.service_arn, job.rotated_at, limit),
            JobStatus.SKIPPED,
            f"flapping: {limit} forced deployments in the last hour (ROTOR_MAX_REDEPLOYS_PER_HOUR)",
            REDEPLOY_FLAPPING,
        )

    def _reported(
        self,
        notification: Notification,
        outcome: JobStatus,
        detail: str,
        metric: str,
        *,
        status: Status = Status.SKIPPED,
    ) -> JobResult:
        """Publish ``notification`` about a job rotor does not redeploy, once per (service, new
        value): both deliveries of a rotation, and every retry of a job, claim one window."""
        job = self.job
        result = self._finish(outcome, detail, status=status)
        window = self._runtime.notify_window
        key = f"{notification.kind}|{job.service_arn}|{value_key(job.new_value())}"
        # Claimed at the value's time, as every job for this value is: the window held by the
        # first stays held for the others, whenever they run.
        if not window.claim(key, job.rotated_at):
            result.count(NOTIFICATIONS_SUPPRESSED)
            return result
        # Not sent: the window is given back so the job's retry notifies.
        with window.released_on_failure(key):
            self._runtime.notifier.publish(notification)
        result.notifications.append(notification)
        result.count(metric)
        result.count(NOTIFICATIONS_SENT)
        return result

    def _finish(
        self,
        outcome: JobStatus,
        reason: str,
        *,
        retryable: bool = False,
        deployment_id: str | None = None,
        status: Status = Status.SKIPPED,
    ) -> JobResult:
        job = self.job
        log.info("job %s: %s (%s)", job.service_arn, outcome.value, reason)
        self._write_status(
            self.rotation.rotation_id,
            ServiceStatus(
                status, reason, datetime.now(UTC), job.cluster_arn, deployment_id=deployment_id
            ),
        )
        return JobResult(job, outcome, reason, retryable=retryable, deployment_id=deployment_id)

    def _write_status(self, rotation_id: str, status: ServiceStatus) -> None:
        """The store writes it only over a status it may replace: never backwards."""
        self._store.set_status(rotation_id, self.job.service_arn, status)
