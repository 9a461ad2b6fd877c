"""``rotor demo`` in-process: what it prints is consistent and does not depend on the machine's
clock (the world keeps the samples' time). Runs in the embedded world: no sockets."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import time_machine

from orchestration.cli.main import main


@pytest.mark.parametrize(
    "machine_clock",
    [datetime(2020, 1, 1, tzinfo=UTC), datetime(2031, 6, 1, tzinfo=UTC)],
    ids=["before-the-samples", "years-after-the-samples"],
)
def test_the_demo_tells_one_story_on_the_samples_clock(capsys, monkeypatch, machine_clock):
    # The world's clock does not tick here: the stamps below are the events' own times to the
    # second, which a clock that ran on while the demo worked overshot on a busy machine
    # (10:20:16 for 10:20:14). The demo's own clock (cli.world) still ticks for users.
    travel = time_machine.travel

    def frozen(destination: object, tick: bool = True) -> time_machine.travel:
        return travel(destination, tick=False)

    monkeypatch.setattr(time_machine, "travel", frozen)
    with travel(machine_clock, tick=True):
        status = main(["demo"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    out = captured.out
    # Each step's heading carries its event's time, in order.
    headings = re.findall(r"^\[(\d+)\] (\S+)  ", out, flags=re.MULTILINE)
    assert [int(n) for n, _ in headings] == list(range(1, len(headings) + 1))
    times = [t for _, t in headings]
    assert times == sorted(times) and all(t.startswith("2026-11-20T") for t in times)
    # One deletion date for prod/legacy-token, wherever it is printed.
    deletion_dates = set(re.findall(r"(\d{4}-\d\d-\d\dT[\d:]+Z) \(\d+-day recovery", out))
    deletion_dates |= set(re.findall(r"Deletion date: +(\S+)", out))
    assert deletion_dates == {"2026-11-27T11:00:00Z"}
    assert "(in 7 days)" in out
    # Deployments rotor made are stamped at the time of the event that made them.
    redeployed = re.findall(r"^  (\S+) +\S+ -> (\S+)  <- redeployed$", out, flags=re.MULTILINE)
    assert dict(redeployed) == {
        "prod/admin-console": "2026-11-20T10:20:14Z",
        "prod/api": "2026-11-20T10:00:05Z",
        "prod/gateway": "2026-11-20T10:30:00Z",
        "prod/worker": "2026-11-20T10:00:05Z",
    }
    assert str(machine_clock.year) not in out
    assert "4 redeploys (4 services, each once)" in out
