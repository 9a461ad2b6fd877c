"""What a rotor function does with one event, for the Lambda handlers and ``rotor replay`` alike.

``handle`` is the per-event path: classify, check that the event's account is trusted, check
that the function acts on its kind, run the use case, and say what happened (``Handled``). A
Lambda handler (``handlers/entry.py``) calls it and adds what only Lambda has (logs, metrics,
the retry); ``rotor replay`` and ``rotor demo`` call it with the same arguments and print the
result. Only the runtime differs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestration.alarms.use_cases import (
    handle_deletion_scheduled,
    handle_pending_deletion_access,
    handle_rotation_failed,
)
from orchestration.errors import InvalidEventError, InvalidReferenceError
from orchestration.events.classification import (
    ALARM_KINDS,
    INDEX_KINDS,
    REDEPLOY_KINDS,
    TRACKER_KINDS,
    Classification,
    EventKind,
    classify,
)
from orchestration.indexing.service_changes import handle_service_change
from orchestration.outcome import INVALID_EVENTS, UNTRUSTED_EVENTS, EventOutcome
from orchestration.rotation.new_value import handle_new_secret_value
from orchestration.runtime import Runtime
from orchestration.tracking.tracker import handle_deployment_state

UseCase = Callable[[Classification, Runtime], EventOutcome]

USE_CASES: dict[EventKind, UseCase] = {
    EventKind.ROTATION: handle_new_secret_value,
    EventKind.SECRET_VALUE_CHANGED: handle_new_secret_value,
    EventKind.PENDING_DELETION_ACCESS: handle_pending_deletion_access,
    EventKind.DELETION_SCHEDULED: handle_deletion_scheduled,
    EventKind.ROTATION_FAILED: handle_rotation_failed,
    EventKind.DEPLOYMENT_STATE: handle_deployment_state,
    EventKind.SERVICE_CHANGED: handle_service_change,
    EventKind.SERVICE_DELETED: handle_service_change,
}

#: The kinds each function of ``infra/template.yaml`` acts on, by its ``Handler``: the handler
#: modules build themselves from this table, and ``rotor replay`` looks up the routed function
#: in it.
HANDLER_KINDS: Mapping[str, frozenset[EventKind]] = {
    # The rotation function also keeps the consumer index (ECS service changes): it already
    # has the ECS reads and a metered share of ECS's limits.
    "handlers.rotation.lambda_handler": frozenset(REDEPLOY_KINDS | INDEX_KINDS),
    "handlers.alarms.lambda_handler": frozenset(ALARM_KINDS),
    "handlers.tracker.lambda_handler": frozenset(TRACKER_KINDS),
}

Status = Literal["dropped", "rejected", "ignored", "processed"]


def process(event: Classification, runtime: Runtime) -> EventOutcome:
    """Run the use case for ``event``; a kind without one does nothing (and says so)."""
    use_case = USE_CASES.get(event.kind)
    if use_case is not None:
        return use_case(event, runtime)
    return EventOutcome(event)


@dataclass(frozen=True, slots=True)
class Handled:
    """What a function did with one event.

    ``dropped``: not an event rotor can read (``reason`` says why); ``rejected``: from an
    account that is not trusted; ``ignored``: a kind this function does not act on;
    ``processed``: the use case ran (``outcome``). ``metrics`` is what to count.
    """

    status: Status
    classification: Classification | None
    reason: str = ""
    outcome: EventOutcome | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    def as_outcome(self) -> EventOutcome | None:
        """The outcome to show: the use case's, or an empty one whose note says why nothing
        ran (None for a dropped event, which has no classification)."""
        if self.outcome is not None:
            return self.outcome
        if self.classification is None:
            return None
        note = f"{self.status}: {self.reason}" if self.reason else self.status
        return EventOutcome(self.classification, notes=[note], metrics=dict(self.metrics))


def untrusted_reason(
    event_account: str, own_account: str | None, trusted: Collection[str]
) -> str | None:
    """Why an event from ``event_account`` is not accepted by a function running in
    ``own_account`` (None when unknown), or None when it is accepted."""
    if event_account == own_account or event_account in trusted:
        return None
    allowed = ", ".join(sorted({*trusted, *([own_account] if own_account else [])})) or "none"
    return f"event from account {event_account}, not one of {allowed} (ROTOR_TRUSTED_ACCOUNTS)"


def handle(
    event: Any,
    accept: Collection[EventKind],
    runtime: Callable[[], Runtime],
    own_account: Callable[[], str | None],
    *,
    classified: Callable[[Classification], None] | None = None,
) -> Handled:
    """The per-event path of a function acting on the kinds in ``accept``: classify, the trust
    check (its own account, asked for only when needed, and ``ROTOR_TRUSTED_ACCOUNTS``), the
    kind, the use case. ``runtime`` is called once the event is readable; ``classified`` is
    told the classification first (the handler's log keys). AWS errors raise."""
    try:
        classification = classify(event)
    except (InvalidEventError, InvalidReferenceError) as exc:
        return Handled("dropped", None, reason=str(exc), metrics={INVALID_EVENTS: 1})
    if classified is not None:
        classified(classification)
    rt = runtime()
    trusted = rt.settings.trusted_accounts
    untrusted = (
        None
        if classification.account in trusted
        else untrusted_reason(classification.account, own_account(), trusted)
    )
    if untrusted:
        return Handled("rejected", classification, reason=untrusted, metrics={UNTRUSTED_EVENTS: 1})
    if classification.kind not in accept:
        return Handled("ignored", classification, reason=classification.reason)
    outcome = process(classification, rt)
    return Handled("processed", classification, outcome=outcome, metrics=dict(outcome.metrics))
