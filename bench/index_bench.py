"""Benchmark: ECS reads per rotation with and without the consumer index, against the stand-in.

Run on demand (not a test), from the repository root:

    .venv/bin/python bench/index_bench.py                       # 1,000, 4,000, 10,000 services
    .venv/bin/python bench/index_bench.py --sizes 1000 --json bench/index_results.json

An account of N services in clusters of 250 (``bench/standin.py``: ECS's paging, limits,
latency and server-side token buckets), 21 of them consumers of one secret, spread over 4
clusters. The rotation function's own handler plans one rotation onto the redeploy queue
(moto SQS) and the worker function's handler runs its jobs off the queue, twice: without an
index (a full scan: ListClusters, ListServices, DescribeServices) and with one (the candidates
only). The reads counted are the whole rotation's, planning and jobs (a job that runs within
``ROTOR_SNAPSHOT_MAX_AGE`` of the planner's look decides on it and reads nothing more); the
jobs' ``UpdateService`` calls are writes, counted apart. Both runs have the task-definition
summaries cached (as the state table holds them), so the difference is the service reads.
The index is the in-memory backend, rebuilt from a full scan made before the measured run and
outside the stand-in: the DynamoDB backend reads the same (the bench counts ECS calls, not
table calls).
The goal (issue 16): at most ceil(consumers / 10) + one read per cluster holding a consumer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from moto import mock_aws
from scale_bench import (
    REGION,
    ROOT,
    SERVICES_PER_CLUSTER,
    _Context,
    log_axes,
    progress,
)
from standin import StrictEcs

CONSUMERS = 21
CONSUMER_CLUSTERS = 4
WRITES = {"UpdateService"}  # the jobs' deployments: not reads


@dataclass
class IndexFigures:
    services: int
    clusters: int
    consumers: int
    consumer_clusters: int
    goal: int  # ceil(consumers / 10) + clusters holding a consumer
    reads_scan: int  # ECS reads of one rotation without the index (planning and jobs)
    reads_index: int  # with it
    seconds_scan: float  # the planning's
    seconds_index: float
    found_scan: int  # consumers queued
    found_index: int
    calls_scan: dict[str, int]
    calls_index: dict[str, int]
    redeployed_scan: int = 0  # the jobs' UpdateService calls (writes)
    redeployed_index: int = 0
    worker_reads_scan: int = 0  # of reads_scan, the jobs' own
    worker_reads_index: int = 0


def seed(ecs: Any, sm: Any, services: int) -> tuple[str, int]:
    """N services over clusters of 250; CONSUMERS of them reference the secret."""
    secret_arn: str = sm.create_secret(Name="prod/db", SecretString="placeholder")["ARN"]
    consumer = ecs.register_task_definition(
        family="consumer",
        containerDefinitions=[
            {
                "name": "app",
                "image": "app:1",
                "memory": 256,
                "secrets": [{"name": "DB", "valueFrom": f"{secret_arn}:password::"}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    families = max(1, services // 10)
    for family in range(families):
        ecs.register_task_definition(
            family=f"other-{family}",
            containerDefinitions=[
                {
                    "name": "app",
                    "image": "app:1",
                    "memory": 256,
                    "secrets": [{"name": "P", "valueFrom": "/plain/ssm/parameter"}],
                }
            ],
        )
    clusters = max(CONSUMER_CLUSTERS, math.ceil(services / SERVICES_PER_CLUSTER))
    for cluster in range(clusters):
        ecs.create_cluster(clusterName=f"cluster-{cluster}")
    for number in range(services):
        is_consumer = number < CONSUMERS  # in clusters 0..3, in turn
        cluster = number % (CONSUMER_CLUSTERS if is_consumer else clusters)
        ecs.create_service(
            cluster=f"cluster-{cluster}",
            serviceName=f"svc-{number:05d}",
            taskDefinition=consumer if is_consumer else f"other-{number % families}",
            desiredCount=1,
        )
        if number and number % 1000 == 0:
            progress(f"  seeded {number}/{services} services")
    return secret_arn, clusters


def rotation_event(secret_arn: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "rotation-succeeded.json").read_text())
    event["time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event["detail"]["eventTime"] = event["time"]
    event["detail"]["additionalEventData"]["SecretId"] = secret_arn
    return event


def bench_index(services: int, latency: float) -> IndexFigures:
    from handlers.entry import make_handler
    from handlers.worker import make_worker_handler
    from orchestration.aws.clients import AwsClients
    from orchestration.aws.retry import RetryPolicy
    from orchestration.ecs.discovery import ConsumerDiscovery
    from orchestration.ecs.indexed import index_records
    from orchestration.events.classification import REDEPLOY_KINDS
    from orchestration.runtime import Runtime
    from orchestration.settings import Settings
    from orchestration.state.consumer_index import ConsumerIndex
    from orchestration.state.task_definitions import TaskDefinitionCache
    from tests.aws_fakes import queue_with_dead_letters, sqs_lambda_event

    with mock_aws():
        progress(f"index, {services} services: seeding")
        plain = boto3.client("ecs", region_name=REGION)
        sm = boto3.client("secretsmanager", region_name=REGION)
        secret_arn, clusters = seed(plain, sm, services)
        sqs = boto3.client("sqs", region_name=REGION)

        progress(f"index, {services} services: the reconciler's scan and rebuild (unmetered)")
        summaries = TaskDefinitionCache()  # as the state table keeps them
        inventory = ConsumerDiscovery(plain, RetryPolicy(), cache=summaries).scan()
        assert not inventory.failures
        index = ConsumerIndex.in_memory()
        index.rebuild(REGION, index_records(inventory), datetime.now(UTC))

        standin = StrictEcs(latency)
        results: dict[str, tuple[int, float, int, dict[str, int], int, int]] = {}
        for mode, consumer_index in (("scan", None), ("index", index)):
            clients = AwsClients(region=REGION)
            standin.attach(clients.ecs)
            url, queue_arn, _ = queue_with_dead_letters(
                sqs, f"redeploy-{mode}", visibility_timeout=720, max_receives=8
            )
            runtime = Runtime.build(
                clients,
                Settings(redeploy_queue_url=url),
                task_definitions=summaries,
                consumer_index=consumer_index,
            )
            rotation = make_handler(REDEPLOY_KINDS, lambda runtime=runtime: runtime)
            worker = make_worker_handler(lambda runtime=runtime: runtime)
            progress(f"index, {services} services: one rotation, {mode}")
            standin.refill()
            standin.reset_counts()
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the handler's metrics (EMF)
                answer = rotation(rotation_event(secret_arn), _Context())
            seconds = time.perf_counter() - started
            planning = sum(n for name, n in standin.calls.items() if name not in WRITES)
            progress(f"index, {services} services: its jobs, {mode}")
            run_jobs(sqs, url, queue_arn, worker, sqs_lambda_event)
            calls = dict(standin.calls)
            reads = sum(n for name, n in calls.items() if name not in WRITES)
            results[mode] = (
                reads,
                seconds,
                len(answer["queued"]),
                calls,
                sum(n for name, n in calls.items() if name in WRITES),
                reads - planning,
            )

    holding = min(CONSUMERS, CONSUMER_CLUSTERS, clusters)
    return IndexFigures(
        services=services,
        clusters=clusters,
        consumers=CONSUMERS,
        consumer_clusters=holding,
        goal=math.ceil(CONSUMERS / 10) + holding,
        reads_scan=results["scan"][0],
        reads_index=results["index"][0],
        seconds_scan=results["scan"][1],
        seconds_index=results["index"][1],
        found_scan=results["scan"][2],
        found_index=results["index"][2],
        calls_scan=results["scan"][3],
        calls_index=results["index"][3],
        redeployed_scan=results["scan"][4],
        redeployed_index=results["index"][4],
        worker_reads_scan=results["scan"][5],
        worker_reads_index=results["index"][5],
    )


def run_jobs(sqs: Any, url: str, queue_arn: str, worker: Any, sqs_lambda_event: Any) -> None:
    """The worker function on whatever the queue holds, as its SQS event source runs it."""
    for _ in range(100):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return
        with contextlib.redirect_stdout(io.StringIO()):  # the worker's metrics (EMF)
            answer = worker(sqs_lambda_event(messages, queue_arn, REGION), _Context())
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    raise AssertionError("the redeploy queue never emptied")


def report(figures: list[IndexFigures]) -> str:
    lines = [
        "| services | clusters | ECS reads, scan | ECS reads, index | goal | scan s | index s "
        "| consumers found (scan, index) | jobs' reads (scan, index) | redeployed (scan, index) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in figures:
        lines.append(
            f"| {f.services:,} | {f.clusters} | {f.reads_scan:,} | {f.reads_index} | {f.goal} "
            f"| {f.seconds_scan:.2f} | {f.seconds_index:.2f} | {f.found_scan}, {f.found_index} "
            f"| {f.worker_reads_scan}, {f.worker_reads_index} "
            f"| {f.redeployed_scan}, {f.redeployed_index} |"
        )
    return "\n".join(lines)


def plot(figures: list[IndexFigures], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [f.services for f in figures]
    figure, (reads, seconds) = plt.subplots(1, 2, figsize=(11, 4.2))
    reads.plot(sizes, [f.reads_scan for f in figures], "o-", label="full scan")
    reads.plot(sizes, [f.reads_index for f in figures], "s-", label="consumer index")
    reads.plot(sizes, [f.goal for f in figures], "k--", label="goal: ceil(n/10) + clusters")
    seconds.plot(sizes, [f.seconds_scan for f in figures], "o-", label="full scan")
    seconds.plot(sizes, [f.seconds_index for f in figures], "s-", label="consumer index")
    for axes, ylabel, title in (
        (reads, "ECS reads", f"ECS reads per rotation ({CONSUMERS} consumers)"),
        (seconds, "seconds", "Time to plan one rotation"),
    ):
        log_axes(axes, sizes, ylabel, title)
    figure.suptitle("rotor with and without the consumer index, against the ECS stand-in")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "index.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--replot", type=Path, default=None, help="plot a --json file, run nothing")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.replot.read_text())
        plot([IndexFigures(**f) for f in saved["index"]], args.plot)
        return
    figures = [bench_index(size, args.latency_ms / 1000) for size in args.sizes]
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps({"index": [asdict(f) for f in figures]}, indent=2))
    if not args.no_plot and len(figures) > 1:
        plot(figures, args.plot)
        progress(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
