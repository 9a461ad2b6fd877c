"""Benchmark: discovery of 1,000 services in 5 clusters, against a one-by-one scan.

Run on demand (not a test):  python bench/discovery_bench.py [--services 1000] [--latency-ms 20]

Seeds an in-process moto account, makes moto page ECS list calls like AWS (tests/aws_fakes.py),
adds a fixed latency to every ECS call (as a network round trip would), then:

* rotor's discovery (concurrent, rate-limited to ECS's published limits, task definition cache);
* a one-by-one scan, as hand-written per-secret Lambdas do it: list each cluster with the
  default page size, DescribeServices and DescribeTaskDefinition for every service in turn.

Prints ECS calls per operation against the lower bound
(list pages + ceil(services / 10) describes + distinct task definitions) and both wall times.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ.setdefault(_name, _value)

from moto import mock_aws  # noqa: E402

from orchestration.aws.clients import AwsClients  # noqa: E402
from orchestration.aws.ratelimit import ApiRateLimiter  # noqa: E402
from orchestration.aws.retry import RetryPolicy  # noqa: E402
from orchestration.ecs.discovery import ConsumerDiscovery, TaskDefinitionCache  # noqa: E402
from orchestration.secrets.references import SecretIdentity  # noqa: E402
from tests.aws_fakes import ApiCalls, enforce_ecs_limits  # noqa: E402

REGION, ACCOUNT = "us-east-1", "123456789012"
SECRET = SecretIdentity("aws", REGION, ACCOUNT, "prod/db", "Ab12Cd")


def add_latency(client: Any, seconds: float) -> None:
    def wait(**_: Any) -> None:
        time.sleep(seconds)

    client.meta.events.register("before-call.ecs", wait)


def seed(clients: AwsClients, services: int, clusters: int, families: int) -> None:
    ecs = clients.ecs
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
    for cluster in range(clusters):
        ecs.create_cluster(clusterName=f"cluster-{cluster}")
    for number in range(services):
        ecs.create_service(
            cluster=f"cluster-{number % clusters}",
            serviceName=f"svc-{number:04d}",
            taskDefinition=f"app-{number % families}",
            desiredCount=1,
        )


def one_by_one_scan(clients: AwsClients) -> int:
    """The baseline: sequential, one service and one task definition at a time."""
    ecs = clients.ecs
    found = 0
    for cluster in ecs.list_clusters()["clusterArns"]:
        token = None
        while True:
            page = ecs.list_services(cluster=cluster, **({"nextToken": token} if token else {}))
            for arn in page["serviceArns"]:
                service = ecs.describe_services(cluster=cluster, services=[arn])["services"][0]
                task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--families", type=int, default=50, help="distinct task definitions")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    latency = args.latency_ms / 1000

    with mock_aws():
        clients = AwsClients(region=REGION)
        enforce_ecs_limits(clients.ecs)
        seed(clients, args.services, args.clusters, args.families)
        add_latency(clients.ecs, latency)
        calls = ApiCalls().attach(clients.ecs)

        discovery = ConsumerDiscovery(
            clients.ecs, RetryPolicy(), cache=TaskDefinitionCache(), max_workers=args.workers
        )
        started = time.perf_counter()
        consumers = discovery.consumers(SECRET)
        rotor_seconds = time.perf_counter() - started
        rotor_calls = Counter(calls.counts)

        calls.counts.clear()
        started = time.perf_counter()
        warm = discovery.consumers(SECRET)
        warm_seconds = time.perf_counter() - started
        warm_calls = Counter(calls.counts)

        # The baseline gets its own client with no rate limiter: only the latency slows it.
        plain = AwsClients(region=REGION, ecs_rate_limiter=ApiRateLimiter(limits={}))
        enforce_ecs_limits(plain.ecs)
        add_latency(plain.ecs, latency)
        baseline = ApiCalls().attach(plain.ecs)
        started = time.perf_counter()
        baseline_found = one_by_one_scan(plain)
        baseline_seconds = time.perf_counter() - started
        baseline_calls = Counter(baseline.counts)

    per_cluster = math.ceil(args.services / args.clusters)
    list_pages = 1 + args.clusters * math.ceil(per_cluster / 100)
    describes = args.clusters * math.ceil(per_cluster / 10)
    bound = list_pages + describes + args.families
    total = sum(rotor_calls.values())

    print(
        f"{args.services} services in {args.clusters} clusters, {args.families} task "
        f"definitions, {args.latency_ms:g} ms per ECS call, {args.workers} workers"
    )
    print(
        f"consumers found: rotor {len(consumers)} (warm {len(warm)}), one-by-one {baseline_found}"
    )
    print()
    print(f"{'operation':24}{'rotor':>8}{'warm':>8}{'one-by-one':>12}")
    for op in sorted(set(rotor_calls) | set(baseline_calls)):
        print(f"{op:24}{rotor_calls[op]:>8}{warm_calls[op]:>8}{baseline_calls[op]:>12}")
    print(f"{'total':24}{total:>8}{sum(warm_calls.values()):>8}{sum(baseline_calls.values()):>12}")
    print()
    print(
        f"lower bound: {list_pages} list pages + {describes} describes + {args.families} "
        f"task definitions = {bound} calls; rotor made {total} = {total / bound:.2f}x"
    )
    print(
        f"time: rotor {rotor_seconds:.2f} s, one-by-one {baseline_seconds:.2f} s "
        f"= {baseline_seconds / rotor_seconds:.1f}x faster"
    )
    print(
        f"warm rescan right after: {warm_seconds:.2f} s, no DescribeTaskDefinition; it waits "
        f"on the rate limiter, the first scan having spent the ECS burst allowance"
    )


if __name__ == "__main__":
    main()
