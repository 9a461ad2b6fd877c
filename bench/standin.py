"""A strict stand-in for ECS: moto behind a layer that behaves like the real API where speed
and limits are concerned.

* paging like ECS (ListServices/ListClusters: default 10, at most 100, ``nextToken``) and
  DescribeServices refused above ten services (``tests/aws_fakes.enforce_ecs_limits``);
* a fixed latency on every call, as a network round trip (the calling thread sleeps, so
  concurrent calls overlap as they would over the wire);
* ECS's token buckets on the server side: a call that finds its bucket empty is answered
  ``ThrottlingException`` (HTTP 400) without reaching moto, as ECS answers it.

The buckets are independent of rotor's client-side limiter: both start full, and the stand-in
counts every call it throttles.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.awsrequest import AWSResponse

from orchestration.aws.ratelimit import ECS_LIMITS, ECS_OPERATION_BUCKETS
from tests.aws_fakes import enforce_ecs_limits


class ServerBucket:
    """ECS's side of a token bucket: never waits, answers 'no' when empty."""

    def __init__(self, per_second: float, burst: float) -> None:
        self.rate = per_second
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True

    def refill(self) -> None:
        with self.lock:
            self.tokens = self.burst
            self.updated = time.monotonic()


class StrictEcs:
    """Attach to an ECS client bound to moto: paging, limits, latency, server-side buckets."""

    def __init__(self, latency_seconds: float) -> None:
        self.latency = latency_seconds
        self.buckets = {
            name: ServerBucket(limit.per_second, limit.burst) for name, limit in ECS_LIMITS.items()
        }
        self.calls: Counter[str] = Counter()  # calls that reached the server (throttled too)
        self.throttled: Counter[str] = Counter()
        self.timestamps: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def attach(self, client: Any) -> StrictEcs:
        enforce_ecs_limits(client)
        client.meta.events.register("before-call.ecs", self._before_call)
        client.meta.events.register("after-call.ecs", self._after_call)
        return self

    def refill(self) -> None:
        """As after a quiet while: every bucket full again."""
        for bucket in self.buckets.values():
            bucket.refill()

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.throttled.clear()
            self.timestamps.clear()

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        if "fake_error" in context:
            return None  # the paging layer answers it
        time.sleep(self.latency)
        name = model.name
        bucket = self.buckets.get(ECS_OPERATION_BUCKETS.get(name, ""))
        with self._lock:
            self.calls[name] += 1
        if bucket is not None and not bucket.take():
            with self._lock:
                self.throttled[name] += 1
            http = AWSResponse("https://ecs.invalid/", 400, {}, None)
            return http, {
                "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        return None

    def _after_call(self, model: Any, http_response: Any, **_: Any) -> None:
        if getattr(http_response, "status_code", 200) < 300:
            with self._lock:
                self.timestamps.setdefault(model.name, []).append(time.monotonic())
