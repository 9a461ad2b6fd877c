"""Over the wire: ``rotor replay`` and ``rotor discover`` against a moto server on loopback.

The server runs in this process (``ThreadedMotoServer``), so ``seed_world`` can still reach
moto's backends to give secrets their ARN suffixes and backdate deployments. Everything the
command does, and every read-back, goes over HTTP to ``--endpoint-url``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from orchestration.aws.clients import AwsClients
from orchestration.cli.main import main
from orchestration.cli.world import load_world, seed_world
from tests.conftest import PROD_DB_READERS, REGION, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.server]

DB = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"
SERVICES = [
    ("prod", s)
    for s in ("api", "worker", "reporting", "billing", "search", "admin-console", "gateway")
] + [("batch", "nightly-export")]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def url(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A freshly reset server, seeded with events/world.json over the wire."""
    request = urllib.request.Request(f"{server_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    seed_world(AwsClients(region=REGION, endpoint_url=server_url), load_world())
    monkeypatch.chdir(ROOT)
    yield server_url


def deployments(url: str) -> dict[str, dict[str, Any]]:
    """PRIMARY deployment of every world service, read over the wire."""
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=url)
    result = {}
    for cluster in ("prod", "batch"):
        names = [s for c, s in SERVICES if c == cluster]
        for service in ecs.describe_services(cluster=cluster, services=names)["services"]:
            (primary,) = [d for d in service["deployments"] if d["status"] == "PRIMARY"]
            result[f"{cluster}/{service['serviceName']}"] = primary
    assert len(result) == len(SERVICES)
    return result


def changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {k for k in before if before[k]["id"] != after[k]["id"]}


def test_seeded_world_is_visible_over_the_wire(url):
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=url)
    assert sm.describe_secret(SecretId="prod/db")["ARN"] == DB
    before = deployments(url)
    assert before["prod/api"]["createdAt"].isoformat().startswith("2026-11-02T09:00:00")


def replay_over_the_wire(
    url: str, capsys: pytest.CaptureFixture[str], sample: str, *flags: str
) -> Any:
    """``rotor replay SAMPLE --json [FLAGS]`` against the moto server: its JSON, once it
    exited 0."""
    over_the_wire = ["--endpoint-url", url, "--region", REGION]
    status = main(["replay", sample, *over_the_wire, "--json", *flags])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def test_replay_over_the_wire_redeploys_each_stale_consumer_once(url, capsys):
    before = deployments(url)

    data = replay_over_the_wire(url, capsys, "events/rotation-succeeded.json")

    assert data["kind"] == "rotation"
    assert data["secret"] == DB
    assert sorted(a.rsplit("/", 1)[-1] for a in data["redeployed"]) == ["api", "worker"]
    assert data["failed"] == []
    skipped = {s["service"].rsplit("/", 1)[-1]: s["reason"] for s in data["skipped"]}
    assert set(skipped) == {"reporting", "billing", "search", "nightly-export"}
    after = deployments(url)
    assert changed(before, after) == {"prod/api", "prod/worker"}
    for name in ("prod/api", "prod/worker"):
        assert after[name]["createdAt"] > before[name]["createdAt"]

    # The native label event for the same rotation changes nothing more.
    again = replay_over_the_wire(url, capsys, "events/secret-label-updated-awscurrent.json")
    assert again["redeployed"] == []
    assert deployments(url) == after


def test_discover_over_the_wire(url, capsys):
    before = deployments(url)

    status = main(["discover", "prod/db", "--endpoint-url", url, "--region", REGION, "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = json.loads(captured.out)
    assert data["secret"] == DB
    rows = {f"{r['cluster']}/{r['service']}": r for r in data["consumers"]}
    assert set(rows) == PROD_DB_READERS
    assert rows["prod/api"]["action"] == "redeploy"
    assert rows["prod/reporting"]["action"] == "skip"
    assert rows["prod/reporting"]["reason"].startswith("pinned")
    assert "opted out" in rows["prod/billing"]["reason"]
    assert deployments(url) == before


def test_discover_by_partial_arn_over_the_wire_table(url, capsys):
    status = main(
        [
            "discover",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
            "--endpoint-url",
            url,
            "--region",
            REGION,
        ]
    )

    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0] == f"{DB}: 6 consumer(s)"
    services = {tuple(line.split()[:2]) for line in lines[2:]}
    assert ("prod", "worker") in services and ("prod", "admin-console") not in services
