"""Client-side token buckets for ECS calls, on a fake clock with recorded sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from orchestration.aws.ratelimit import (
    ECS_LIMITS,
    ECS_OPERATION_BUCKETS,
    ApiRateLimiter,
    BucketLimit,
    TokenBucket,
)
from tests.conftest import Sleeps


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def bucket(clock: FakeClock, sleeps: Sleeps, *, rate: float = 5, burst: float = 50) -> TokenBucket:
    return TokenBucket(BucketLimit(per_second=rate, burst=burst), clock=clock, sleep=sleeps)


# --- TokenBucket ---------------------------------------------------------------------------


def test_burst_is_free_then_each_token_waits_one_over_rate(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    tokens = bucket(clock, sleeps, rate=5, burst=50)
    assert [tokens.acquire() for _ in range(50)] == [0.0] * 50
    assert sleeps == []
    assert tokens.acquire() == pytest.approx(0.2)
    assert sleeps == [pytest.approx(0.2)]
    # waiters queue: the next one waits for its own token after the previous one's
    assert tokens.acquire() == pytest.approx(0.4)
    assert sleeps == [pytest.approx(0.2), pytest.approx(0.4)]
    assert tokens.waited_seconds == pytest.approx(0.6)


def test_tokens_refill_as_the_clock_advances(clock: FakeClock, sleeps: Sleeps) -> None:
    tokens = bucket(clock, sleeps, rate=5, burst=50)
    for _ in range(50):
        tokens.acquire()
    clock.advance(1.0)  # five new tokens
    assert [tokens.acquire() for _ in range(5)] == [0.0] * 5
    assert tokens.acquire() == pytest.approx(0.2)


def test_refill_never_exceeds_burst(clock: FakeClock, sleeps: Sleeps) -> None:
    tokens = bucket(clock, sleeps, rate=5, burst=50)
    tokens.acquire()
    clock.advance(3600)
    assert [tokens.acquire() for _ in range(50)] == [0.0] * 50
    assert tokens.acquire() == pytest.approx(0.2)


def test_queue_drains_after_waiting(clock: FakeClock, sleeps: Sleeps) -> None:
    tokens = bucket(clock, sleeps, rate=2, burst=1)
    assert tokens.acquire() == 0.0
    assert tokens.acquire() == pytest.approx(0.5)
    assert tokens.acquire() == pytest.approx(1.0)
    clock.advance(1.0)  # both waiters got their tokens; the bucket is empty again
    assert tokens.acquire() == pytest.approx(0.5)
    clock.advance(10.0)
    assert tokens.acquire() == 0.0


def test_fractional_refill(clock: FakeClock, sleeps: Sleeps) -> None:
    tokens = bucket(clock, sleeps, rate=5, burst=1)
    tokens.acquire()
    clock.advance(0.1)  # half a token
    assert tokens.acquire() == pytest.approx(0.1)


# --- ApiRateLimiter ------------------------------------------------------------------------


def test_ecs_limits_are_the_published_ones() -> None:
    assert ECS_LIMITS["service-writes"] == BucketLimit(per_second=5, burst=50)
    assert ECS_LIMITS["service-reads"] == BucketLimit(per_second=20, burst=100)
    assert ECS_LIMITS["task-definition-reads"] == BucketLimit(per_second=20, burst=50)
    assert ECS_LIMITS["cluster-reads"] == BucketLimit(per_second=20, burst=50)


@pytest.mark.parametrize(
    ("operation", "bucket_name"),
    [
        ("UpdateService", "service-writes"),
        ("CreateService", "service-writes"),
        ("DeleteService", "service-writes"),
        ("ListServices", "service-reads"),
        ("DescribeServices", "service-reads"),
        ("ListServicesByNamespace", "service-reads"),
        ("DescribeTaskDefinition", "task-definition-reads"),
        ("ListTaskDefinitions", "task-definition-reads"),
        ("ListClusters", "cluster-reads"),
        ("DescribeClusters", "cluster-reads"),
    ],
)
def test_operations_map_to_buckets(
    clock: FakeClock, sleeps: Sleeps, operation: str, bucket_name: str
) -> None:
    assert ECS_OPERATION_BUCKETS[operation] == bucket_name
    limit = ECS_LIMITS[bucket_name]
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    burst = int(limit.burst)
    assert [limiter.acquire(operation) for _ in range(burst)] == [0.0] * burst
    assert limiter.acquire(operation) == pytest.approx(1 / limit.per_second)
    assert limiter.buckets[bucket_name].waited_seconds == pytest.approx(1 / limit.per_second)
    # the other buckets are untouched
    for name, other in limiter.buckets.items():
        if name != bucket_name:
            assert other.waited_seconds == 0.0


def test_update_service_burst_50_then_5_per_second(clock: FakeClock, sleeps: Sleeps) -> None:
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    waits = [limiter.acquire("UpdateService") for _ in range(55)]
    assert waits[:50] == [0.0] * 50
    assert waits[50:] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert sleeps == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    # reads have their own bucket: still free
    assert limiter.acquire("DescribeServices") == 0.0


def test_operations_sharing_a_bucket_share_its_tokens(clock: FakeClock, sleeps: Sleeps) -> None:
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    for _ in range(50):
        limiter.acquire("ListServices")
    for _ in range(50):
        limiter.acquire("DescribeServices")
    assert limiter.acquire("ListServicesByNamespace") == pytest.approx(1 / 20)


@pytest.mark.parametrize("operation", ["RunTask", "ListTasks", "GetSecretValue", ""])
def test_unknown_operations_are_unmetered(clock: FakeClock, sleeps: Sleeps, operation: str) -> None:
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    assert [limiter.acquire(operation) for _ in range(500)] == [0.0] * 500
    assert sleeps == []
    assert all(b.waited_seconds == 0.0 for b in limiter.buckets.values())


def test_concurrent_acquires_never_exceed_burst_plus_rate(clock: FakeClock) -> None:
    """Threads take tokens while the fake clock moves; grants never outrun the bucket."""
    rate, burst = 5.0, 50.0
    sleeps = Sleeps()
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    start = clock()
    grants: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        now = clock()
        waited = limiter.acquire("UpdateService")
        with lock:
            grants.append(now + waited)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _step in range(10):
            list(pool.map(lambda _: take(), range(16)))  # 16 concurrent callers per step
            clock.advance(0.5)
    assert len(grants) == 160
    grants.sort()
    for count, moment in enumerate(grants, start=1):
        assert count <= burst + rate * (moment - start) + 1e-6, (count, moment - start)
    # the limiter was the bottleneck: callers actually waited
    assert len(sleeps) > 0


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self.data


def _answer_locally(request: object, **_: object) -> AWSResponse:
    """Answer every request before it is sent: no socket is opened."""
    return AWSResponse("https://ecs.invalid/", 200, {}, _Body(b"{}"))


def test_attach_meters_every_call_through_a_boto3_client(clock: FakeClock, sleeps: Sleeps) -> None:
    client = boto3.client("ecs", region_name="us-east-1")
    limiter = ApiRateLimiter(
        {"service-writes": BucketLimit(per_second=1, burst=2)},
        {"UpdateService": "service-writes"},
        clock=clock,
        sleep=sleeps,
    )
    limiter.attach(client)
    client.meta.events.register("before-send.ecs", _answer_locally)
    for _ in range(4):
        client.update_service(cluster="prod", service="api")
    assert sleeps == pytest.approx([1.0, 2.0])
    client.list_clusters()  # not in the limiter's table: unmetered
    client.describe_services(cluster="prod", services=["api"])
    assert sleeps == pytest.approx([1.0, 2.0])
    assert limiter.buckets["service-writes"].waited_seconds == pytest.approx(3.0)


def test_a_wait_past_the_callers_deadline_raises_and_takes_no_token(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    from orchestration.errors import RateLimited

    limited = bucket(clock, sleeps, rate=5, burst=1)
    limited.acquire()  # the burst is spent: the next token is 0.2 s away

    with pytest.raises(RateLimited) as raised:
        limited.acquire(max_wait=0.1)

    assert raised.value.code == "RateLimited"
    assert sleeps == []
    assert limited.acquire(max_wait=0.2) == pytest.approx(0.2)  # the refused one took nothing


def test_the_retry_policy_gives_the_limiter_its_deadline(clock: FakeClock, sleeps: Sleeps) -> None:
    from orchestration.aws.retry import RetryPolicy
    from orchestration.errors import RetryableAwsError

    limiter = ApiRateLimiter(
        {"writes": BucketLimit(per_second=5, burst=1)},
        {"UpdateService": "writes"},
        clock=clock,
        sleep=sleeps,
    )
    calls: list[str] = []

    def update_service() -> str:
        limiter.acquire("UpdateService")  # what the client's before-call hook does
        calls.append("sent")
        return "ok"

    relaxed = RetryPolicy(sleep=sleeps, remaining=lambda: 60.0)
    hurried = RetryPolicy(max_attempts=1, sleep=sleeps, remaining=lambda: 0.05)

    assert relaxed.call("UpdateService", update_service) == "ok"
    with pytest.raises(RetryableAwsError):
        hurried.call("UpdateService", update_service)
    # Outside a retry policy there is no deadline: it waits its turn.
    assert limiter.acquire("UpdateService") == pytest.approx(0.2)
    assert calls == ["sent"]


def test_containers_sharing_the_limits_each_meter_their_share(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    """Two worker containers (reserved concurrency 2): together still 5 UpdateService a second."""
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    limiter.share_among(2)

    waits = [limiter.acquire("UpdateService") for _ in range(26)]

    assert waits[:25] == [0.0] * 25  # half the burst of 50
    assert waits[25] == pytest.approx(1 / 2.5)  # half the rate of 5 per second
    assert limiter.acquire("DescribeTaskDefinition") == 0.0  # other buckets: their own share


def test_a_read_share_meters_only_that_share_of_the_reads(clock: FakeClock, sleeps: Sleeps) -> None:
    """The reconciler's scan (ROTOR_RECONCILE_READ_SHARE=0.25): a quarter of each read limit,
    on top of the container split; writes keep theirs."""
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    limiter.share_among(2)
    limiter.hold_read_share(0.25)

    waits = [limiter.acquire("DescribeServices") for _ in range(13)]

    assert waits[:12] == [0.0] * 12  # 100 / 2 / 4 = 12.5: twelve whole tokens
    assert waits[12] == pytest.approx(0.5 / 2.5)  # half a token short, at 20 / 2 / 4 a second
    assert [limiter.acquire("UpdateService") for _ in range(25)] == [0.0] * 25  # writes: 50 / 2


def test_holding_the_same_share_again_keeps_the_buckets(clock: FakeClock, sleeps: Sleeps) -> None:
    """Each pass of a warm container holds the share again: that must not refill the buckets."""
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    limiter.hold_read_share(0.5)
    [limiter.acquire("ListClusters") for _ in range(25)]  # the burst of 50 / 2, spent
    limiter.hold_read_share(0.5)
    assert limiter.acquire("ListClusters") > 0


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_a_share_is_more_than_0_and_at_most_1(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        ApiRateLimiter().hold_read_share(share)


def test_lookup_events_is_paced_at_two_a_second(clock: FakeClock, sleeps: Sleeps) -> None:
    """CloudTrail's LookupEvents quota: 2 requests a second per account and region."""
    from orchestration.aws.ratelimit import CLOUDTRAIL_LIMITS, CLOUDTRAIL_OPERATION_BUCKETS

    limiter = ApiRateLimiter(
        CLOUDTRAIL_LIMITS, CLOUDTRAIL_OPERATION_BUCKETS, clock=clock, sleep=sleeps
    )
    waits = [limiter.acquire("LookupEvents") for _ in range(3)]
    assert waits == [0.0, pytest.approx(0.5), pytest.approx(1.0)]
    assert limiter.acquire("DescribeTrails") == 0.0  # rotor doctor's reads: unmetered


def test_a_paced_read_share_takes_one_token_at_a_time_and_leaves_writes(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    limiter = ApiRateLimiter(clock=clock, sleep=sleeps)
    limiter.hold_read_share(0.25, burst=False)
    assert limiter.acquire("DescribeServices") == 0.0
    # no burst: the second read waits for the refill, at a quarter of 20 per second
    assert limiter.acquire("DescribeServices") == pytest.approx(1 / 5)
    # writes keep their whole burst
    assert [limiter.acquire("UpdateService") for _ in range(50)] == [0.0] * 50
    assert limiter.fresh().buckets["service-reads"]._burst == 1  # another region: the same
