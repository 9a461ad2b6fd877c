"""Retry policy for AWS calls, and the adapter from botocore errors to rotor's own.

botocore's own retries are switched off on rotor's clients (``orchestration.aws.clients``): every
call goes through ``RetryPolicy.call`` instead, so attempts never multiply (botocore x tenacity)
and one overall deadline, taken from the Lambda's remaining time, bounds them all.

Backoff is exponential with full jitter (tenacity's ``wait_random_exponential``). The list of
retryable codes is the Secrets Manager user guide's (docs/operations.md, "Retries").
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from orchestration.aws.ratelimit import CALLER_TIME_LEFT
from orchestration.errors import AwsCallError, PermanentAwsError, RetryableAwsError

T = TypeVar("T")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "ConnectionError",
        "HTTPClientError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServerException",  # ECS: "server-side issue"
        "InternalServiceError",  # Secrets Manager
    }
)
RETRYABLE_CODES = THROTTLING_CODES | TRANSIENT_CODES


def to_rotor_error(operation: str, exc: BaseException) -> AwsCallError:
    """Map a botocore exception onto rotor's retryable / permanent errors."""
    if isinstance(exc, AwsCallError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in RETRYABLE_CODES or status in (429, 500, 502, 503, 504):
            return RetryableAwsError(operation, code, message)
        return PermanentAwsError(operation, code, message)
    if isinstance(exc, ConnectionError | EndpointConnectionError | ReadTimeoutError):
        return RetryableAwsError(operation, "ConnectionError", str(exc))
    if isinstance(exc, HTTPClientError):
        return RetryableAwsError(operation, "HTTPClientError", str(exc))
    if isinstance(exc, BotoCoreError):
        return PermanentAwsError(operation, type(exc).__name__, str(exc))
    raise TypeError(f"not an AWS error: {exc!r}")


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by a deadline.

    ``remaining`` returns the seconds left before the caller must stop (the Lambda's remaining
    time less a margin); ``sleep`` is injectable so tests retry without sleeping.
    """

    max_attempts: int = 10
    base_seconds: float = 0.1
    max_wait_seconds: float = 5.0
    remaining: Callable[[], float] = field(default=lambda: float("inf"))
    sleep: Callable[[float], None] = time.sleep
    on_retry: Callable[[str, AwsCallError, int], None] | None = None

    def call(self, operation: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Call ``fn(**kwargs)``; retry retryable failures; raise ``AwsCallError`` otherwise."""

        def attempt() -> T:
            token = CALLER_TIME_LEFT.set(self.remaining)
            try:
                return fn(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise to_rotor_error(operation, exc) from exc
            finally:
                CALLER_TIME_LEFT.reset(token)

        def before_sleep(state: RetryCallState) -> None:
            if self.on_retry and state.outcome is not None:
                error = state.outcome.exception()
                if isinstance(error, AwsCallError):
                    self.on_retry(operation, error, state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | _OutOfTime(self.remaining),
            wait=wait_random_exponential(multiplier=self.base_seconds, max=self.max_wait_seconds),
            retry=retry_if_exception_type(RetryableAwsError),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)

    def with_deadline(self, remaining: Callable[[], float]) -> RetryPolicy:
        return dataclasses.replace(self, remaining=remaining)


class _OutOfTime(stop_base):
    """Stop when the next sleep would end past the deadline."""

    def __init__(self, remaining: Callable[[], float]) -> None:
        self._remaining = remaining

    def __call__(self, state: RetryCallState) -> bool:
        return self._remaining() - state.upcoming_sleep <= 0
