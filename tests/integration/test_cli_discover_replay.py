"""``rotor discover``, ``rotor replay`` and ``rotor demo`` against the embedded world.

The command line starts its own moto mock (``--world``), so these tests use no moto fixture.
``world_probe`` wraps the embedded world to read every service's PRIMARY deployment right
after seeding and right before the mock stops, and to count the UpdateService calls that
reached moto: what the command printed is checked against what happened in moto.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestration.cli.main import main
from orchestration.cli.world import EmbeddedWorld
from tests.conftest import PROD_DB_READERS, ROOT
from tests.integration.conftest import EcsWorld

pytestmark = pytest.mark.integration

DB = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"
SERVICE = "arn:aws:ecs:us-east-1:123456789012:service/{}"
ALL_SERVICES = [
    "prod/api",
    "prod/worker",
    "prod/reporting",
    "prod/billing",
    "prod/search",
    "prod/admin-console",
    "prod/gateway",
    "batch/nightly-export",
]


class WorldProbe:
    def __init__(self) -> None:
        self.worlds = 0
        self.before: dict[str, dict[str, Any]] = {}
        self.after: dict[str, dict[str, Any]] = {}
        self.updates: Counter[str] = Counter()
        self._world: EcsWorld | None = None

    def changed(self) -> set[str]:
        assert self.before and self.after, "the embedded world was not used"
        return {k for k in self.before if self.before[k]["id"] != self.after[k]["id"]}

    def enter(self, clients: Any) -> None:
        self.worlds += 1
        self._world = EcsWorld(clients)  # counts UpdateService calls that reach moto
        self.before = self._read()

    def exit(self) -> None:
        if self._world is not None:
            self.after = self._read()
            self.updates = self._world.updates_reached_moto
            self._world = None

    def _read(self) -> dict[str, dict[str, Any]]:
        assert self._world is not None
        return self._world.primaries(tuple(s.split("/")) for s in ALL_SERVICES)


@pytest.fixture
def world_probe(monkeypatch: pytest.MonkeyPatch) -> WorldProbe:
    probe = WorldProbe()
    real_enter, real_exit = EmbeddedWorld.__enter__, EmbeddedWorld.__exit__

    def enter(self: EmbeddedWorld) -> Any:
        clients = real_enter(self)
        probe.enter(clients)
        return clients

    def exit_(self: EmbeddedWorld, *exc: object) -> None:
        probe.exit()
        real_exit(self, *exc)

    monkeypatch.setattr(EmbeddedWorld, "__enter__", enter)
    monkeypatch.setattr(EmbeddedWorld, "__exit__", exit_)
    monkeypatch.chdir(ROOT)
    return probe


def one_json_object(text: str) -> dict[str, Any]:
    data = json.loads(text)  # the whole of stdout, nothing before or after
    assert isinstance(data, dict)
    return data


# --- discover ----------------------------------------------------------------------------


def test_discover_json_lists_consumers_with_action_and_reason(world_probe, capsys):
    status = main(["discover", "prod/db", "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = one_json_object(captured.out)
    assert set(data) == {"secret", "rotated_at", "consumers", "unreadable_references"}
    assert data["unreadable_references"] == []
    assert data["secret"] == DB
    rows = {f"{r['cluster']}/{r['service']}": r for r in data["consumers"]}
    assert len(rows) == len(data["consumers"])
    # Services that do not reference prod/db (admin-console reads prod/db-admin) are absent.
    assert set(rows) == PROD_DB_READERS
    for row in rows.values():
        assert {"cluster", "service", "task_definition", "action", "reason", "references"} <= set(
            row
        )
        assert row["action"] in ("redeploy", "skip")
        assert row["reason"]
        assert row["references"]
    assert rows["prod/api"]["action"] == "redeploy"
    assert rows["prod/worker"]["action"] == "redeploy"
    assert rows["prod/api"]["task_definition"].endswith(":task-definition/api:1")
    assert rows["prod/reporting"]["action"] == "skip"
    assert rows["prod/reporting"]["reason"].startswith("pinned (stage AWSPREVIOUS)")
    assert [r["pinned"] for r in rows["prod/reporting"]["references"]] == [True]
    assert rows["prod/billing"]["action"] == "skip"
    assert "opted out" in rows["prod/billing"]["reason"]
    assert rows["batch/nightly-export"]["action"] == "skip"
    assert rows["batch/nightly-export"]["reason"].startswith("desired count is 0")
    worker_refs = [r["value_from"] for r in rows["prod/worker"]["references"]]
    assert worker_refs == ["arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db"]
    # discover only looks: nothing was redeployed in moto.
    assert world_probe.changed() == set()
    assert sum(world_probe.updates.values()) == 0


def test_discover_table_without_json(world_probe, capsys):
    status = main(["discover", "prod/db", "--world"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0] == f"{DB}: 6 consumer(s)"
    assert lines[1].strip().startswith("actions as if it got a new value at ")
    assert lines[2].split() == ["CLUSTER", "SERVICE", "TASK", "DEFINITION", "ACTION", "REASON"]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[3:]}
    assert set(rows) == {
        ("prod", "api"),
        ("prod", "worker"),
        ("prod", "reporting"),
        ("prod", "billing"),
        ("prod", "search"),
        ("batch", "nightly-export"),
    }
    assert rows[("prod", "api")][2:4] == ["api:1", "redeploy"]
    assert rows[("prod", "reporting")][2:5] == ["reporting:1", "skip", "pinned"]
    assert rows[("prod", "billing")][3:5] == ["skip", "opted"]
    assert "gateway" not in captured.out and "admin-console" not in captured.out
    with pytest.raises(json.JSONDecodeError):
        json.loads(captured.out)
    assert world_probe.changed() == set()


@pytest.mark.parametrize(
    ("rotated_at", "search_action"),
    [(None, "redeploy"), ("2026-11-20T10:00:05Z", "skip")],
    ids=["now", "the-sample-rotation"],
)
def test_discover_judges_freshness_at_rotated_at(world_probe, capsys, rotated_at, search_action):
    # prod/search was deployed 2026-11-20T10:20:00Z: stale for a rotation now, fresh for
    # the sample rotation at 10:00:05.
    extra = ["--rotated-at", rotated_at] if rotated_at else []
    status = main(["discover", "prod/db", "--world", "--json", *extra])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = one_json_object(captured.out)
    rows = {f"{r['cluster']}/{r['service']}": r for r in data["consumers"]}
    assert rows["prod/search"]["action"] == search_action
    if rotated_at:
        assert data["rotated_at"] == rotated_at


def test_discover_rejects_a_bad_rotated_at(world_probe, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["discover", "prod/db", "--world", "--rotated-at", "yesterday"])
    assert exited.value.code == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err


def test_discover_unknown_secret_is_bad_input(world_probe, capsys):
    status = main(["discover", "prod/nope", "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("rotor: error:") and "prod/nope" in captured.err
    assert world_probe.changed() == set()


# --- replay ------------------------------------------------------------------------------


def test_replay_rotation_json_redeploys_the_stale_consumers(world_probe, capsys):
    status = main(["replay", "events/rotation-succeeded.json", "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = one_json_object(captured.out)
    assert data["kind"] == "rotation"
    assert data["secret"] == DB
    assert sorted(data["redeployed"]) == sorted(
        SERVICE.format(s) for s in ("prod/api", "prod/worker")
    )
    skipped = {item["service"]: item["reason"] for item in data["skipped"]}
    assert all(set(item) == {"service", "reason"} for item in data["skipped"])
    assert set(skipped) == {
        SERVICE.format(s)
        for s in ("prod/reporting", "prod/billing", "prod/search", "batch/nightly-export")
    }
    assert skipped[SERVICE.format("prod/search")].startswith("already fresh")
    assert skipped[SERVICE.format("prod/reporting")].startswith("pinned")
    assert data["failed"] == []
    # Read back from moto: exactly api and worker got one new deployment each.
    assert world_probe.changed() == {"prod/api", "prod/worker"}
    assert world_probe.updates == Counter({"api": 1, "worker": 1})
    for name in ("prod/api", "prod/worker"):
        assert world_probe.after[name]["createdAt"] > world_probe.before[name]["createdAt"]


def test_replay_past_the_cluster_cap_exits_0_and_says_who_waits(world_probe, capsys, monkeypatch):
    monkeypatch.setenv("ROTOR_MAX_ROLLOUTS_PER_CLUSTER", "1")

    status = main(["replay", "events/rotation-succeeded.json", "--world"])

    captured = capsys.readouterr()
    assert status == 0, captured.err  # nothing failed: one of api, worker waits for the cap
    assert len(world_probe.changed() & {"prod/api", "prod/worker"}) == 1
    (waiting,) = [line.strip() for line in captured.out.splitlines() if "WAITING" in line]
    assert "rollouts under way (ROTOR_MAX_ROLLOUTS_PER_CLUSTER)" in waiting
    assert "wait for a rollout slot" in captured.out
    assert "FAILED" not in captured.out


def test_replay_text_output(world_probe, capsys):
    status = main(["replay", "events/secret-label-updated-awscurrent.json", "--world"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = [line.strip() for line in captured.out.splitlines()]
    assert lines[0] == "events/secret-label-updated-awscurrent.json"
    assert lines[1] == f"secret_value_changed: {DB}"
    redeployed = lines[lines.index("redeployed:") + 1 : lines.index("skipped:")]
    assert sorted(redeployed) == ["prod/api", "prod/worker"]
    assert world_probe.changed() == {"prod/api", "prod/worker"}


@pytest.mark.parametrize(
    "event", ["put-secret-value-awspending.json", "get-secret-value-success.json"]
)
def test_replay_ignore_event_does_nothing(world_probe, capsys, event):
    status = main(["replay", f"events/{event}", "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = one_json_object(captured.out)
    assert data["kind"] == "ignore"
    assert data["reason"]
    assert (data["redeployed"], data["skipped"], data["failed"]) == ([], [], [])
    assert data["status"] == "unrouted"  # no rule sends it to a function ...
    assert world_probe.worlds == 0  # ... so there is nothing to connect to


@pytest.mark.parametrize(
    ("content", "label"),
    [
        (None, "world file: JSON, but not an event"),
        ("this is not json", "not JSON"),
        ("[1, 2, 3]", "a JSON array"),
        ('{"source": "aws.secretsmanager"}', "an object without the envelope"),
    ],
)
def test_replay_of_a_file_that_is_not_an_event_is_bad_input(
    world_probe, capsys, tmp_path: Path, content, label
):
    path = ROOT / "events" / "world.json"
    if content is not None:
        path = tmp_path / "not-an-event.json"
        path.write_text(content)

    status = main(["replay", str(path), "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 2, label
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.err.startswith("rotor: error:")
    assert str(path) in captured.err
    # Rejected before any world was started.
    assert world_probe.worlds == 0


# --- demo --------------------------------------------------------------------------------


def test_demo_redeploys_each_consumer_once_and_shows_notifications(world_probe, capsys):
    status = main(["demo"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    out = captured.out
    redeployed = ["prod/api", "prod/worker", "prod/gateway", "prod/admin-console"]
    for name in redeployed:
        assert out.count(f"\n    {name}\n") == 1, name  # listed once, under "redeployed:"
        marked = [line for line in out.splitlines() if line.strip().startswith(name + " ")]
        assert len(marked) == 1 and marked[0].endswith("<- redeployed"), name
    assert out.count("<- redeployed") == len(redeployed)
    assert "Notifications received from SNS (4):" in out
    assert out.count("\n--- rotor: ") == 4
    assert "rotor: RotationFailed for prod/api-signer" in out
    assert "read while scheduled for deletion" in out
    assert "4 redeploys (4 services, each once)" in out
    assert "0 failures" in out
    # Read back from moto: those four, once each, nothing else.
    assert world_probe.changed() == set(redeployed)
    assert world_probe.updates == Counter({n.split("/")[1]: 1 for n in redeployed})


@pytest.mark.parametrize(
    "secret_id",
    [
        "prod/api-signer",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-signer",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-signer-Qw34Er",
    ],
)
def test_discover_api_signer_by_name_partial_or_full_arn(world_probe, capsys, secret_id):
    """The gateway reads prod/api-signer twice: by bare name (repositoryCredentials) and by
    full ARN (logConfiguration.secretOptions). However the secret is named, both are found."""
    status = main(["discover", secret_id, "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = one_json_object(captured.out)
    assert data["secret"] == (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-signer-Qw34Er"
    )
    (gateway,) = data["consumers"]
    assert (gateway["cluster"], gateway["service"]) == ("prod", "gateway")
    assert sorted(r["field"] for r in gateway["references"]) == [
        "logConfiguration.secretOptions",
        "repositoryCredentials",
    ]
    assert world_probe.changed() == set()


def test_discover_says_which_cluster_it_could_not_read_and_fails(world_probe, capsys, monkeypatch):
    """A cluster in ROTOR_CLUSTERS that does not exist: the others are listed, the missing one
    is named, and the run fails (exit 1), for the list may be incomplete."""
    monkeypatch.setenv("ROTOR_CLUSTERS", "prod,ghost")

    status = main(["discover", "prod/db", "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 1
    data = one_json_object(captured.out)
    assert {f"{r['cluster']}/{r['service']}" for r in data["consumers"]} == {
        "prod/api",
        "prod/worker",
        "prod/reporting",
        "prod/billing",
        "prod/search",
    }
    (problem,) = data["could_not_check"]
    assert problem.startswith("could not read cluster ghost")
    assert "ClusterNotFoundException" in problem
