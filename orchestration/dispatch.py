"""Route a classified event to its use case. Shared by the Lambda handlers and ``rotor replay``."""

from __future__ import annotations

from collections.abc import Callable

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


def process(event: Classification, runtime: Runtime) -> EventOutcome:
    """Run the use case for ``event``; a kind without one does nothing (and says so)."""
    use_case = USE_CASES.get(event.kind)
    if use_case is not None:
        return use_case(event, runtime)
    return EventOutcome(event)
