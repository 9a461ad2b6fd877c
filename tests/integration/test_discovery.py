"""Consumer discovery against moto, with AWS's paging and DescribeServices limit enforced.

The inventory is compared with what moto holds (read through an uninstrumented client), and
the calls rotor made are read from ``ApiCalls``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestration.dispatch import process
from orchestration.ecs.discovery import ConsumerDiscovery, Inventory
from orchestration.events.classification import classify
from orchestration.runtime import Runtime
from orchestration.secrets.references import ReferenceField, SecretIdentity
from orchestration.settings import Settings
from orchestration.state.task_definitions import TaskDefinitionCache
from tests.conftest import make_runtime
from tests.integration.conftest import EcsWorld, changed, rotation_event

pytestmark = pytest.mark.integration

SIZES = {"big": 250, "mid": 31, "tiny": 2}


class PagedWorld:
    def __init__(self, secret: str, referencing: set[str]) -> None:
        self.secret = secret
        self.referencing = referencing  # task definitions that reference the secret
        self.services: dict[str, list[str]] = {}  # cluster -> service ARNs
        self.task_definitions: dict[str, str] = {}  # service ARN -> task definition ARN


def _paged_world(ecs_world: EcsWorld) -> PagedWorld:
    """Three clusters (250, 31 and 2 services); 8 distinct task definitions."""
    db = ecs_world.secret("prod/db")
    shared = [
        ecs_world.task_definition(secrets=[f"{db}:password::"]),
        ecs_world.task_definition(secrets=["/prod/plain-parameter"]),
        ecs_world.task_definition(secrets=[f"{db}:password:AWSPREVIOUS:"]),
        ecs_world.task_definition(secret_options=[db]),
        ecs_world.task_definition(repository_credentials="prod/db"),
    ]
    only = {
        "big": [],
        "mid": [ecs_world.task_definition(secrets=["/mid/only"])],
        "tiny": [
            ecs_world.task_definition(secrets=["/tiny/a"]),
            ecs_world.task_definition(secrets=["/tiny/b"]),
        ],
    }
    world = PagedWorld(db, {shared[0], shared[2], shared[3], shared[4]})
    for cluster, size in SIZES.items():
        ecs_world.cluster(cluster)
        pool = only[cluster] + shared if cluster != "tiny" else only[cluster]
        world.services[cluster] = []
        for i in range(size):
            task_definition = pool[i % len(pool)]
            arn = ecs_world.service(cluster, f"{cluster}-{i:03d}", task_definition)
            world.services[cluster].append(arn)
            world.task_definitions[arn] = task_definition
    return world


def _moto_truth(ecs_world: EcsWorld, clusters: list[str]) -> set[str]:
    """Every service moto holds in ``clusters`` (moto's own ListServices does not page)."""
    return {arn for c in clusters for arn in ecs_world.ecs.list_services(cluster=c)["serviceArns"]}


def _cluster_of(arn_or_name: str) -> str:
    return arn_or_name.rsplit("/", 1)[-1]


def _assert_aws_shaped_calls(ecs_calls: Any, clusters: list[str]) -> None:
    # ListServices: 100 a page, following nextToken until the last page.
    tokens: dict[str, list[str | None]] = {}
    for params in ecs_calls.of("ListServices"):
        assert params["maxResults"] == 100
        tokens.setdefault(_cluster_of(params["cluster"]), []).append(params.get("nextToken"))
    expected_tokens = {c: [None, *[str(n) for n in range(100, SIZES[c], 100)]] for c in clusters}
    assert tokens == expected_tokens
    # DescribeServices: at most ten, with tags, each service once.
    described: list[str] = []
    for params in ecs_calls.of("DescribeServices"):
        assert 1 <= len(params["services"]) <= 10
        assert params["include"] == ["TAGS"]
        described.extend(params["services"])
    assert len(described) == len(set(described))
    assert ecs_calls.counts["DescribeServices"] == sum(math.ceil(SIZES[c] / 10) for c in clusters)


def test_all_clusters_every_service_found_with_aws_paging(
    ecs_world, ecs_calls, clients, retry, runtime
):
    world = _paged_world(ecs_world)
    task_definitions = world.task_definitions
    ecs_calls.calls.clear()
    ecs_calls.counts.clear()

    inventory = runtime.discovery().scan()

    found = [service.arn for service, _ in inventory.services]
    assert len(found) == len(set(found)) == sum(SIZES.values())
    assert set(found) == _moto_truth(ecs_world, list(SIZES))
    assert inventory.missing == []
    assert {s.arn: s.task_definition for s, _ in inventory.services} == task_definitions
    assert ecs_calls.counts["ListClusters"] == 1
    assert ecs_calls.of("ListClusters")[0]["maxResults"] == 100
    _assert_aws_shaped_calls(ecs_calls, list(SIZES))
    # One DescribeTaskDefinition per distinct task definition, never more.
    fetched = Counter(p["taskDefinition"] for p in ecs_calls.of("DescribeTaskDefinition"))
    assert fetched == Counter(dict.fromkeys(set(task_definitions.values()), 1))
    assert len(fetched) == 8
    # Consumers of prod/db: every service on the four task definitions that reference it.
    consumers = inventory.consumers_of(SecretIdentity.from_full_arn(world.secret))
    expected = {arn for arn, td in task_definitions.items() if td in world.referencing}
    assert {c.service.arn for c in consumers} == expected
    # The fakes do refuse what AWS refuses, so the counts above mean something.
    with pytest.raises(ClientError, match="at most 10"):
        clients.ecs.describe_services(cluster="big", services=world.services["big"][:11])


@pytest.mark.parametrize("form", ["names", "arns"])
def test_rotor_clusters_limits_the_scan(ecs_world, ecs_calls, clients, retry, monkeypatch, form):
    world = _paged_world(ecs_world)
    chosen = ["big", "tiny"]
    value = (
        ",".join(chosen)
        if form == "names"
        else ", ".join(
            ecs_world.ecs.describe_clusters(clusters=chosen)["clusters"][i]["clusterArn"]
            for i in range(2)
        )
    )
    monkeypatch.setenv("ROTOR_CLUSTERS", value)
    settings = Settings.from_env()
    assert len(settings.clusters) == 2
    runtime = make_runtime(clients, retry, settings)
    ecs_calls.calls.clear()
    ecs_calls.counts.clear()

    inventory = runtime.discovery().scan()

    found = {service.arn for service, _ in inventory.services}
    assert found == _moto_truth(ecs_world, chosen)
    assert len(found) == SIZES["big"] + SIZES["tiny"]
    assert not found & set(world.services["mid"])
    assert ecs_calls.counts["ListClusters"] == 0
    _assert_aws_shaped_calls(ecs_calls, chosen)
    fetched = {p["taskDefinition"] for p in ecs_calls.of("DescribeTaskDefinition")}
    assert fetched == {world.task_definitions[arn] for arn in found}
    assert ecs_calls.counts["DescribeTaskDefinition"] == len(fetched)


def test_warm_cache_makes_no_describe_task_definition_call_it_made_before(
    ecs_world, ecs_calls, clients, retry
):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    first = ecs_world.task_definition(secrets=[db], family="api")
    second = ecs_world.task_definition(secrets=["/plain"], family="web")
    for i in range(12):
        ecs_world.service("prod", f"svc-{i}", first if i % 2 else second)
    cache = TaskDefinitionCache()

    def discovery() -> ConsumerDiscovery:
        # Runtime.build, not tests.conftest.make_runtime: make_runtime replaces an *empty*
        # cache with a new one (``cache or TaskDefinitionCache()``; an empty cache is falsy).
        return Runtime.build(clients, Settings(), retry=retry, task_definitions=cache).discovery()

    cold = discovery().scan()
    assert ecs_calls.counts["DescribeTaskDefinition"] == 2
    assert len(cache) == 2

    warm = discovery().scan()  # a new invocation in the same (warm) container
    assert ecs_calls.counts["DescribeTaskDefinition"] == 2
    assert [s.arn for s, _ in warm.services] == [s.arn for s, _ in cold.services]

    # A new revision is the only thing fetched on the next scan.
    third = ecs_world.task_definition(secrets=[db, "/plain"], family="api")
    ecs_world.ecs.update_service(cluster="prod", service="svc-1", taskDefinition=third)
    again = discovery().scan()
    fetched = [p["taskDefinition"] for p in ecs_calls.of("DescribeTaskDefinition")]
    assert sorted(fetched) == sorted([first, second, third])
    by_arn = {s.name: td for s, td in again.services}
    assert by_arn["svc-1"].arn == third
    assert len(by_arn["svc-1"].references) == 2


def test_unreadable_references_are_reported_and_do_not_stop_the_scan(
    ecs_world, ecs_calls, clients, retry, runtime
):
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    bad_values = [
        "arn:aws:s3:::nope",
        "arn:aws:secretsmanager:us-east-1:12345:secret:prod/db-Ab12Cd",  # short account
        "not a parameter name!",
    ]
    broken = ecs_world.task_definition(secrets=bad_values, family="broken")
    half = ecs_world.task_definition(secrets=["arn:aws:s3:::nope", f"{db}:password::"])
    good = ecs_world.task_definition(secrets=[db], family="good")
    ecs_world.service("prod", "broken", broken)
    ecs_world.service("prod", "half", half)
    ecs_world.service("prod", "good", good)
    before = ecs_world.primaries([("prod", "broken"), ("prod", "half"), ("prod", "good")])

    inventory: Inventory = runtime.discovery().scan()

    assert {s.name for s, _ in inventory.services} == {"broken", "half", "good"}
    unreadable = sorted(inventory.unreadable, key=lambda u: (u.task_definition, u.value))
    assert [(u.task_definition, u.value) for u in unreadable] == sorted(
        [(broken, v) for v in bad_values] + [(half, "arn:aws:s3:::nope")]
    )
    assert all(u.container == "app" and u.error for u in unreadable)
    consumers = inventory.consumers_of(SecretIdentity.from_full_arn(db))
    assert {c.service.name for c in consumers} == {"half", "good"}

    # And the rotation still goes through for the services rotor can read.
    outcome = process(classify(rotation_event(db)), runtime)
    assert {a.rsplit("/", 1)[-1] for a in outcome.redeployed} == {"half", "good"}
    after = ecs_world.primaries([("prod", "broken"), ("prod", "half"), ("prod", "good")])
    assert changed(before, after) == {"prod/half", "prod/good"}


def test_secret_options_and_repository_credentials_references_are_found(
    ecs_world, ecs_calls, runtime
):
    db = ecs_world.secret("prod/db")
    registry = ecs_world.secret("registry/creds")
    ecs_world.cluster("prod")
    tds = {
        "splunk": ecs_world.task_definition(secret_options=[f"{db}:token::"]),
        "splunk-partial": ecs_world.task_definition(secret_options=[db.rsplit("-", 1)[0]]),
        "private-image-name": ecs_world.task_definition(repository_credentials="registry/creds"),
        "private-image-arn": ecs_world.task_definition(repository_credentials=registry),
        "sidecars": ecs_world.task_definition(secret_options=[db], containers=3),
    }
    for name, td in tds.items():
        ecs_world.service("prod", name, td)

    inventory = runtime.discovery().scan()

    db_consumers = {
        c.service.name: c for c in inventory.consumers_of(SecretIdentity.from_full_arn(db))
    }
    assert set(db_consumers) == {"splunk", "splunk-partial", "sidecars"}
    for consumer in db_consumers.values():
        assert [ref.field for _, ref in consumer.references] == [ReferenceField.SECRET_OPTIONS]
        assert not consumer.pinned
    registry_consumers = {
        c.service.name: c for c in inventory.consumers_of(SecretIdentity.from_full_arn(registry))
    }
    assert set(registry_consumers) == {"private-image-name", "private-image-arn"}
    for consumer in registry_consumers.values():
        fields = [ref.field for _, ref in consumer.references]
        assert fields == [ReferenceField.REPOSITORY_CREDENTIALS]
    # Read back: every service rotor saw is the one moto has, on the task definition moto has.
    for service, summary in inventory.services:
        live = ecs_world.ecs.describe_services(cluster="prod", services=[service.arn])
        assert live["services"][0]["taskDefinition"] == summary.arn == tds[service.name]
    assert ecs_calls.counts["DescribeTaskDefinition"] == len(tds)
