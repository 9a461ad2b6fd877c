"""Every attempt's connect and read timeouts fit in the time its caller has left.

The request is stopped at ``before-send`` (no socket): the test reads the read timeout botocore
would hand to urllib3 from the request's context, and the client's connect timeout.
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestration.aws.clients import (
    CONNECT_TIMEOUT_SECONDS,
    MIN_READ_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    AwsClients,
)
from orchestration.aws.ratelimit import ApiRateLimiter
from orchestration.aws.retry import RetryPolicy
from tests.conftest import Sleeps


class Sent(Exception):
    """Raised at before-send: the request would have gone out now."""


class Wire:
    def __init__(self) -> None:
        self.read_timeouts: list[float | None] = []

    def attach(self, client: Any) -> Wire:
        client.meta.events.register("before-send", self._send)
        return self

    def _send(self, request: Any, **_: Any) -> None:
        self.read_timeouts.append(request.context.get("read_timeout"))
        raise Sent


@pytest.fixture
def ecs() -> Any:
    clients = AwsClients(region="us-east-1", ecs_rate_limiter=ApiRateLimiter(sleep=Sleeps()))
    return clients.ecs


@pytest.mark.parametrize(
    ("left", "read"),
    [
        (100.0, READ_TIMEOUT_SECONDS),
        (7.5, 7.5 - CONNECT_TIMEOUT_SECONDS),
        (CONNECT_TIMEOUT_SECONDS + MIN_READ_TIMEOUT_SECONDS, MIN_READ_TIMEOUT_SECONDS),
    ],
)
def test_the_read_timeout_is_cut_to_the_time_left(ecs: Any, left: float, read: float) -> None:
    wire = Wire().attach(ecs)
    retry = RetryPolicy(sleep=Sleeps(), remaining=lambda: left)

    with pytest.raises(Sent):
        retry.call("ListClusters", ecs.list_clusters)

    assert wire.read_timeouts == [pytest.approx(read)]
    assert ecs.meta.config.connect_timeout + wire.read_timeouts[0] <= left + 1e-9


@pytest.mark.parametrize("left", [2.5, 0.0, -1.0])
def test_an_attempt_with_less_time_left_is_as_short_as_it_can_be(ecs: Any, left: float) -> None:
    """A first attempt past the deadline (the Lambda's margin is still ahead) stays short:
    the client's connect timeout and the shortest read."""
    wire = Wire().attach(ecs)

    with pytest.raises(Sent):
        RetryPolicy(sleep=Sleeps(), remaining=lambda: left).call("ListClusters", ecs.list_clusters)

    assert wire.read_timeouts == [MIN_READ_TIMEOUT_SECONDS]
    assert ecs.meta.config.connect_timeout == CONNECT_TIMEOUT_SECONDS


def test_outside_the_retry_policy_the_clients_own_timeouts_apply(ecs: Any) -> None:
    wire = Wire().attach(ecs)

    with pytest.raises(Sent):
        ecs.list_clusters()

    assert wire.read_timeouts == [None]  # urllib3 uses the client's read timeout
    assert ecs.meta.config.read_timeout == READ_TIMEOUT_SECONDS
