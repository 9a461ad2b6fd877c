"""Force a new deployment of each service that the plan says is stale, once.

``UpdateService(forceNewDeployment=True)`` goes through the retry policy. Before any retry,
rotor looks at the service again: if an earlier attempt did land (a timeout after ECS accepted
it), the PRIMARY deployment is now fresh and rotor stops, so a retry never deploys twice.
A permanent error (access denied, service gone) fails that service only; the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from orchestration.discovery import snapshot_of
from orchestration.errors import AwsCallError, RetryableAwsError
from orchestration.freshness import Action, Verdict
from orchestration.redeploy_ledger import RedeployLedger
from orchestration.retry import RetryPolicy
from orchestration.times import utc

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    REDEPLOYED = "redeployed"
    ALREADY_FRESH = "already_fresh"  # the ledger or a retry found a deployment made for it
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RedeployResult:
    service_arn: str
    cluster_arn: str
    outcome: Outcome
    deployment_id: str | None = None
    error: str | None = None
    retryable: bool = False  # for FAILED: a later retry of the event may succeed
    reason: str | None = None  # for ALREADY_FRESH: why


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
        stale = [v for v in verdicts if v.action is Action.REDEPLOY]
        if not stale:
            return []
        with ThreadPoolExecutor(min(self._max_workers, len(stale))) as pool:
            return list(pool.map(lambda v: self._claim_and_redeploy(v, rotated_at, change), stale))

    def _claim_and_redeploy(
        self, verdict: Verdict, rotated_at: datetime, change: str | None
    ) -> RedeployResult:
        service = verdict.consumer.service
        try:
            claim = self._ledger.claim(service.arn, change, rotated_at, datetime.now(UTC))
        except AwsCallError as exc:
            return self._failed(service.arn, service.cluster_arn, exc)
        if isinstance(claim, str):
            return RedeployResult(
                service.arn, service.cluster_arn, Outcome.ALREADY_FRESH, reason=claim
            )
        result = self._redeploy_one(verdict, rotated_at)
        if result.outcome is Outcome.FAILED:
            try:
                self._ledger.release(claim)
            except AwsCallError as exc:  # keep the redeploy's own error; say this one too
                log.error("could not release the ledger claim on %s: %s", service.arn, exc)
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

        def update() -> RedeployResult:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and self._landed_since(service.cluster_arn, service.arn, rotated_at):
                return RedeployResult(
                    service.arn,
                    service.cluster_arn,
                    Outcome.ALREADY_FRESH,
                    reason="already fresh: an earlier attempt's deployment landed",
                )
            answer = self._ecs.update_service(
                cluster=service.cluster_arn, service=service.arn, forceNewDeployment=True
            )
            deployments = answer.get("service", {}).get("deployments", [])
            primary: Mapping[str, Any] = next(
                (d for d in deployments if d.get("status") == "PRIMARY"), {}
            )
            return RedeployResult(
                service.arn, service.cluster_arn, Outcome.REDEPLOYED, primary.get("id")
            )

        try:
            result = self._retry.call("UpdateService", update)
        except AwsCallError as exc:
            return self._failed(service.arn, service.cluster_arn, exc)
        log.info("%s %s (deployment %s)", result.outcome, service.arn, result.deployment_id)
        return result

    def _landed_since(self, cluster: str, service: str, rotated_at: datetime) -> bool:
        """Whether the service's PRIMARY deployment is already newer than the rotation."""
        # A botocore error here propagates to the retry loop, which maps and judges it.
        answer = self._ecs.describe_services(cluster=cluster, services=[service])
        services = answer.get("services", [])
        if not services:
            return False
        created = snapshot_of(services[0]).primary_created_at
        if created is None:
            return False
        return utc(created) >= utc(rotated_at)
