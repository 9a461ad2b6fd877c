"""Retry policy for AWS calls, and the adapter from botocore errors to rotor's own.

botocore's own retries are switched off on rotor's clients (``orchestration.aws.clients``): every
call goes through ``RetryPolicy.call`` instead, so attempts never multiply (botocore x tenacity)
and one overall deadline, taken from the Lambda's remaining time, bounds them all.

A piece of work that makes several calls (claim, redeploy and confirm one service) runs them
under one ``RetryPolicy.budget()``: its calls share one budget of retries and one deadline, and a
call made inside another call's attempt is a single attempt that the outer call retries as a
whole, so nested retries never multiply either. The first attempt of each call is free: the
budget is spent on what fails.

Backoff is exponential with full jitter (tenacity's ``wait_random_exponential``). The list of
retryable codes is the Secrets Manager user guide's (docs/operations.md, "Retries").
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from orchestration.aws.ratelimit import CALLER_TIME_LEFT
from orchestration.errors import (
    AwsCallError,
    ClusterNotFound,
    ConditionFailed,
    PermanentAwsError,
    RetryableAwsError,
)

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
        if code == "ConditionalCheckFailedException":
            item = exc.response.get("Item")  # ReturnValuesOnConditionCheckFailure
            found: dict[str, object] | None = dict(item) if isinstance(item, dict) else None
            return ConditionFailed(operation, code, message, found)
        if code == "ClusterNotFoundException":
            return ClusterNotFound(operation, code, message)
        return PermanentAwsError(operation, code, message)
    if isinstance(exc, ConnectionError | EndpointConnectionError | ReadTimeoutError):
        return RetryableAwsError(operation, "ConnectionError", str(exc))
    if isinstance(exc, HTTPClientError):
        return RetryableAwsError(operation, "HTTPClientError", str(exc))
    if isinstance(exc, BotoCoreError):
        return PermanentAwsError(operation, type(exc).__name__, str(exc))
    raise TypeError(f"not an AWS error: {exc!r}")


def refused_before_acting(exc: ClientError | BotoCoreError) -> bool:
    """AWS surely did not act on the call: it was throttled, refused for good, or never reached
    AWS. (A timeout or a server error may hide a call that did land.)"""
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING_CODES or status == 429:
            return True
        return status < 500 and code not in RETRYABLE_CODES  # refused for good: no retry
    return False


class Budget:
    """Retries and a deadline shared by every call made under one ``RetryPolicy.budget()``."""

    def __init__(self, retries: int, remaining: Callable[[], float]) -> None:
        self.remaining = remaining  # the deadline of the policy that opened the budget
        self._left = retries
        self._lock = threading.Lock()
        self.depth = 0  # > 0 while an attempt of a call under this budget runs

    @property
    def left(self) -> int:
        return self._left

    def spend(self) -> bool:
        """Take one retry; False when none is left."""
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


_BUDGET: ContextVar[Budget | None] = ContextVar("rotor_retry_budget", default=None)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by a deadline.

    ``remaining`` returns the seconds left before the caller must stop (the Lambda's remaining
    time less a margin); ``sleep`` is injectable so tests retry without sleeping. A call on its
    own makes at most ``max_attempts`` attempts; calls under one ``budget()`` share
    ``max_attempts - 1`` retries between them.
    """

    max_attempts: int = 10
    base_seconds: float = 0.1
    max_wait_seconds: float = 5.0
    remaining: Callable[[], float] = field(default=lambda: float("inf"))
    sleep: Callable[[float], None] = time.sleep

    @contextmanager
    def budget(self) -> Iterator[Budget]:
        """One budget of retries and one deadline (``remaining``) for every call made inside,
        in this thread. Inside an active budget, this joins it."""
        active = _BUDGET.get()
        if active is not None:
            yield active
            return
        budget = Budget(max(self.max_attempts - 1, 0), self.remaining)
        token = _BUDGET.set(budget)
        try:
            yield budget
        finally:
            _BUDGET.reset(token)

    def call(self, operation: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """Call ``fn(**kwargs)``; retry retryable failures; raise ``AwsCallError`` otherwise."""
        with self.budget() as budget:
            if budget.depth > 0:
                # Called from inside another call's attempt: that call retries, not this one.
                return self._attempt(operation, budget, fn, kwargs)
            retrying = Retrying(
                stop=_OutOfTime(budget.remaining) | _BudgetSpent(budget),
                wait=wait_random_exponential(
                    multiplier=self.base_seconds, max=self.max_wait_seconds
                ),
                retry=retry_if_exception_type(RetryableAwsError),
                sleep=self.sleep,
                reraise=True,
            )
            result: T = retrying(self._attempt, operation, budget, fn, kwargs)
            return result

    def _attempt(
        self, operation: str, budget: Budget, fn: Callable[..., T], kwargs: dict[str, Any]
    ) -> T:
        token = CALLER_TIME_LEFT.set(budget.remaining)
        budget.depth += 1
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise to_rotor_error(operation, exc) from exc
        finally:
            budget.depth -= 1
            CALLER_TIME_LEFT.reset(token)

    def with_deadline(self, remaining: Callable[[], float]) -> RetryPolicy:
        return dataclasses.replace(self, remaining=remaining)


class _BudgetSpent(stop_base):
    """Stop when the budget has no retry left (taking one otherwise)."""

    def __init__(self, budget: Budget) -> None:
        self._budget = budget

    def __call__(self, state: RetryCallState) -> bool:
        return not self._budget.spend()


class _OutOfTime(stop_base):
    """Stop when the next sleep would end past the deadline."""

    def __init__(self, remaining: Callable[[], float]) -> None:
        self._remaining = remaining

    def __call__(self, state: RetryCallState) -> bool:
        return self._remaining() - state.upcoming_sleep <= 0
