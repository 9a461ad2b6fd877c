"""Rotation → redeploy: after a secret gets a new current value, redeploy each stale consumer once.

classify (events) → resolve the secret (secret_lookup) → discover consumers (discovery)
→ decide per consumer (freshness) → UpdateService(forceNewDeployment) (redeploy).
"""

from __future__ import annotations

import logging
from typing import Any

from orchestration.errors import AwsCallError
from orchestration.events.classification import Classification, EventKind
from orchestration.models import Action, Outcome, Verdict
from orchestration.outcome import (
    CONSUMERS_FOUND,
    MANUAL_REDEPLOYS,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_SUPPRESSED,
    REDEPLOY_FAILURES,
    REDEPLOYS_SKIPPED,
    REDEPLOYS_STARTED,
    EventOutcome,
    Failure,
    Skipped,
)
from orchestration.rotation.freshness import plan
from orchestration.rotation.manual import manual_notification, manual_redeploy
from orchestration.runtime import Runtime
from orchestration.times import iso

log = logging.getLogger(__name__)


def handle_new_secret_value(event: Classification, runtime: Runtime) -> EventOutcome:
    """Redeploy every stale consumer of the secret ``event`` says got a new current value."""
    outcome = EventOutcome(event)
    secret = runtime.secret_lookup().resolve(
        event.secret_id,
        account=event.account,
        region=event.region,
        written_by_aws=event.secret_written_by_aws,
    )
    outcome.secret = secret.arn
    # The version that became AWSCURRENT names this change: deliveries of one rotation share it.
    version = event.version_id
    if version is None and event.kind is EventKind.ROTATION:
        version = (
            runtime.secret_lookup()
            .describe(secret.arn, account=secret.account, region=secret.region, written_by_aws=True)
            .current_version
        )
    change = f"{secret.arn}@{version}" if version else None
    inventory = runtime.discovery().scan()
    consumers = inventory.consumers_of(secret)
    outcome.report_scan(inventory)
    verdicts = plan(consumers, event.event_time, opt_in=runtime.settings.opt_in)
    outcome.consumers = [describe_verdict(v) for v in verdicts]
    outcome.count(CONSUMERS_FOUND, len(consumers))
    for verdict in verdicts:
        if verdict.action is Action.SKIP:
            outcome.skipped.append(Skipped(verdict.service_arn, verdict.reason))
        elif verdict.action is Action.MANUAL:
            outcome.manual.append(manual_redeploy(verdict))
    redeploy_failures = 0
    for result in runtime.redeployer().redeploy(verdicts, event.event_time, change):
        if result.outcome is Outcome.REDEPLOYED:
            outcome.redeployed.append(result.service_arn)
        elif result.outcome is Outcome.ALREADY_FRESH:
            outcome.skipped.append(Skipped(result.service_arn, result.reason or "already fresh"))
        else:
            redeploy_failures += 1
            outcome.failed.append(
                Failure(result.service_arn, result.error or "?", result.retryable)
            )
    if outcome.manual:
        outcome.count(MANUAL_REDEPLOYS, len(outcome.manual))
        _notify_manual(event, runtime, secret.arn, change, outcome)
    outcome.count(REDEPLOYS_STARTED, len(outcome.redeployed))
    outcome.count(REDEPLOYS_SKIPPED, len(outcome.skipped))
    outcome.count(REDEPLOY_FAILURES, redeploy_failures)
    log.info(
        "secret %s: %d consumers, %d redeployed, %d skipped, %d by hand, %d failed",
        secret.arn,
        len(consumers),
        len(outcome.redeployed),
        len(outcome.skipped),
        len(outcome.manual),
        len(outcome.failed),
    )
    return outcome


def _notify_manual(
    event: Classification,
    runtime: Runtime,
    secret_arn: str,
    change: str | None,
    outcome: EventOutcome,
) -> None:
    """One notification per change (deliveries of one rotation share the notify window)."""
    key = f"manual-redeploy|{change or f'{secret_arn}@{iso(event.event_time)}'}"
    if not runtime.notify_window.claim(key, event.event_time):
        outcome.notifications_suppressed += 1
        outcome.count(NOTIFICATIONS_SUPPRESSED)
        return
    notification = manual_notification(event, secret_arn, outcome.manual)
    try:
        runtime.notifier.publish(notification)
    except Exception:
        # Not sent: give the window back so the retried event notifies.
        try:
            runtime.notify_window.release(key)
        except AwsCallError as exc:  # keep the original error; say this one too
            log.error("could not release the notify window for %s: %s", key, exc)
        raise
    outcome.notifications.append(notification)
    outcome.count(NOTIFICATIONS_SENT)


def describe_verdict(verdict: Verdict) -> dict[str, Any]:
    return {
        **verdict.consumer.to_dict(),
        "action": verdict.action.value,
        "reason": verdict.reason,
    }
