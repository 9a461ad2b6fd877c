"""What every rotor Lambda does around its use case: count, log, report, retry.

The per-event path itself (classify, the trust check, the kinds the function acts on, the use
case) is ``orchestration.handle``, which ``rotor replay`` runs too; what is Lambda's own is
here: the deadline, the function's account (from its ARN), Powertools' logs and metrics, and
raising so that Lambda retries.

A handler is built by ``make_handler(accept, runtime_factory)``: the kinds of event the function
acts on, and how to build its runtime. The runtime is built on the first event the function
accepts and kept for the life of the container (clients, caches and in-memory state stay
warm); tests hand in a factory of their own instead of patching a module.

EventBridge invokes these functions asynchronously, so the return value is only for logs and
tests. Poison input (not an event rotor can read) is logged, counted and dropped: retrying it
cannot help. An error that stops the event (an AWS error, or any exception rotor does not
expect), and a failure a retry may fix (a redeploy or a cluster scan that failed with a
retryable error), raise: Lambda's async retries and then the function's on-failure destination
keep the event (nothing is lost), and the redeploy ledger and freshness rule make a retry safe.
Every error that stops an event is logged with the event's correlation id and counted in
``ProcessingErrors``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.observability import (
    add_counts,
    aws_call_failed,
    logger,
    metrics,
    tracer,
    unexpected_error,
)
from handlers.trust import own_account
from orchestration import (
    AwsCallError,
    AwsClients,
    Classification,
    EventKind,
    RetryableFailure,
    Runtime,
    Settings,
    handle,
    lambda_deadline,
)

LambdaHandler = Callable[[Any, LambdaContext], dict[str, Any]]


def runtime_from_environment() -> Runtime:
    """The container's runtime: settings validated from ``ROTOR_*``, clients from the role."""
    return Runtime.build(AwsClients(), Settings.from_env())


def make_handler(
    accept: Collection[EventKind],
    runtime_factory: Callable[[], Runtime] = runtime_from_environment,
) -> LambdaHandler:
    """A Lambda handler for the event kinds in ``accept``, with one runtime per container."""
    container_runtime = lru_cache(maxsize=1)(runtime_factory)
    kinds = frozenset(accept)

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        return handle_event(event, context, kinds, container_runtime)

    return lambda_handler


@tracer.capture_method
def handle_event(
    event: Any,
    context: LambdaContext,
    accept: Collection[EventKind],
    runtime: Callable[[], Runtime],
) -> dict[str, Any]:
    if isinstance(event, dict) and isinstance(event.get("id"), str):
        logger.set_correlation_id(event["id"])
    try:
        return _handle_event(event, context, accept, runtime)
    except (AwsCallError, RetryableFailure):
        raise  # logged and counted where they were raised
    except Exception as exc:
        # Nothing rotor expects: count it (the ProcessingErrors alarm watches it), log it with
        # the correlation id, and raise so Lambda retries the event and then keeps it.
        unexpected_error(exc, "the event will be retried")
        raise


def _handle_event(
    event: Any,
    context: LambdaContext,
    accept: Collection[EventKind],
    runtime: Callable[[], Runtime],
) -> dict[str, Any]:
    def classified(classification: Classification) -> None:
        logger.set_correlation_id(classification.event_id)
        # ``name`` (the logging record's logger name) tells rotor's domain lines apart; the
        # clear_state of each invocation drops it with the other keys, so it is added here.
        logger.append_keys(
            name="%(name)s", kind=classification.kind.value, secret=classification.secret
        )
        tracer.put_annotation("kind", classification.kind.value)

    try:
        # The path ``rotor replay`` runs too; what is Lambda's own is the deadline, the
        # function's account and what follows: logs, metrics, the retry.
        handled = handle(
            event,
            accept,
            lambda: runtime().with_deadline(lambda_deadline(context.get_remaining_time_in_millis)),
            lambda: own_account(context.invoked_function_arn),
            classified=classified,
        )
    except AwsCallError as exc:
        # Raise so Lambda retries the event and finally hands it to the on-failure target.
        aws_call_failed(exc, "the event will be retried")
        raise
    add_counts(handled.metrics)
    if handled.status == "dropped":
        logger.error(
            "dropped an event rotor cannot read",
            extra={"error": handled.reason, "event_summary": _summary(event)},
        )
        logger.debug("dropped event body", extra={"event": event})
        return {"status": "dropped", "error": handled.reason}
    kind = handled.classification.kind.value if handled.classification else None
    if handled.status == "rejected":
        logger.warning(
            "rejected an event from an untrusted account", extra={"error": handled.reason}
        )
        return {"status": "rejected", "kind": kind, "reason": handled.reason}
    if handled.status == "ignored" or handled.outcome is None:
        logger.info("not for this function", extra={"reason": handled.reason})
        return {"status": "ignored", "kind": kind, "reason": handled.reason}
    outcome = handled.outcome
    result = outcome.to_dict()
    result.pop("notifications")
    logger.info(
        "processed",
        extra={key: result[key] for key in ("redeployed", "skipped", "failed", "notes")},
    )
    retryable = outcome.retryable_failures
    if retryable:
        raise RetryableFailure(
            f"{len(retryable)} redeploy(s) or scan(s) failed with retryable errors "
            f"({', '.join(f.subject for f in retryable[:3])}); retry the event"
        )
    return {"status": "processed", **result}


def _summary(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        return {"type": type(event).__name__}
    keys = ("id", "source", "detail-type", "account", "region", "time")
    return {key: event.get(key) for key in keys if isinstance(event.get(key), str | int)}
