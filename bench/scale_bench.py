"""Benchmark: discovery and fan-out at scale, against a strict stand-in for ECS.

Run on demand (not a test), from the repository root:

    .venv/bin/pip install matplotlib   # for the plot only
    .venv/bin/python bench/scale_bench.py                     # 250, 1,000, 4,000 services
    .venv/bin/python bench/scale_bench.py --sizes 250 1000 --fanout 200 --plot bench/scale.png

The stand-in (``bench/standin.py``) is moto behind a layer that pages like ECS, refuses
DescribeServices above ten, adds a latency to every call and throttles with ECS's own token
buckets on the server side. Side by side, in one run:

* discovery (``ConsumerDiscovery.scan``), cold (empty task-definition cache) and warm (the
  summaries cached), against the lower bound of ECS calls, a one-by-one scan (backoff on
  throttling, no client-side limiter), and the rate-limit floor (the time ECS's buckets need to
  serve the lower bound, whatever the client does, plus one round trip per phase);
* fan-out: the rotation handler plans K stale consumers onto the redeploy queue (moto SQS) and
  the worker handler carries the jobs out; the time from the first to the last UpdateService
  against the minimum (K - 50) / 5 s (burst 50, then 5 per second), and the throttled calls.

Progress goes to stderr; the table to stdout; ``--json`` writes the figures to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_TRACE_DISABLED": "true",
}.items():
    os.environ.setdefault(_name, _value)

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from moto import mock_aws  # noqa: E402
from standin import StrictEcs  # noqa: E402

from orchestration.aws.clients import AwsClients  # noqa: E402
from orchestration.aws.ratelimit import ECS_LIMITS, ApiRateLimiter  # noqa: E402
from orchestration.aws.retry import RetryPolicy  # noqa: E402
from orchestration.ecs.discovery import ConsumerDiscovery  # noqa: E402
from orchestration.secrets.references import SecretIdentity  # noqa: E402
from orchestration.state.task_definitions import TaskDefinitionCache  # noqa: E402
from tests.aws_fakes import queue_with_dead_letters, sqs_lambda_event  # noqa: E402

REGION, ACCOUNT = "us-east-1", "123456789012"
SECRET = SecretIdentity("aws", REGION, ACCOUNT, "prod/db", "Ab12Cd")
SERVICES_PER_CLUSTER = 250
T = TypeVar("T")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the world ----------------------------------------------------------------------------


def seed(ecs: Any, services: int, families: int, *, stale_before: datetime | None = None) -> None:
    """``services`` services over clusters of 250, on ``families`` task definitions (half of
    them reference the secret)."""
    for family in range(families):
        value_from = f"{SECRET.arn}:password::" if family % 2 == 0 else "/plain/ssm/parameter"
        ecs.register_task_definition(
            family=f"app-{family}",
            containerDefinitions=[
                {
                    "name": "app",
                    "image": "app:1",
                    "memory": 256,
                    "secrets": [{"name": "DB_PASSWORD", "valueFrom": value_from}],
                }
            ],
        )
    clusters = max(1, math.ceil(services / SERVICES_PER_CLUSTER))
    for cluster in range(clusters):
        ecs.create_cluster(clusterName=f"cluster-{cluster}")
    for number in range(services):
        ecs.create_service(
            cluster=f"cluster-{number % clusters}",
            serviceName=f"svc-{number:05d}",
            taskDefinition=f"app-{number % families}",
            desiredCount=1,
        )
        if number and number % 1000 == 0:
            progress(f"  seeded {number}/{services} services")


# --- discovery ----------------------------------------------------------------------------


@dataclass
class DiscoveryFigures:
    services: int
    clusters: int
    task_definitions: int
    latency_ms: float
    lower_bound_cold: int
    lower_bound_warm: int
    calls_cold: int
    calls_warm: int
    seconds_cold: float
    seconds_warm: float
    floor_cold: float
    floor_warm: float
    throttled_cold: int
    throttled_warm: int
    one_by_one_calls: int | None
    one_by_one_seconds: float | None
    one_by_one_throttled: int | None
    consumers: int


def lower_bound(services: int, clusters: int, families: int) -> dict[str, int]:
    """The fewest calls per ECS bucket a full scan can make."""
    per_cluster = math.ceil(services / clusters)
    return {
        "cluster-reads": 1,  # ListClusters (one page of up to 100)
        "service-reads": clusters * math.ceil(per_cluster / 100)  # ListServices pages
        + clusters * math.ceil(per_cluster / 10),  # DescribeServices, ten at a time
        "task-definition-reads": families,
    }


def floor_seconds(calls: dict[str, int], latency: float) -> float:
    """The time ECS's buckets need to serve ``calls`` (each bucket drains in parallel, from
    full), plus a round trip for each of the three phases (list, describe, task definitions)."""
    drain = max(
        max(0.0, (n - ECS_LIMITS[bucket].burst) / ECS_LIMITS[bucket].per_second)
        for bucket, n in calls.items()
    )
    return drain + 3 * latency


def with_retries(call: Any, **params: Any) -> Any:
    """What a hand-written scan does on throttling: exponential backoff, full jitter."""
    for attempt in range(30):
        try:
            return call(**params)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ThrottlingException":
                raise
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
    raise RuntimeError("still throttled after 30 attempts")


def one_by_one_scan(ecs: Any) -> int:
    """The baseline: sequential, one service and one task definition at a time."""
    found = 0
    for cluster in with_retries(ecs.list_clusters)["clusterArns"]:
        token = None
        while True:
            page = with_retries(
                ecs.list_services, cluster=cluster, **({"nextToken": token} if token else {})
            )
            for arn in page["serviceArns"]:
                service = with_retries(ecs.describe_services, cluster=cluster, services=[arn])[
                    "services"
                ][0]
                task = with_retries(
                    ecs.describe_task_definition, taskDefinition=service["taskDefinition"]
                )
                containers = task["taskDefinition"]["containerDefinitions"]
                if any(
                    s["valueFrom"].startswith(SECRET.arn)
                    for c in containers
                    for s in c.get("secrets", [])
                ):
                    found += 1
            token = page.get("nextToken")
            if not token:
                break
    return found


def measure(standin: StrictEcs, run: Callable[[], T]) -> tuple[T, float, int, int]:
    """``run()`` against the stand-in with its buckets full and its counts at zero: what it
    returned, the seconds it took, the ECS calls it made and how many of them were throttled."""
    standin.refill()
    standin.reset_counts()
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    return result, seconds, sum(standin.calls.values()), sum(standin.throttled.values())


def bench_discovery(
    services: int, families: int, latency: float, workers: int, baseline: bool
) -> DiscoveryFigures:
    clusters = max(1, math.ceil(services / SERVICES_PER_CLUSTER))
    with mock_aws():
        progress(f"discovery, {services} services: seeding")
        seed(boto3.client("ecs", region_name=REGION), services, families)
        standin = StrictEcs(latency)
        clients = AwsClients(region=REGION, ecs_rate_limiter=ApiRateLimiter())
        standin.attach(clients.ecs)
        cache = TaskDefinitionCache()
        discovery = ConsumerDiscovery(clients.ecs, RetryPolicy(), cache=cache, max_workers=workers)

        progress(f"discovery, {services} services: rotor, cold")
        consumers, seconds_cold, calls_cold, throttled_cold = measure(
            standin, lambda: discovery.consumers(SECRET)
        )

        progress(f"discovery, {services} services: rotor, warm (summaries cached)")
        # A later invocation: the buckets (client and server side) have refilled.
        clients.ecs_rate_limiter.buckets.update(ApiRateLimiter().buckets)
        warm, seconds_warm, calls_warm, throttled_warm = measure(
            standin, lambda: discovery.consumers(SECRET)
        )
        assert len(warm) == len(consumers)

        one_calls = one_seconds = one_throttled = None
        if baseline:
            progress(f"discovery, {services} services: one-by-one scan")
            plain = boto3.client("ecs", region_name=REGION)
            standin.attach(plain)
            found, one_seconds, one_calls, one_throttled = measure(
                standin, lambda: one_by_one_scan(plain)
            )
            assert found == len(consumers), (found, len(consumers))

    cold_bound = lower_bound(services, clusters, families)
    warm_bound = {**cold_bound, "task-definition-reads": 0}
    return DiscoveryFigures(
        services=services,
        clusters=clusters,
        task_definitions=families,
        latency_ms=latency * 1000,
        lower_bound_cold=sum(cold_bound.values()),
        lower_bound_warm=sum(warm_bound.values()),
        calls_cold=calls_cold,
        calls_warm=calls_warm,
        seconds_cold=seconds_cold,
        seconds_warm=seconds_warm,
        floor_cold=floor_seconds(cold_bound, latency),
        floor_warm=floor_seconds(warm_bound, latency),
        throttled_cold=throttled_cold,
        throttled_warm=throttled_warm,
        one_by_one_calls=one_calls,
        one_by_one_seconds=one_seconds,
        one_by_one_throttled=one_throttled,
        consumers=len(consumers),
    )


# --- fan-out ------------------------------------------------------------------------------


@dataclass
class FanoutFigures:
    consumers: int
    latency_ms: float
    redeployed: int
    seconds: float
    minimum: float
    throttled: int
    queue_left: int
    dead_letters: int


class _Context:
    function_name = "rotor-bench"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rotor-bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def bench_fanout(consumers: int, latency: float) -> FanoutFigures:
    from handlers.entry import make_handler
    from handlers.worker import make_worker_handler
    from orchestration.cli.world import backdate_deployment
    from orchestration.events.classification import REDEPLOY_KINDS
    from orchestration.runtime import Runtime
    from orchestration.settings import Settings

    with mock_aws():
        from moto.ecs.models import ecs_backends

        progress(f"fan-out, {consumers} consumers: seeding")
        plain = boto3.client("ecs", region_name=REGION)
        sm = boto3.client("secretsmanager", region_name=REGION)
        secret_arn = sm.create_secret(Name="prod/db", SecretString="placeholder")["ARN"]
        task_definition = plain.register_task_definition(
            family="app",
            containerDefinitions=[
                {
                    "name": "app",
                    "image": "app:1",
                    "memory": 256,
                    "secrets": [{"name": "DB", "valueFrom": secret_arn}],
                }
            ],
        )["taskDefinition"]["taskDefinitionArn"]
        plain.create_cluster(clusterName="prod")
        backend = ecs_backends[ACCOUNT][REGION]
        long_ago = datetime.now(UTC) - timedelta(days=10)
        for number in range(consumers):
            name = f"svc-{number:04d}"
            plain.create_service(
                cluster="prod", serviceName=name, taskDefinition=task_definition, desiredCount=1
            )
            backdate_deployment(backend, "prod", name, long_ago)
        sqs = boto3.client("sqs", region_name=REGION)
        url, queue_arn, dlq = queue_with_dead_letters(
            sqs, "redeploy", visibility_timeout=720, max_receives=8
        )

        standin = StrictEcs(latency)
        clients = AwsClients(region=REGION)
        standin.attach(clients.ecs)
        runtime = Runtime.build(clients, Settings(redeploy_queue_url=url))
        rotation = make_handler(REDEPLOY_KINDS, lambda: runtime)
        worker = make_worker_handler(lambda: runtime)
        event = json.loads((ROOT / "events" / "rotation-succeeded.json").read_text())
        event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event["detail"]["eventTime"] = event["time"]
        event["detail"]["additionalEventData"]["SecretId"] = secret_arn

        progress(f"fan-out, {consumers} consumers: planning")
        standin.refill()
        with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metrics (EMF lines)
            result = rotation(event, _Context())
        assert len(result["queued"]) == consumers, result
        standin.reset_counts()
        progress(f"fan-out, {consumers} consumers: worker")
        done = 0
        while True:
            messages = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                break
            batch = sqs_lambda_event(messages, queue_arn, REGION)
            with contextlib.redirect_stdout(io.StringIO()):  # the worker's metrics (EMF)
                answer = worker(batch, _Context())
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            updates = standin.timestamps.get("UpdateService", [])
            if len(updates) // 50 > done // 50:
                progress(f"  {len(updates)}/{consumers} UpdateService")
            done = len(updates)
        updates = sorted(standin.timestamps.get("UpdateService", []))
        left = sum(
            int(v)
            for v in sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"].values()
        )
        dead = int(
            sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"
            ]["ApproximateNumberOfMessages"]
        )
        limit = ECS_LIMITS["service-writes"]
        return FanoutFigures(
            consumers=consumers,
            latency_ms=latency * 1000,
            redeployed=len(updates),
            seconds=(updates[-1] - updates[0]) if len(updates) > 1 else 0.0,
            minimum=max(0.0, (consumers - limit.burst) / limit.per_second),
            throttled=standin.throttled["UpdateService"],
            queue_left=left,
            dead_letters=dead,
        )


# --- report -------------------------------------------------------------------------------


def report(discoveries: list[DiscoveryFigures], fanout: FanoutFigures | None) -> str:
    lines = [
        "| services | calls cold / bound | calls warm / bound | cold s | warm s | floor cold s "
        "| cold / floor | one-by-one s | one-by-one / cold | throttled (cold, warm) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for d in discoveries:
        one = f"{d.one_by_one_seconds:.1f}" if d.one_by_one_seconds is not None else "-"
        ratio = (
            f"{d.one_by_one_seconds / d.seconds_cold:.1f}x"
            if d.one_by_one_seconds is not None
            else "-"
        )
        lines.append(
            f"| {d.services:,} | {d.calls_cold} / {d.lower_bound_cold} "
            f"| {d.calls_warm} / {d.lower_bound_warm} | {d.seconds_cold:.2f} "
            f"| {d.seconds_warm:.2f} | {d.floor_cold:.2f} "
            f"| {d.seconds_cold / d.floor_cold:.2f}x | {one} | {ratio} "
            f"| {d.throttled_cold}, {d.throttled_warm} |"
        )
    if fanout is not None:
        f = fanout
        lines += [
            "",
            f"fan-out: {f.redeployed}/{f.consumers} UpdateService in {f.seconds:.1f} s against "
            f"the minimum {f.minimum:.1f} s ({f.seconds / f.minimum:.2f}x), "
            f"{f.throttled} throttled, {f.queue_left} left on the queue, "
            f"{f.dead_letters} dead-lettered",
        ]
    return "\n".join(lines)


def log_axes(axes: Any, sizes: list[int], ylabel: str, title: str) -> None:
    """One panel of a bench plot: log-log, one tick per size measured, and a legend."""
    from matplotlib.ticker import NullFormatter

    axes.set(xlabel="services", ylabel=ylabel, title=title)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.legend()
    axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
    axes.xaxis.set_minor_formatter(NullFormatter())


def plot(discoveries: list[DiscoveryFigures], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [d.services for d in discoveries]
    figure, (calls, seconds) = plt.subplots(1, 2, figsize=(11, 4.2))
    with_baseline = [d for d in discoveries if d.one_by_one_calls is not None]
    panels = (
        (calls, "calls", "lower_bound", "lower bound", "ECS calls", "ECS calls per scan"),
        (seconds, "seconds", "floor", "rate-limit floor", "seconds", "Time per scan"),
    )
    for axes, measured, bound, bound_label, ylabel, title in panels:
        for suffix, style, label in (("cold", "o-", "rotor, cold"), ("warm", "s-", "rotor, warm")):
            axes.plot(
                sizes, [getattr(d, f"{measured}_{suffix}") for d in discoveries], style, label=label
            )
        axes.plot(
            sizes,
            [getattr(d, f"{bound}_cold") for d in discoveries],
            "k--",
            label=f"{bound_label}, cold",
        )
        if with_baseline:
            axes.plot(
                [d.services for d in with_baseline],
                [getattr(d, f"one_by_one_{measured}") for d in with_baseline],
                "x:",
                label="one-by-one",
            )
        log_axes(axes, sizes, ylabel, title)
    latency = discoveries[0].latency_ms
    figure.suptitle(f"rotor discovery against a strict ECS stand-in ({latency:g} ms per call)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8, help="ROTOR_MAX_WORKERS")
    parser.add_argument(
        "--baseline-up-to",
        type=int,
        default=4000,
        help="run the one-by-one scan for sizes up to this many services (it is slow)",
    )
    parser.add_argument("--fanout", type=int, default=200, help="K consumers (0: skip)")
    parser.add_argument(
        "--plot", type=Path, default=ROOT / "bench" / "scale.png", help="PNG to write"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument(
        "--replot", type=Path, default=None, help="draw the plot from a --json file, run nothing"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    if args.replot:
        saved = json.loads(args.replot.read_text())
        plot([DiscoveryFigures(**d) for d in saved["discovery"]], args.plot)
        return

    discoveries = [
        bench_discovery(
            size, max(1, size // 10), latency, args.workers, size <= args.baseline_up_to
        )
        for size in args.sizes
    ]
    fanout = bench_fanout(args.fanout, latency) if args.fanout else None
    print(report(discoveries, fanout))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "discovery": [asdict(d) for d in discoveries],
                    "fanout": asdict(fanout) if fanout else None,
                },
                indent=2,
            )
        )
    if not args.no_plot and len(discoveries) > 1:
        plot(discoveries, args.plot)
        progress(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
