"""The redeploy queue: jobs go out in ``SendMessageBatch`` calls of ten, one message per job key.

Jobs with one key (service, new value) are sent once per call to ``send``; a key sent twice by
two deliveries of one rotation is harmless (the ledger and the freshness rule decide at run
time). Entries SQS refuses for a reason of its own (``SenderFault`` false) are sent again under
the retry policy; entries refused as the sender's fault fail the send with a permanent error,
so the caller's event is kept (Lambda's retries, then its on-failure destination).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import PermanentAwsError, RetryableAwsError
from orchestration.fanout.jobs import PlanJob, RedeployJob, message_id

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

BATCH = 10  # SendMessageBatch maximum entries
MAX_DELAY_SECONDS = 900  # SQS DelaySeconds maximum

AnyJob = RedeployJob | PlanJob


class JobQueue(Protocol):
    def send(self, jobs: Sequence[AnyJob], *, delay_seconds: int = 0) -> int:
        """Enqueue ``jobs`` (duplicates by key once); return how many messages were sent."""
        ...

    def with_retry(self, retry: RetryPolicy) -> JobQueue:
        """The same queue, its calls made through ``retry`` (an invocation's deadline)."""
        ...


def queue_url(queue_arn: str, sqs: SQSClient) -> str:
    """The URL of the queue ``queue_arn`` names, on the endpoint ``sqs`` calls: right in every
    partition (``amazonaws.com.cn`` in aws-cn, not the ``amazonaws.com`` that a URL built from
    the ARN alone assumes). The queue is in the client's region (an SQS event source is)."""
    parts = queue_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    account, name = parts[4], parts[5]
    return f"{sqs.meta.endpoint_url.rstrip('/')}/{account}/{name}"


def unique(jobs: Sequence[AnyJob]) -> list[AnyJob]:
    seen: dict[str, AnyJob] = {}
    for job in jobs:
        seen.setdefault(job.key, job)
    return list(seen.values())


class SqsJobQueue:
    def __init__(self, sqs: SQSClient, url: str, retry: RetryPolicy) -> None:
        self._sqs = sqs
        self.url = url
        self._retry = retry

    def with_retry(self, retry: RetryPolicy) -> SqsJobQueue:
        return SqsJobQueue(self._sqs, self.url, retry)

    def send(self, jobs: Sequence[AnyJob], *, delay_seconds: int = 0) -> int:
        delay = max(0, min(MAX_DELAY_SECONDS, delay_seconds))
        jobs = unique(jobs)
        for start in range(0, len(jobs), BATCH):
            self._send_batch(jobs[start : start + BATCH], delay)
        return len(jobs)

    def _send_batch(self, jobs: Sequence[AnyJob], delay: int) -> None:
        pending: dict[str, Any] = {
            message_id(job): {
                "Id": message_id(job),
                "MessageBody": job.model_dump_json(),
                "DelaySeconds": delay,
            }
            for job in jobs
        }

        def attempt() -> None:
            answer = self._sqs.send_message_batch(QueueUrl=self.url, Entries=list(pending.values()))
            for ok in answer.get("Successful", []):
                pending.pop(ok["Id"], None)
            failed = answer.get("Failed", [])
            refused = [f for f in failed if f.get("SenderFault")]
            if refused:
                first = refused[0]
                raise PermanentAwsError(
                    "SendMessageBatch",
                    str(first.get("Code", "Unknown")),
                    f"{len(refused)} job(s) refused: {first.get('Message', '')}",
                )
            if pending:
                raise RetryableAwsError(
                    "SendMessageBatch",
                    str(failed[0].get("Code", "Unknown")) if failed else "Unknown",
                    f"{len(pending)} job(s) not sent yet",
                )

        self._retry.call("SendMessageBatch", attempt)
        log.debug("sent %d job(s) to %s", len(jobs), self.url)

    def come_back_later(self, receipt_handle: str, receive_count: int) -> int:
        """Hide a received job for a backoff that grows with its receive count; return it."""
        seconds = visibility_backoff(receive_count, random.uniform(0.5, 1.0))
        self._retry.call(
            "ChangeMessageVisibility",
            self._sqs.change_message_visibility,
            QueueUrl=self.url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=seconds,
        )
        return seconds


# A job put back (throttled, an AWS error) becomes visible again after a time that
# grows with the number of times it was received; after the queue's maxReceiveCount it moves
# to the dead-letter queue (redrive policy).
BACKOFF_BASE_SECONDS = 20
BACKOFF_MAX_SECONDS = 900


#: A job waiting for its cluster's cap is sent again after this long (times 0.5 to 1): a new
#: message, so waiting does not count toward maxReceiveCount.
DEFER_SECONDS = 120


def deferral_delay(jitter: float = 1.0) -> int:
    """Seconds until a job deferred by the cluster cap is looked at again."""
    return max(1, int(DEFER_SECONDS * max(0.5, min(1.0, jitter))))


def visibility_backoff(receive_count: int, jitter: float = 1.0) -> int:
    """Seconds until a job received ``receive_count`` times comes back: 20, 40, 80, … ≤ 900,
    scaled by ``jitter`` (0.5 to 1: spreads jobs put back together)."""
    exponent = max(0, min(receive_count - 1, 16))
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**exponent)
    return max(1, int(ceiling * max(0.5, min(1.0, jitter))))
