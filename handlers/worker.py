"""Lambda: carries out redeploy jobs from the redeploy queue (SQS event source, partial batch
failures).

Each message is one job (``orchestration.fanout``). A job waiting for its cluster's cap, or
for the replica of its secret to hold the new value, is sent again as a new, delayed message
(waiting is not failing: it must not count toward the queue's maxReceiveCount). A job that
must be tried again (throttled, an AWS error) is hidden for a time that grows with its receive
count and reported as a batch item failure; after the queue's maxReceiveCount it moves to the
dead-letter queue, which is alarmed. A message that is not a job is logged, counted
(``InvalidEvents``) and dropped: retrying it cannot help.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
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
from orchestration import (
    INVALID_EVENTS,
    AwsCallError,
    InvalidEventError,
    PlanJob,
    RedeployJob,
    Runtime,
    SqsJobQueue,
    TryAgainLater,
    deferral_delay,
    lambda_deadline,
    parse_job,
    queue_url,
    run_job,
)


def _record_handler(record: SQSRecord, runtime: Runtime) -> dict[str, Any]:
    try:
        job = parse_job(record.body)
    except InvalidEventError as exc:
        metrics.add_metric(name=INVALID_EVENTS, unit=MetricUnit.Count, value=1)
        logger.error(
            "dropped a message that is not a rotor job",
            extra={"error": str(exc), "message_id": record.message_id},
        )
        return {"status": "dropped", "error": str(exc)}
    receives = int(record.attributes.approximate_receive_count or 1)
    logger.append_keys(job=job.key, receive_count=receives)
    try:
        report = run_job(job, runtime, receive_count=receives)
    except AwsCallError as exc:
        aws_call_failed(exc, "the job will be tried again")
        _come_back_later(record, runtime, receives)
        raise TryAgainLater(str(exc)) from exc
    except Exception as exc:
        # Nothing rotor expects: counted (the ProcessingErrors alarm watches it), logged with
        # the job (appended to every line above), and the job put back like any failure.
        unexpected_error(exc, "the job will be tried again")
        _come_back_later(record, runtime, receives)
        raise TryAgainLater(f"{type(exc).__name__}: {exc}") from exc
    add_counts(report.metrics)
    logger.info("job done", extra={"status": report.status, **report.detail})
    # The job as it goes on waiting (a replica's consumer's says since when it waits).
    again = report.result.job if report.result is not None else job
    if report.deferred and _send_again_later(again, record, runtime):
        return {"status": report.status, **report.detail}
    if report.retryable:
        _come_back_later(record, runtime, receives)
        raise TryAgainLater(f"{report.status}: {report.detail.get('reason', '')}")
    return {"status": report.status, **report.detail}


def _send_again_later(job: RedeployJob | PlanJob, record: SQSRecord, runtime: Runtime) -> bool:
    """A job waiting (its cluster's cap, its replica) goes back as a new, delayed message (this
    one is deleted): waiting, which may take as long as the cluster's rollouts, must not count
    toward the queue's maxReceiveCount. False when it could not be sent (then it comes back
    later)."""
    queue = _queue(record, runtime)
    seconds = deferral_delay(random.uniform(0.5, 1.0))
    try:
        queue.send([job], delay_seconds=seconds)
    except AwsCallError as exc:
        logger.warning("could not send the deferred job again", extra={"error": str(exc)})
        return False
    logger.info("job sent again, delayed", extra={"visible_in_seconds": seconds})
    return True


def _queue(record: SQSRecord, runtime: Runtime) -> SqsJobQueue:
    """The queue the record came from, at its URL in this partition (not Powertools'
    ``record.queue_url``, which assumes ``amazonaws.com``)."""
    sqs = runtime.clients.sqs
    return SqsJobQueue(sqs, queue_url(record.event_source_arn, sqs), runtime.retry)


def _come_back_later(record: SQSRecord, runtime: Runtime, receives: int) -> None:
    queue = _queue(record, runtime)
    try:
        seconds = queue.come_back_later(record.receipt_handle, receives)
    except AwsCallError as exc:  # the queue's own visibility timeout applies instead
        logger.warning("could not delay the job", extra={"error": str(exc)})
        return
    logger.info("job put back", extra={"visible_in_seconds": seconds})


def make_worker_handler(
    runtime_factory: Callable[[], Runtime] = runtime_from_environment,
) -> Callable[[Any, LambdaContext], Any]:
    """The worker's Lambda handler, with one runtime per container."""
    container_runtime = lru_cache(maxsize=1)(runtime_factory)
    # All jobs failing is reported like some failing (batchItemFailures), not as a function
    # error. One processor per handler (it keeps the batch's state while it runs).
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: Any, context: LambdaContext) -> Any:
        runtime = container_runtime().with_deadline(
            lambda_deadline(context.get_remaining_time_in_millis)
        )
        return process_partial_response(
            event=event,
            record_handler=lambda record: _record_handler(record, runtime),
            processor=processor,
            context=context,
        )

    return lambda_handler


lambda_handler = make_worker_handler()
