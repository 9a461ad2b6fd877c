"""Force a new deployment of each service that the plan says is stale, once.

Each redeploy is first claimed in the redeploy ledger (``orchestration.state.redeploy_ledger``) for
the new value at hand, so that another delivery of the same new value, handled at the same time
or later with another event time, does not deploy again; a failed redeploy gives the claim back.
``UpdateService(forceNewDeployment=True)`` goes through the retry policy. After an attempt that
may have landed (a timeout, a server error: not a throttled call, which AWS refused), and after
a last attempt like that, rotor looks at the service again: if the attempt did land, the
PRIMARY deployment is fresh and rotor stops, so a retry never deploys twice. A throttled attempt
costs one call, not two: under heavy throttling the budget goes to what can fail.
The claim, the redeploy and the confirmation of one service share one budget of retries and
one deadline (``RetryPolicy.budget``). A permanent error (access denied, service gone) fails
that service only; the others go on.

Only services on the ECS deployment controller are sent ``UpdateService(forceNewDeployment)``:
AWS refuses it for CODE_DEPLOY and EXTERNAL services (the freshness rule gives those
``Action.MANUAL``, and rotor tells people what to run instead).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from orchestration.aws.retry import RetryPolicy, refused_before_acting
from orchestration.ecs.shapes import primary_deployment
from orchestration.errors import AwsCallError, RetryableAwsError
from orchestration.models import Action, Outcome, RedeployResult, Verdict
from orchestration.state.redeploy_ledger import Claim, NewValue, RedeployLedger, Refusal
from orchestration.times import utc, value_current_by

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

log = logging.getLogger(__name__)


class Redeployer:
    """Claims each stale service in the ledger, then forces a new deployment of it.

    ``change`` names the new value (``NewValue``: the secret and its current version), so that
    two deliveries of one rotation carrying different times still redeploy once.
    """

    def __init__(
        self,
        ecs: ECSClient,
        retry: RetryPolicy,
        ledger: RedeployLedger,
        *,
        max_workers: int = 5,
    ) -> None:
        self._ecs = ecs
        self._retry = retry
        self._ledger = ledger
        self._max_workers = max_workers

    def redeploy(
        self, verdicts: Sequence[Verdict], rotated_at: datetime, change: NewValue | None = None
    ) -> list[RedeployResult]:
        # The verdict is the one place that knows which controllers take a forced deployment:
        # CODE_DEPLOY and EXTERNAL services are Action.MANUAL (AWS refuses the call).
        stale = [v for v in verdicts if v.action is Action.REDEPLOY]
        if not stale:
            return []
        with ThreadPoolExecutor(min(self._max_workers, len(stale))) as pool:
            return list(pool.map(lambda v: self._claim_and_redeploy(v, rotated_at, change), stale))

    def _claim_and_redeploy(
        self, verdict: Verdict, rotated_at: datetime, change: NewValue | None
    ) -> RedeployResult:
        with self._retry.budget():  # claim, redeploy and confirm: one budget, one deadline
            return self._claim_and_redeploy_in_budget(verdict, rotated_at, change)

    def _claim_and_redeploy_in_budget(
        self, verdict: Verdict, rotated_at: datetime, change: NewValue | None
    ) -> RedeployResult:
        service = verdict.consumer.service
        if change is None:  # no value to name: the freshness rule alone decides
            return self._redeploy_one(verdict, rotated_at)
        owner = uuid.uuid4().hex  # one claim, the same across its retries

        def claim_or_wait() -> Claim | Refusal:
            # While another invocation holds the claim, wait (with backoff) for its outcome.
            lease = timedelta(seconds=min(max(self._retry.remaining(), 0.0), 86400.0))
            answer = self._ledger.claim(
                service.arn,
                change,
                service.primary_created_at,
                datetime.now(UTC),
                lease,
                owner=owner,
            )
            if isinstance(answer, Refusal) and answer.held_elsewhere:
                raise RetryableAwsError("ClaimRedeploy", "ClaimHeldElsewhere", answer.reason)
            return answer

        try:
            claim = self._retry.call("ClaimRedeploy", claim_or_wait)
        except AwsCallError as exc:
            return self._failed(service.arn, service.cluster_arn, exc)
        if isinstance(claim, Refusal):
            return RedeployResult(
                service.arn, service.cluster_arn, Outcome.ALREADY_FRESH, reason=claim.reason
            )
        result = self._redeploy_one(verdict, rotated_at)
        try:
            if result.outcome is Outcome.FAILED:
                self._ledger.release(claim)
            else:
                self._ledger.confirm(claim, result.created_at or claim.claimed_at)
        except AwsCallError as exc:
            # Keep the redeploy's own result. An unconfirmed claim does not block the next
            # delivery: it sees a deployment newer than the claim, and stops there.
            log.error("could not record the redeploy of %s in the ledger: %s", service.arn, exc)
        return result

    def _failed(self, service_arn: str, cluster_arn: str, exc: AwsCallError) -> RedeployResult:
        log.warning("redeploy of %s failed: %s", service_arn, exc)
        return RedeployResult(
            service_arn,
            cluster_arn,
            Outcome.FAILED,
            error=str(exc),
            retryable=isinstance(exc, RetryableAwsError),
        )

    def _redeploy_one(self, verdict: Verdict, rotated_at: datetime) -> RedeployResult:
        service = verdict.consumer.service
        may_have_landed = False  # the last attempt failed in a way that may hide a deployment

        def landed() -> RedeployResult | None:
            # The deployment of an attempt whose answer was lost is rotor's own (the claim is
            # held): it is reported as made, so it is recorded and its end is tracked.
            primary = self._primary(service.cluster_arn, service.arn)
            created = primary.get("createdAt") if primary else None
            if created is None or utc(created) < value_current_by(rotated_at):
                return None
            return RedeployResult(
                service.arn,
                service.cluster_arn,
                Outcome.REDEPLOYED,
                primary.get("id") if primary else None,
                reason="an earlier attempt's deployment landed (its answer was lost)",
                created_at=created,
            )

        def update() -> RedeployResult:
            nonlocal may_have_landed
            if may_have_landed:
                if found := landed():
                    return found
                may_have_landed = False
            try:
                answer = self._ecs.update_service(
                    cluster=service.cluster_arn, service=service.arn, forceNewDeployment=True
                )
            except (ClientError, BotoCoreError) as exc:
                may_have_landed = not refused_before_acting(exc)
                raise
            primary = primary_deployment(answer.get("service") or {}) or {}
            return RedeployResult(
                service.arn,
                service.cluster_arn,
                Outcome.REDEPLOYED,
                primary.get("id"),
                created_at=primary.get("createdAt"),
            )

        try:
            result = self._retry.call("UpdateService", update)
        except AwsCallError as exc:
            # A timeout or server error on the last attempt may hide a call that did land.
            if may_have_landed:
                try:
                    found = landed()
                except Exception:  # best effort: the original error is what to report
                    found = None
                if found:
                    return found
            return self._failed(service.arn, service.cluster_arn, exc)
        log.info("%s %s (deployment %s)", result.outcome, service.arn, result.deployment_id)
        return result

    def _primary(self, cluster: str, service: str) -> Mapping[str, Any] | None:
        """The service's current PRIMARY deployment, as ECS says now."""
        # A botocore error here propagates to the retry loop, which maps and judges it.
        answer = self._ecs.describe_services(cluster=cluster, services=[service])
        services = answer.get("services") or []
        return primary_deployment(services[0]) if services else None
