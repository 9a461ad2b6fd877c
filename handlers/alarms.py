"""Lambda: reads of secrets scheduled for deletion, deletions still in use, failed rotations."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.entry import handle_event
from handlers.observability import logger, metrics, tracer
from orchestration.events.classification import EventKind

ALARM_KINDS = frozenset(
    {
        EventKind.PENDING_DELETION_ACCESS,
        EventKind.DELETION_SCHEDULED,
        EventKind.ROTATION_FAILED,
    }
)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    return handle_event(event, context, accept=ALARM_KINDS)
