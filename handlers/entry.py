"""What every rotor Lambda does around its use case: classify, process, count, report.

EventBridge invokes these functions asynchronously, so the return value is only for logs and
tests. Poison input (not an event rotor can read) is logged, counted and dropped: retrying it
cannot help. An AWS error that stops the event, and a redeploy that failed with a retryable
error, raise: Lambda's async retries and then the function's on-failure destination keep the
event (nothing is lost), and the redeploy ledger and freshness rule make a retry safe.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.observability import logger, metrics, tracer
from handlers.trust import untrusted_reason
from orchestration.aws.clients import AwsClients
from orchestration.dispatch import process
from orchestration.errors import (
    AwsCallError,
    InvalidEventError,
    InvalidReferenceError,
    RetryableAwsError,
)
from orchestration.events.classification import EventKind, classify
from orchestration.outcome import (
    INVALID_EVENTS,
    METRIC_UNITS,
    PROCESSING_ERRORS,
    UNTRUSTED_EVENTS,
)
from orchestration.runtime import Runtime, lambda_deadline
from orchestration.settings import Settings


class RetryableFailure(Exception):
    """Raised so Lambda retries the event (and finally hands it to the on-failure target)."""


@lru_cache(maxsize=1)
def cold_start_runtime() -> Runtime:
    """Built once per container: settings validated, clients and caches kept warm."""
    return Runtime.build(AwsClients(), Settings.from_env())


@tracer.capture_method
def handle_event(
    event: Any, context: LambdaContext, accept: Collection[EventKind]
) -> dict[str, Any]:
    try:
        classification = classify(event)
    except (InvalidEventError, InvalidReferenceError) as exc:
        metrics.add_metric(name=INVALID_EVENTS, unit=MetricUnit.Count, value=1)
        logger.error(
            "dropped an event rotor cannot read",
            extra={"error": str(exc), "event_summary": _summary(event)},
        )
        logger.debug("dropped event body", extra={"event": event})
        return {"status": "dropped", "error": str(exc)}
    logger.set_correlation_id(classification.event_id)
    logger.append_keys(kind=classification.kind.value, secret=classification.secret)
    tracer.put_annotation("kind", classification.kind.value)
    untrusted = untrusted_reason(
        classification.account,
        context.invoked_function_arn,
        cold_start_runtime().settings.trusted_accounts,
    )
    if untrusted:
        metrics.add_metric(name=UNTRUSTED_EVENTS, unit=MetricUnit.Count, value=1)
        logger.warning("rejected an event from an untrusted account", extra={"error": untrusted})
        return {"status": "rejected", "kind": classification.kind.value, "reason": untrusted}
    if classification.kind not in accept:
        logger.info("not for this function", extra={"reason": classification.reason})
        return {
            "status": "ignored",
            "kind": classification.kind.value,
            "reason": classification.reason,
        }
    runtime = cold_start_runtime().with_deadline(
        lambda_deadline(context.get_remaining_time_in_millis)
    )
    try:
        outcome = process(classification, runtime, accept=accept)
    except AwsCallError as exc:
        # Raise so Lambda retries the event and finally hands it to the on-failure target.
        metrics.add_metric(name=PROCESSING_ERRORS, unit=MetricUnit.Count, value=1)
        logger.error(
            "AWS call failed; the event will be retried",
            extra={
                "operation": exc.operation,
                "code": exc.code,
                "retryable": isinstance(exc, RetryableAwsError),
            },
        )
        raise
    for name, value in outcome.metrics.items():
        metrics.add_metric(name=name, unit=METRIC_UNITS.get(name, MetricUnit.Count), value=value)
    result = outcome.to_dict()
    result.pop("notifications")
    logger.info(
        "processed",
        extra={key: result[key] for key in ("redeployed", "skipped", "failed", "notes")},
    )
    retryable = [f for f in outcome.failed if f.get("retryable") is True]
    if retryable:
        raise RetryableFailure(
            f"{len(retryable)} redeploy(s) failed with retryable errors; retry the event"
        )
    return {"status": "processed", **result}


def _summary(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"type": type(event).__name__}
    keys = ("id", "source", "detail-type", "account", "region", "time")
    return {key: event.get(key) for key in keys if isinstance(event.get(key), str | int)}
