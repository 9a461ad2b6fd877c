"""The reconciler: heal what lost events left stale.

EventBridge delivers CloudTrail's events best effort: a lost ``RotationSucceeded`` or label
event means a service keeps a dead credential, and nobody knows. One pass, on a schedule (the
reconcile function) or by hand (``rotor reconcile``):

1. a full scan of the account (``ConsumerDiscovery.scan``), paced: this process's ECS reads
   are metered at ``ROTOR_RECONCILE_READ_SHARE`` of the account's read limits, leaving the
   rest to every other deployer;
2. for every secret that has consumers (references resolved with one ``DescribeSecret`` per
   distinct secret; a secret rotor cannot describe, or one pending deletion, is reported and
   left alone): its current version, when that was created (``ListSecretVersionIds``) and when
   it became current (``orchestration.reconcile.moments``: the state table, the versions,
   CloudTrail, else unknown, erring toward redeploying);
3. each stale consumer through the event path's own job path, as a rotation keyed by the value
   (secret ARN and version): a ``RedeployJob`` on the redeploy queue, or run inline without
   one. The redeploy ledger (``redeploy#<service>#<secret>@<version>``), the policies and the
   statuses apply and dedupe with the event path: a second pass right after the first, and a
   late event for the value, redeploy nothing;
4. the consumer index rebuilt from the scan (not in a dry run, nor from a scan that could not
   read everything), after the heal: healing comes first when time is short.

Near its deadline (``runtime.retry.remaining``) a pass starts no further secret, and no
rebuild: what it left is reported (out of time), nothing is guessed.

Every consumer queued or redeployed because it was stale counts in ``HealedByReconciler``: the
number of events rotor lost.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from orchestration.ecs.discovery import Inventory
from orchestration.errors import AwsCallError, RetryableAwsError
from orchestration.events.classification import Classification, EventKind
from orchestration.fanout import consume
from orchestration.fanout.jobs import JobReference, RedeployJob, Rotation
from orchestration.fanout.worker import JobStatus, decide_with_policies, notify_only
from orchestration.models import Action as VerdictAction
from orchestration.models import Consumer, TaskDefinitionSummary
from orchestration.outcome import (
    CONSUMERS_FOUND,
    HEALED_BY_RECONCILER,
    MANUAL_REDEPLOYS,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_SUPPRESSED,
    REDEPLOYS_QUEUED,
    Failure,
    ManualRedeploy,
    report_scan_problems,
)
from orchestration.reconcile.moments import (
    RECORD_SOURCES,
    CloudTrailHistory,
    Evidence,
    Moment,
    evidence_of_record,
    lookup_failed,
)
from orchestration.reconcile.report import (
    Action,
    ConsumerResult,
    ReconcileReport,
    SecretResult,
)
from orchestration.rotation.manual import manual_notification, manual_redeploy
from orchestration.rotation.new_value import Planned, RotationAdapters
from orchestration.secrets.lookup import SecretFacts, SecretLookup
from orchestration.secrets.references import ReferenceKind, SecretIdentity, SecretReference
from orchestration.state.consumer_index import ConsumerIndex
from orchestration.state.redeploy_ledger import value_key
from orchestration.state.rollouts import ServiceStatus, Status
from orchestration.times import iso, utc

log = logging.getLogger(__name__)

#: A consumer whose job for this value went on the queue less than this long ago is left to
#: that job (a second pass right after the first queues nothing, and counts nothing); after
#: it, a job still not done is taken for lost and queued again (the ledger dedupes).
QUEUED_RECENTLY = timedelta(hours=1)
#: How far this process's clock may be from ECS's (deployment times are ECS's).
CLOCK_SKEW = timedelta(seconds=60)
EVENT_ID = "reconcile"
#: Seconds of the deadline (``runtime.retry.remaining``) a pass keeps for queueing its jobs and
#: reporting: with less left, it reconciles no further secret, and says which it left. (A
#: secret begun out of time would find its LookupEvents refused, its moment "unknown", and
#: record that guess; and a Lambda killed at its timeout reports and counts nothing.)
JOBS_RESERVE_SECONDS = 30.0


def reconcile(
    runtime: RotationAdapters,
    *,
    secret: str | None = None,
    dry_run: bool = False,
    index: ConsumerIndex | None = None,
) -> ReconcileReport:
    """One pass (see the module's docstring). ``secret``: a name or ARN; the scan is still
    whole, but only that secret's consumers are reconciled (a secret that does not exist
    raises ``InvalidReferenceError``). ``dry_run``: decide and report what it would do, and
    write nothing (no index, no state, no job, no deployment). ``index``: the consumer index
    to rebuild (default: the runtime's, if it has one)."""
    started = datetime.now(UTC)
    report = ReconcileReport(started, dry_run=dry_run)
    # Paced: its share of the read rates, one token at a time (no burst of the account's).
    runtime.clients.ecs_rate_limiter.hold_read_share(
        runtime.settings.reconcile_read_share, burst=False
    )
    lookup = runtime.secret_lookup()
    only = lookup.identify(secret) if secret is not None else None
    report.only_secret = only.arn if only is not None else None
    inventory = runtime.discovery().scan()
    report.services_scanned = len({service.arn for service, _ in inventory.services})
    report_scan_problems(inventory, report)
    pass_ = _Pass(runtime, lookup, report, dry_run)
    secrets = sorted(
        [only] if only is not None else pass_.referenced(inventory), key=lambda s: s.arn
    )
    for done, identity in enumerate(secrets):
        if runtime.retry.remaining() < JOBS_RESERVE_SECONDS:
            _out_of_time(report, secrets[done:])
            break
        pass_.reconcile_secret(identity, inventory.consumers_of(identity))
    pass_.run_jobs()
    # After the heal: the index is a shortcut, healing the pass's duty, and a first rebuild
    # of a large account (a write per service) must not take the time the heal needs.
    _rebuild_index(
        index if index is not None else runtime.consumer_index, inventory, runtime, report
    )
    healed = len(report.healed)
    if dry_run:  # what it would count (``would_metrics``): nothing was queued or redeployed
        healed = len(report.consumers(Action.WOULD_QUEUE) + report.consumers(Action.WOULD_REDEPLOY))
    if healed:
        report.count(HEALED_BY_RECONCILER, healed)
    log.info(
        "reconciled %d secret(s) over %d service(s): %d healed, %d failed%s",
        len(report.secrets),
        report.services_scanned,
        healed,
        len(report.failed),
        " (dry run)" if dry_run else "",
    )
    return report


def _out_of_time(report: ReconcileReport, left: list[SecretIdentity]) -> None:
    """The pass's deadline is near: the secrets not reconciled are failures (retryable: the
    next pass reconciles them), and nothing is guessed about them."""
    for identity in left:
        report.failed.append(
            Failure(
                identity.arn,
                "out of time: not reconciled in this pass (the next pass will)",
                True,
                "secret",
            )
        )
    report.notes.append(f"out of time: {len(left)} secret(s) left to the next pass")


def _rebuild_index(
    index: ConsumerIndex | None,
    inventory: Inventory,
    runtime: RotationAdapters,
    report: ReconcileReport,
) -> None:
    if index is None:
        report.index = "no consumer index (it lives in ROTOR_STATE_TABLE)"
        return
    if report.dry_run:
        report.index = "not rebuilt: dry run"
        return
    if inventory.failures:
        # A partial scan would drop the services it could not read from the index.
        report.index = "not rebuilt: the scan could not read everything"
        return
    if runtime.retry.remaining() < JOBS_RESERVE_SECONDS:
        report.index = "not rebuilt: out of time (the next pass rebuilds it)"
        return
    services: dict[str, tuple[str, str, list[TaskDefinitionSummary]]] = {}
    for service, task_definition in inventory.services:
        services.setdefault(service.arn, (service.arn, service.cluster_arn, []))[2].append(
            task_definition
        )
    try:
        index.rebuild(runtime.clients.region or "", list(services.values()), report.started_at)
    except AwsCallError as exc:
        # The index is the rotation path's shortcut (not trusted until a rebuild completes);
        # healing is the pass's duty: it goes on, and says so.
        report.failed.append(
            Failure("consumer index", str(exc), isinstance(exc, RetryableAwsError), "index")
        )
        report.index = f"not rebuilt: {exc}"
        return
    report.index = f"rebuilt from the scan ({len(services)} service(s))"


class _Pass:
    """One pass's secrets: their moments, their consumers' verdicts, the jobs to do."""

    def __init__(
        self,
        runtime: RotationAdapters,
        lookup: SecretLookup,
        report: ReconcileReport,
        dry_run: bool,
    ) -> None:
        self._runtime = runtime
        self._lookup = lookup
        self._report = report
        self._dry_run = dry_run
        self._history = CloudTrailHistory(runtime.clients.cloudtrail, runtime.retry)
        #: What ``referenced`` learnt describing each secret (by ARN): not described again.
        self._facts: dict[str, SecretFacts] = {}
        #: The stale consumers to redeploy, with where their result goes.
        self._planned: list[tuple[Planned, ConsumerResult]] = []

    # the secrets the account's services reference

    def referenced(self, inventory: Inventory) -> list[SecretIdentity]:
        """Every secret some scanned task definition references, described once each: one
        ``DescribeSecret`` per distinct secret (a reference naming a secret already described,
        by name, partial or full ARN, needs none). A secret rotor cannot describe is
        reported; its consumers are left alone."""
        references: dict[tuple[str, str, str, str], SecretReference] = {}
        for _, task_definition in inventory.services:
            for _, ref in task_definition.references:
                if ref.kind is not ReferenceKind.SSM_PARAMETER:
                    references.setdefault(
                        (ref.partition, ref.region, ref.account, ref.name_part), ref
                    )
        found: dict[str, SecretIdentity] = {}
        # Full ARNs first (those with a -XXXXXX suffix sort after their bare names otherwise).
        ordered = sorted(references, key=lambda k: (-len(k[3]), k))
        for done, key in enumerate(ordered):
            ref = references[key]
            if any(ref.points_at(identity) for identity in found.values()):
                continue
            secret_id = f"arn:{ref.partition}:secretsmanager:{ref.region}:{ref.account}:secret:"
            secret_id += ref.name_part
            if self._runtime.retry.remaining() < JOBS_RESERVE_SECONDS:
                self._report.failed.append(
                    Failure(
                        "secrets",
                        f"out of time: {len(ordered) - done} secret reference(s) not "
                        "described in this pass (the next pass will)",
                        True,
                        "secret",
                    )
                )
                break
            facts = self._describe(secret_id, ref.account, ref.region)
            if facts is None:
                continue
            if not facts.described:
                self._report.secrets.append(
                    SecretResult(
                        facts.identity.arn,
                        problem=f"rotor cannot describe it ({facts.why_not_described}): "
                        "its consumers are left alone",
                    )
                )
                continue
            found.setdefault(facts.identity.arn, facts.identity)
            self._facts[facts.identity.arn] = facts
        return list(found.values())

    def _describe(self, secret_id: str, account: str, region: str) -> SecretFacts | None:
        try:
            return self._lookup.describe(secret_id, account=account, region=region)
        except AwsCallError as exc:
            self._report.failed.append(
                Failure(secret_id, str(exc), isinstance(exc, RetryableAwsError), "secret")
            )
            return None

    # one secret

    def reconcile_secret(self, secret: SecretIdentity, consumers: list[Consumer]) -> None:
        result = SecretResult(secret.arn)
        facts = self._facts.get(secret.arn) or self._describe(
            secret.arn, secret.account, secret.region
        )
        if facts is None:
            return
        self._report.secrets.append(result)
        if not facts.described:
            result.problem = f"rotor cannot describe it ({facts.why_not_described})"
            return
        if facts.scheduled_for_deletion:
            assert facts.deleted_date is not None
            result.problem = (
                f"scheduled for deletion ({iso(facts.deleted_date)}): its consumers are "
                "left alone (the deletion warning names them)"
            )
            return
        if not facts.current_version:
            result.problem = "no version is AWSCURRENT"
            return
        result.version = facts.current_version
        # The version was current by now: the bound when nothing better says when. On AWS's
        # clock at least (the describe's Date header, to the second, so one more): this
        # machine's may be slow, and a bound before the real moment would judge a deployment
        # holding the old value fresh, for good.
        seen_at = datetime.now(UTC)
        if facts.answered_at is not None:
            seen_at = max(seen_at, facts.answered_at + timedelta(seconds=1))
        if not consumers:
            return
        self._report.count(CONSUMERS_FOUND, len(consumers))
        try:
            versions = self._lookup.versions(secret)
        except AwsCallError as exc:
            self._report.failed.append(
                Failure(secret.arn, str(exc), isinstance(exc, RetryableAwsError), "secret")
            )
            result.problem = f"could not list its versions: {exc}"
            return
        current = next((v for v in versions if v.version_id == facts.current_version), None)
        created = utc(current.created) if current and current.created else None
        result.created_at = created
        rotation_id = f"{secret.arn}@{facts.current_version}"
        later = [c for c in consumers if _deployed_at_or_after(c, created)]
        try:
            moment = self._moment(
                secret, facts.current_version, rotation_id, created, later, len(versions) == 1
            )
        except _OutOfTime:
            result.problem = "out of time looking for the moment: left to the next pass"
            self._report.failed.append(
                Failure(
                    secret.arn,
                    "out of time: not reconciled in this pass (the next pass will)",
                    True,
                    "secret",
                )
            )
            return
        if moment is None:  # not needed: every consumer was deployed before the version
            moment = Moment(
                seen_at,
                Evidence.CREATED_DATE,
                "not looked for: every consumer was deployed before the version was created",
            )
        if moment.evidence is Evidence.UNKNOWN:
            moment = Moment(
                seen_at,
                Evidence.UNKNOWN,
                (moment.detail + "; " if moment.detail else "")
                + "erring toward redeploying: judged by when rotor first saw it current "
                f"({seen_at.isoformat()})",
            )
        if created is not None and moment.at < created:
            moment = Moment(created, moment.evidence, moment.detail + " (not before CreatedDate)")
        result.became_current_at = moment.at
        result.evidence = moment.evidence.value
        result.evidence_detail = moment.detail
        if not self._dry_run:
            source = RECORD_SOURCES.get(moment.evidence, "")
            self._runtime.rollouts.remember_current(
                rotation_id, secret.arn, facts.current_version, moment.at, source
            )
        rotation = Rotation(
            secret_arn=secret.arn,
            version=facts.current_version,
            described=True,
            rotated_at=moment.at,
            event_id=EVENT_ID,
        )
        only_later = {c.service.arn for c in later}
        manual: list[ManualRedeploy] = []
        for consumer in consumers:
            decided_by = (
                moment.evidence.value
                if consumer.service.arn in only_later
                else Evidence.CREATED_DATE.value
            )
            result.consumers.append(self._consumer(rotation, consumer, decided_by, manual))
        if manual and not self._dry_run:
            self._notify_manual(secret, rotation, manual)

    def _notify_manual(
        self, secret: SecretIdentity, rotation: Rotation, manual: list[ManualRedeploy]
    ) -> None:
        """The event path's one notification per value about the services people must
        redeploy (CODE_DEPLOY, EXTERNAL), in its notify window: sent once, whichever of the
        event path and the reconciler finds them first."""
        runtime = self._runtime
        key = f"manual-redeploy|{value_key(rotation.new_value())}"
        if not runtime.notify_window.claim(key, rotation.rotated_at):
            self._report.count(NOTIFICATIONS_SUPPRESSED)
            return
        seen = Classification(
            kind=EventKind.ROTATION,
            reason="the reconciler found the value's consumers stale",
            event_id=EVENT_ID,
            event_time=rotation.rotated_at,
            account=secret.account,
            region=secret.region,
            source="rotor.reconcile",
            detail_type="Reconcile",
        )
        try:
            with runtime.notify_window.released_on_failure(key):
                runtime.notifier.publish(manual_notification(seen, secret.arn, manual))
        except AwsCallError as exc:
            self._report.notes.append(f"could not send the by-hand notification: {exc}")
            return
        self._report.count(NOTIFICATIONS_SENT)

    def _moment(
        self,
        secret: SecretIdentity,
        version: str,
        rotation_id: str,
        created: datetime | None,
        later: list[Consumer],
        only_version: bool,
    ) -> Moment | None:
        """The moment by the evidence, in order; ``None``: not needed (no consumer was
        deployed after the version was created)."""
        try:
            stored = self._runtime.rollouts.rotation(rotation_id)
        except AwsCallError as exc:
            log.warning("could not read rotation %s: %s", rotation_id, exc)
            stored = None
        if stored is not None:
            evidence = evidence_of_record(stored.source)
            who = stored.source or "the event path"
            return Moment(
                stored.rotated_at, evidence, f"rotation record written by {who} (state table)"
            )
        if created is None:
            return Moment(
                datetime.now(UTC), Evidence.UNKNOWN, "the version's CreatedDate is unknown"
            )
        if only_version:
            return Moment(created, Evidence.ONLY_VERSION, "the secret's only version ever")
        if not later:
            return None  # every consumer predates the version: stale whatever the moment
        try:
            found = self._history.became_current(secret, version, created)
        except AwsCallError as exc:
            if (
                isinstance(exc, RetryableAwsError)
                and self._runtime.retry.remaining() < JOBS_RESERVE_SECONDS
            ):
                raise _OutOfTime from exc  # cut short by the deadline: no guess
            return Moment(datetime.now(UTC), Evidence.UNKNOWN, lookup_failed(exc))
        if found is None:
            return Moment(
                datetime.now(UTC),
                Evidence.UNKNOWN,
                "CloudTrail has no call that made this version current (yet)",
            )
        return Moment(found.at, Evidence.CLOUDTRAIL, found.detail)

    # one consumer

    def _consumer(
        self,
        rotation: Rotation,
        consumer: Consumer,
        decided_by: str,
        manual: list[ManualRedeploy],
    ) -> ConsumerResult:
        service = consumer.service
        verdict = decide_with_policies(
            consumer, rotation.rotated_at, opt_in=self._runtime.settings.opt_in
        )
        fresh = verdict.reason.startswith("already fresh")
        stale = verdict.action is not VerdictAction.SKIP
        result = ConsumerResult(
            service.arn,
            service.cluster_arn,
            service.primary_created_at,
            stale=stale,
            decided_by=decided_by if (fresh or stale) else "",  # else time did not decide
            action=Action.FRESH if fresh else Action.SKIPPED,
            reason=verdict.reason,
        )
        if verdict.action is VerdictAction.SKIP:
            return result
        if verdict.action is VerdictAction.MANUAL:
            result.action = Action.MANUAL
            self._report.count(MANUAL_REDEPLOYS)
            manual.append(manual_redeploy(verdict))
            return result
        waiting, before, deployed = self._handled_already(
            rotation.rotation_id, service.arn, service.primary_created_at
        )
        if waiting is not None:
            # rotor's own deployment for this value holds it, whatever the time bound says
            # (one taken to the second on AWS's clock may fall just after it): fresh
            result.action = Action.FRESH if deployed else Action.SKIPPED
            result.stale = not deployed
            result.reason = waiting
            return result
        told = notify_only(service)
        job = RedeployJob(
            **rotation.rotation_fields(),
            service_arn=service.arn,
            cluster_arn=service.cluster_arn,
            references=tuple(JobReference.of(c, r) for c, r in consumer.references),
        )
        queued = self._runtime.queue is not None
        if self._dry_run:
            if told:
                result.action = Action.NOTIFY
            elif queued and before:
                result.action = Action.WOULD_REQUEUE
            else:
                result.action = Action.WOULD_QUEUE if queued else Action.WOULD_REDEPLOY
            return result
        # Queued, what it is: a notify-only service is reported, not healed; a consumer that
        # a job for this value was queued for before (its status says so) was counted then.
        if told:
            result.action = Action.NOTIFY
        elif queued and before:
            result.action = Action.REQUEUED
        self._planned.append((Planned(job, service, verdict), result))
        return result

    def _handled_already(
        self, rotation_id: str, service_arn: str, deployed_at: datetime | None
    ) -> tuple[str | None, bool, bool]:
        """Why a stale-looking consumer is rotor's already for this value, from its status:
        a job queued less than ``QUEUED_RECENTLY`` ago, or a deployment rotor made for this
        value that is still the service's (a clock a little ahead of ECS's must not make a
        pass take rotor's own deployment for an older one and count it twice). And whether
        it has a status for this value at all: a job was queued for it, or ran, before; and
        whether the reason is a deployment rotor made for this value."""
        try:
            status = self._runtime.rollouts.status(rotation_id, service_arn)
        except AwsCallError as exc:
            log.warning("could not read the status of %s: %s", service_arn, exc)
            return None, False, False
        if status is None:
            return None, False, False
        now = datetime.now(UTC)
        if status.status is Status.QUEUED and now - utc(status.at) < QUEUED_RECENTLY:
            queued = f"a job for this value is already on the queue (since {iso(status.at)})"
            return queued, True, False
        if (
            status.status in (Status.DEPLOYING, Status.FRESH)
            and deployed_at is not None
            and utc(deployed_at) >= utc(status.at) - CLOCK_SKEW
        ):
            return (
                (
                    f"rotor already redeployed it for this value (deployment "
                    f"{status.deployment_id or '?'}, {iso(status.at)})"
                ),
                True,
                True,
            )
        return None, True, False

    # the jobs

    def run_jobs(self) -> None:
        if not self._planned:
            return
        queue = self._runtime.queue
        if queue is not None:
            jobs = [planned.job for planned, _ in self._planned]
            try:
                queue.send(jobs, delay_seconds=self._runtime.settings.debounce_seconds)
            except AwsCallError as exc:
                for planned, result in self._planned:
                    result.action = Action.FAILED
                    result.reason = f"could not queue the job: {exc}"
                    self._report.failed.append(Failure(planned.job.service_arn, str(exc), True))
                return
            now = datetime.now(UTC)
            for planned, result in self._planned:
                if result.action not in (Action.NOTIFY, Action.REQUEUED):
                    result.action = Action.QUEUED
                self._runtime.rollouts.set_status(
                    planned.job.rotation_id,
                    planned.job.service_arn,
                    ServiceStatus(
                        Status.QUEUED,
                        "job on the redeploy queue (the reconciler)",
                        now,
                        planned.job.cluster_arn,
                    ),
                )
            self._report.count(REDEPLOYS_QUEUED, len(jobs))
            return
        workers = min(5, self._runtime.settings.max_workers, len(self._planned))
        with ThreadPoolExecutor(workers, thread_name_prefix="rotor-heal") as pool:
            reports = list(
                pool.map(
                    lambda p: consume.run_redeploy_job(
                        p[0].job, self._runtime, (p[0].snapshot, p[0].verdict)
                    ),
                    self._planned,
                )
            )
        for (planned, result), done in zip(self._planned, reports, strict=True):
            for name, value in done.metrics.items():
                self._report.count(name, value)
            assert done.result is not None
            result.reason = done.result.reason
            status = done.result.status
            if status is JobStatus.REDEPLOYED:
                result.action = Action.REDEPLOYED
            elif status is JobStatus.DEFERRED:
                result.action = Action.DEFERRED
            elif status is JobStatus.NOTIFIED:
                result.action = Action.NOTIFY
            elif status is JobStatus.FAILED:
                result.action = Action.FAILED
                self._report.failed.append(
                    Failure(planned.job.service_arn, done.result.reason, done.result.retryable)
                )
            else:
                result.action = Action.SKIPPED


class _OutOfTime(Exception):
    """A secret's search was cut short by the pass's deadline."""


def _deployed_at_or_after(consumer: Consumer, created: datetime | None) -> bool:
    """Whether the consumer's PRIMARY deployment may hold the version: made at or after the
    version's creation (before it, or of unknown age, it holds an older value)."""
    primary = consumer.service.primary_created_at
    if primary is None or consumer.pinned:
        return False
    return created is None or utc(primary) >= created
