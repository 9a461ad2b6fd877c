"""Force a new deployment of each service that the plan says is stale, once.

Each redeploy is first claimed in the redeploy ledger (``orchestration.state.redeploy_ledger``) for
the change at hand, so that another delivery of the same new value, handled at the same time or
later with another event time, does not deploy again; a failed redeploy gives the claim back.
``UpdateService(forceNewDeployment=True)`` goes through the retry policy. Before any retry, and
after a last attempt that timed out, rotor looks at the service again: if an earlier attempt
did land, the PRIMARY deployment is fresh and rotor stops, so a retry never deploys twice.
A permanent error (access denied, service gone) fails that service only; the others go on.

Only services on the ECS deployment controller are sent ``UpdateService(forceNewDeployment)``:
AWS refuses it for CODE_DEPLOY and EXTERNAL services (the freshness rule gives those
``Action.MANUAL``, and rotor tells people what to run instead).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from orchestration.aws.retry import THROTTLING_CODES, RetryPolicy
from orchestration.ecs.shapes import primary_created_at, primary_deployment
from orchestration.errors import AwsCallError, RetryableAwsError
from orchestration.models import Action, Outcome, RedeployResult, Verdict
from orchestration.rotation.freshness import value_current_by
from orchestration.state.redeploy_ledger import Claim, RedeployLedger, Refusal
from orchestration.times import utc

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

log = logging.getLogger(__name__)


class Redeployer:
    """Claims each stale service in the ledger, then forces a new deployment of it.

    ``change`` names the new value (``secret ARN@version id``) when known, so that two
    deliveries of one rotation carrying different times still redeploy once.
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
        self, verdicts: Sequence[Verdict], rotated_at: datetime, change: str | None = None
    ) -> list[RedeployResult]:
        # Action.MANUAL (CODE_DEPLOY, EXTERNAL) never gets here: AWS refuses a forced deployment.
        stale = [
            v
            for v in verdicts
            if v.action is Action.REDEPLOY and v.consumer.service.rotor_can_redeploy
        ]
        if not stale:
            return []
        with ThreadPoolExecutor(min(self._max_workers, len(stale))) as pool:
            return list(pool.map(lambda v: self._claim_and_redeploy(v, rotated_at, change), stale))

    def _claim_and_redeploy(
        self, verdict: Verdict, rotated_at: datetime, change: str | None
    ) -> RedeployResult:
        service = verdict.consumer.service
        if change is None:  # version unknown: the freshness rule alone decides
            return self._redeploy_one(verdict, rotated_at)

        def claim_or_wait() -> Claim | Refusal:
            # While another invocation holds the claim, wait (with backoff) for its outcome.
            lease = timedelta(seconds=min(self._retry.remaining(), 86400.0))
            answer = self._ledger.claim(
                service.arn, change, service.primary_created_at, datetime.now(UTC), lease
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
        except AwsCallError as exc:  # keep the redeploy's own result; say this one too
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
        attempts = 0

        def landed() -> RedeployResult | None:
            created = self._primary_created_at(service.cluster_arn, service.arn)
            if created is None or utc(created) < value_current_by(rotated_at):
                return None
            return RedeployResult(
                service.arn,
                service.cluster_arn,
                Outcome.ALREADY_FRESH,
                reason="already fresh: an earlier attempt's deployment landed",
                created_at=created,
            )

        def update() -> RedeployResult:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and (found := landed()):
                return found
            answer = self._ecs.update_service(
                cluster=service.cluster_arn, service=service.arn, forceNewDeployment=True
            )
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
            if isinstance(exc, RetryableAwsError) and exc.code not in THROTTLING_CODES:
                try:
                    found = landed()
                except Exception:  # best effort: the original error is what to report
                    found = None
                if found:
                    return found
            return self._failed(service.arn, service.cluster_arn, exc)
        log.info("%s %s (deployment %s)", result.outcome, service.arn, result.deployment_id)
        return result

    def _primary_created_at(self, cluster: str, service: str) -> datetime | None:
        """When the service's current PRIMARY deployment was made, as ECS says now."""
        # A botocore error here propagates to the retry loop, which maps and judges it.
        answer = self._ecs.describe_services(cluster=cluster, services=[service])
        services = answer.get("services") or []
        return primary_created_at(services[0]) if services else None
