"""A client-side rate limiter that keeps ECS calls under the published API limits.

ECS meters API calls per account and region with token buckets (docs/operations.md). Rather
than hit the limit and retry blindly, rotor takes a token before each call; concurrent workers
then queue here instead of being throttled by AWS. A caller never queues past its own deadline
(``CALLER_TIME_LEFT``, set by the retry policy): it gets ``RateLimited`` (retryable) instead, so
a Lambda stops in time and its event is retried, rather than being killed mid-queue. The
limiter hooks into a boto3 client (``before-call`` event), so every call through that client is
metered, retries included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from orchestration.errors import RateLimited


@dataclass(frozen=True, slots=True)
class BucketLimit:
    per_second: float  # sustained refill rate
    burst: float  # bucket size


# Published ECS limits (burst / sustained per second), per account and region.
ECS_LIMITS: Mapping[str, BucketLimit] = {
    "service-reads": BucketLimit(per_second=20, burst=100),
    "service-writes": BucketLimit(per_second=5, burst=50),
    "task-definition-reads": BucketLimit(per_second=20, burst=50),
    "cluster-reads": BucketLimit(per_second=20, burst=50),
}
ECS_OPERATION_BUCKETS: Mapping[str, str] = {
    "ListServices": "service-reads",
    "ListServicesByNamespace": "service-reads",
    "DescribeServices": "service-reads",
    "UpdateService": "service-writes",
    "CreateService": "service-writes",
    "DeleteService": "service-writes",
    "DescribeTaskDefinition": "task-definition-reads",
    "ListTaskDefinitions": "task-definition-reads",
    "ListClusters": "cluster-reads",
    "DescribeClusters": "cluster-reads",
}

#: The read categories: what a scan spends (``hold_read_share`` meters only these).
ECS_READ_BUCKETS = frozenset({"service-reads", "task-definition-reads", "cluster-reads"})

# CloudTrail's LookupEvents: 2 requests per second per account and region (CloudTrail's
# quotas); no burst beyond it.
CLOUDTRAIL_LIMITS: Mapping[str, BucketLimit] = {
    "lookup-events": BucketLimit(per_second=2, burst=1),
}
CLOUDTRAIL_OPERATION_BUCKETS: Mapping[str, str] = {"LookupEvents": "lookup-events"}


#: Seconds the current thread's caller may still wait (set by ``RetryPolicy.call``).
CALLER_TIME_LEFT: ContextVar[Callable[[], float] | None] = ContextVar(
    "rotor_caller_time_left", default=None
)


class TokenBucket:
    """Thread-safe token bucket; ``acquire`` blocks until a token is free."""

    def __init__(
        self,
        limit: BucketLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = limit.per_second
        self._burst = limit.burst
        self._tokens = limit.burst
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self, max_wait: float = float("inf")) -> float:
        """Take one token; return how long the caller waited for it. Raise ``RateLimited``
        (taking nothing) when the wait would be longer than ``max_wait`` seconds."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1  # reserve now; a negative balance is a queue of waiters
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self._rate
            if wait > 0 and wait > max_wait:
                self._tokens += 1
                raise RateLimited(wait, max_wait)
            self.waited_seconds += wait
        if wait > 0:
            self._sleep(wait)
        return wait


class ApiRateLimiter:
    """One bucket per API category; unknown operations pass unmetered."""

    def __init__(
        self,
        limits: Mapping[str, BucketLimit] = ECS_LIMITS,
        operations: Mapping[str, str] = ECS_OPERATION_BUCKETS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.buckets = {
            name: TokenBucket(limit, clock=clock, sleep=sleep) for name, limit in limits.items()
        }
        self._limits = dict(limits)
        self._clock = clock
        self._sleep = sleep
        self._operations = operations
        self._containers = 1
        self._read_share = 1.0
        self._read_burst = True

    def fresh(self) -> ApiRateLimiter:
        """A limiter of its own with the same limits and shares, for another region: ECS
        meters each account AND region apart, so each region's calls take their own tokens."""
        limiter = ApiRateLimiter(
            self._limits, self._operations, clock=self._clock, sleep=self._sleep
        )
        limiter.share_among(self._containers)
        if self._read_share != 1.0 or not self._read_burst:
            limiter.hold_read_share(self._read_share, burst=self._read_burst)
        return limiter

    def share_among(self, containers: int) -> None:
        """This process is one of ``containers`` that share the account's limits (a function's
        reserved concurrency): meter 1/N of each rate and burst. Call before the first call."""
        self._containers = max(1, containers)
        self._rebuild()

    def hold_read_share(self, share: float, *, burst: bool = True) -> None:
        """Meter only ``share`` (0 < share <= 1) of each read category's rate and burst (of
        this process's part, see ``share_among``): the reconciler's paced scan leaves the rest
        of the account's read budget to everyone else. ``burst=False``: one token at a time,
        at that rate (a paced scan needs no burst, and so takes none of the account's, which
        the event-driven functions' containers need: each holds at least one token). Writes
        are left as they are. Holding what it already holds changes nothing (the buckets keep
        their state)."""
        if not 0 < share <= 1:
            raise ValueError(f"a share is more than 0 and at most 1, not {share}")
        if (share, burst) != (self._read_share, self._read_burst):
            self._read_share = share
            self._read_burst = burst
            self._rebuild()

    def _rebuild(self) -> None:
        n = self._containers
        self.buckets = {}
        for name, limit in self._limits.items():
            read = name in ECS_READ_BUCKETS
            share = self._read_share if read else 1.0
            size = max(1.0, limit.burst * share / n) if self._read_burst or not read else 1.0
            self.buckets[name] = TokenBucket(
                BucketLimit(limit.per_second * share / n, size),
                clock=self._clock,
                sleep=self._sleep,
            )

    def acquire(self, operation: str) -> float:
        bucket = self.buckets.get(self._operations.get(operation, ""))
        if bucket is None:
            return 0.0
        time_left = CALLER_TIME_LEFT.get()
        return bucket.acquire(max_wait=time_left() if time_left else float("inf"))

    def attach(self, client: Any) -> None:
        """Meter every call made through ``client`` (a boto3 client)."""
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}", self._before_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        self.acquire(model.name)
