"""Rotation → redeploy: after a secret gets a new current value, redeploy each stale consumer once.

classify (events) → resolve the secret (secret_lookup) → discover consumers (discovery)
→ decide per consumer (freshness) → UpdateService(forceNewDeployment) (redeploy).
"""

from __future__ import annotations

import logging
from typing import Any

from orchestration.ecs.discovery import Inventory
from orchestration.ecs.redeploy import Outcome
from orchestration.events.classification import Classification
from orchestration.outcome import (
    CONSUMERS_FOUND,
    REDEPLOY_FAILURES,
    REDEPLOYS_SKIPPED,
    REDEPLOYS_STARTED,
    UNREADABLE_REFERENCES,
    EventOutcome,
)
from orchestration.rotation.freshness import Action, Verdict, plan
from orchestration.runtime import Runtime
from orchestration.secrets.lookup import SecretFacts, SecretLookup
from orchestration.secrets.references import SecretIdentity
from orchestration.state.redeploy_ledger import NewValue

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
    report_unreadable(inventory, outcome)
    verdicts = plan(consumers, event.event_time, opt_in=runtime.settings.opt_in)
    outcome.consumers = [describe_verdict(v) for v in verdicts]
    outcome.count(CONSUMERS_FOUND, len(consumers))
    for verdict in verdicts:
        if verdict.action is Action.SKIP:
            outcome.skipped.append({"service": verdict.service_arn, "reason": verdict.reason})
    change = new_value(event, secret, lookup, described) if any_stale(verdicts) else None
    for result in runtime.redeployer().redeploy(verdicts, event.event_time, change):
        if result.outcome is Outcome.REDEPLOYED:
            outcome.redeployed.append(result.service_arn)
        elif result.outcome is Outcome.ALREADY_FRESH:
            outcome.skipped.append(
                {"service": result.service_arn, "reason": result.reason or "already fresh"}
            )
        else:
            outcome.failed.append(
                {
                    "service": result.service_arn,
                    "error": result.error or "?",
                    "retryable": result.retryable,
                }
            )
    outcome.count(REDEPLOYS_STARTED, len(outcome.redeployed))
    outcome.count(REDEPLOYS_SKIPPED, len(outcome.skipped))
    outcome.count(REDEPLOY_FAILURES, len(outcome.failed))
    log.info(
        "secret %s: %d consumers, %d redeployed, %d skipped, %d failed",
        secret.arn,
        len(consumers),
        len(outcome.redeployed),
        len(outcome.skipped),
        len(outcome.failed),
    )
    return outcome


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


def any_stale(verdicts: list[Verdict]) -> bool:
    return any(v.action is Action.REDEPLOY for v in verdicts)


def report_unreadable(inventory: Inventory, outcome: EventOutcome) -> None:
    """References ECS may accept but rotor cannot parse: a consumer rotor might miss."""
    for bad in inventory.unreadable:
        outcome.notes.append(
            f"unreadable reference in {bad.task_definition} container {bad.container}: {bad.error}"
        )
    if inventory.unreadable:
        outcome.count(UNREADABLE_REFERENCES, len(inventory.unreadable))


def describe_verdict(verdict: Verdict) -> dict[str, Any]:
    return {
        **verdict.consumer.to_dict(),
        "action": verdict.action.value,
        "reason": verdict.reason,
    }
