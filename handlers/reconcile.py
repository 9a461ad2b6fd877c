"""Lambda: the reconciler, on a schedule (an EventBridge rule, ``ReconcileSchedule``).

Each invocation runs one pass of ``orchestration.reconcile``, the code ``rotor reconcile``
runs: a paced full scan, the consumer index rebuilt, and every consumer a lost event left
stale queued for the worker (``HealedByReconciler``). A pass that fails is counted
(``ProcessingErrors``) and raised: the function's ``Errors`` alarm sees it, and the next
scheduled pass starts again from the account as it is (the schedule is the retry).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.entry import runtime_from_environment
from handlers.observability import (
    add_counts,
    aws_call_failed,
    logger,
    metrics,
    tracer,
    unexpected_error,
)
from orchestration import AwsCallError, Runtime, lambda_deadline, reconcile


def make_reconcile_handler(
    runtime_factory: Callable[[], Runtime] = runtime_from_environment,
) -> Callable[[Any, LambdaContext], dict[str, Any]]:
    """The reconcile function's handler, with one runtime per container."""
    container_runtime = lru_cache(maxsize=1)(runtime_factory)

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        if isinstance(event, dict) and isinstance(event.get("id"), str):
            logger.set_correlation_id(event["id"])
        runtime = container_runtime().with_deadline(
            lambda_deadline(context.get_remaining_time_in_millis)
        )
        try:
            report = reconcile(runtime)
        except AwsCallError as exc:
            aws_call_failed(exc, "the next scheduled pass starts again")
            raise
        except Exception as exc:
            unexpected_error(exc, "the next scheduled pass starts again")
            raise
        add_counts(report.metrics)
        summary = report.to_dict()
        logger.info(
            "reconciled",
            extra={
                "services_scanned": summary["services_scanned"],
                "secrets": len(summary["secrets"]),
                "healed": summary["healed"],
                "failed": summary["failed"],
                "index": summary["index"],
            },
        )
        return {
            "status": "reconciled",
            "healed": sorted(c.service_arn for c in report.healed),
            "failed": summary["failed"],
        }

    return lambda_handler


lambda_handler = make_reconcile_handler()
