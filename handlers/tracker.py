"""Lambda: follows the deployments rotor started to their end (ECS Deployment State Change)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.entry import handle_event
from handlers.observability import logger, metrics, tracer
from orchestration.events.classification import EventKind

TRACKER_KINDS = frozenset({EventKind.DEPLOYMENT_STATE})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    return handle_event(event, context, accept=TRACKER_KINDS)
