"""Route a classified event to its use case. Shared by the Lambda handlers and ``rotor replay``."""

from __future__ import annotations

from collections.abc import Callable, Collection

from orchestration.alarms.use_cases import (
    handle_deletion_scheduled,
    handle_pending_deletion_access,
    handle_rotation_failed,
)
from orchestration.events.classification import Classification, EventKind
from orchestration.outcome import EventOutcome
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
}


def process(
    event: Classification,
    runtime: Runtime,
    *,
    accept: Collection[EventKind] | None = None,
) -> EventOutcome:
    """Run the use case for ``event``; kinds outside ``accept`` (or without one) do nothing."""
    use_case = USE_CASES.get(event.kind)
    if use_case is None:
        return EventOutcome(event)
    if accept is not None and event.kind not in accept:
        outcome = EventOutcome(event)
        outcome.notes.append(f"this function does not handle {event.kind.value} events")
        return outcome
    return use_case(event, runtime)
