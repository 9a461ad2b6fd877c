"""Rotation → redeploy: after a secret gets a new current value, redeploy each stale consumer once.

classify (events) → resolve the secret (secret_lookup) → discover consumers (discovery)
→ decide per consumer (freshness) → UpdateService(forceNewDeployment) (redeploy).
"""

from __future__ import annotations

import logging
from typing import Any

from orchestration.errors import AwsCallError
from orchestration.events.classification import Classification
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
from orchestration.secrets.lookup import SecretFacts, SecretLookup
from orchestration.secrets.references import SecretIdentity
from orchestration.state.redeploy_ledger import NewValue, value_key
from orchestration.times import iso

log = logging.getLogger(__name__)


def handle_new_secret_value(event: Classification, runtime: Runtime) -> EventOutcome:
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
    change = new_value(event, secret, lookup, described) if any_to_deploy(verdicts) else None
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
    change: NewValue | None,
    outcome: EventOutcome,
) -> None:
    """One notification per new value (deliveries of one rotation share the notify window)."""
    value = value_key(change) if change else f"{secret_arn}@{iso(event.event_time)}"
    key = f"manual-redeploy|{value}"
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


def any_to_deploy(verdicts: list[Verdict]) -> bool:
    return any(v.action in (Action.REDEPLOY, Action.MANUAL) for v in verdicts)


def describe_verdict(verdict: Verdict) -> dict[str, Any]:
    return {
        **verdict.consumer.to_dict(),
        "action": verdict.action.value,
        "reason": verdict.reason,
    }
