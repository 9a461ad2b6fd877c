"""``rotor discover`` under ``ROTOR_OPT_IN``: it says what the stack would do with the setting,
on the embedded world with one service opted in (tag ``rotor:redeploy=true``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestration.cli.main import main
from tests.conftest import PROD_DB_READERS, ROOT

pytestmark = pytest.mark.integration

NOT_OPTED_IN = "not opted in (ROTOR_OPT_IN=true and no tag rotor:redeploy=true)"


def world_with_worker_opted_in(tmp_path: Path) -> Path:
    world: dict[str, Any] = json.loads((ROOT / "events" / "world.json").read_text())
    (worker,) = [
        service
        for cluster in world["clusters"]
        if cluster["name"] == "prod"
        for service in cluster["services"]
        if service["name"] == "worker"
    ]
    worker["tags"] = {"rotor:redeploy": "true"}
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world))
    return path


@pytest.mark.parametrize("opt_in", ["true", None], ids=["opt-in", "default"])
def test_discover_with_opt_in_redeploys_only_the_services_that_opted_in(
    monkeypatch, tmp_path, capsys, opt_in
):
    world = world_with_worker_opted_in(tmp_path)
    if opt_in is not None:
        monkeypatch.setenv("ROTOR_OPT_IN", opt_in)

    status = main(["discover", "prod/db", "--world-file", str(world), "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    rows = {f"{r['cluster']}/{r['service']}": r for r in json.loads(captured.out)["consumers"]}
    assert set(rows) == PROD_DB_READERS
    actions = {name: row["action"] for name, row in rows.items()}
    # Whatever the setting: pinned, opted out and scaled to zero are skipped for those reasons.
    assert rows["prod/reporting"]["reason"].startswith("pinned (stage AWSPREVIOUS)")
    assert rows["prod/billing"]["reason"] == "opted out (tag rotor:redeploy=false)"
    assert rows["batch/nightly-export"]["reason"].startswith("desired count is 0")
    if opt_in:
        assert actions == {
            "prod/worker": "redeploy",  # tagged rotor:redeploy=true
            "prod/api": "skip",
            "prod/search": "skip",
            "prod/reporting": "skip",
            "prod/billing": "skip",
            "batch/nightly-export": "skip",
        }
        assert rows["prod/api"]["reason"] == NOT_OPTED_IN
        assert rows["prod/search"]["reason"] == NOT_OPTED_IN
    else:
        assert actions == {
            "prod/worker": "redeploy",
            "prod/api": "redeploy",
            "prod/search": "redeploy",
            "prod/reporting": "skip",
            "prod/billing": "skip",
            "batch/nightly-export": "skip",
        }
        assert NOT_OPTED_IN not in captured.out
