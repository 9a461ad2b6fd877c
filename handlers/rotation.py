"""Lambda: a secret got a new current value → redeploy the services that hold the old one."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.entry import handle_event
from handlers.observability import logger, metrics, tracer
from orchestration.events.classification import REDEPLOY_KINDS


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    return handle_event(event, context, accept=REDEPLOY_KINDS)
