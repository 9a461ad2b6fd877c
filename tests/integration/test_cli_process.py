"""The ``rotor`` process as a user runs it: --version, stdin, a closed pipe, a terminal, and
an installed wheel outside the checkout."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

ROTOR = [sys.executable, "-m", "orchestration.cli"]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("cwd", ROOT)
    return subprocess.run(
        [*ROTOR, *args], capture_output=True, text=True, check=False, timeout=300, **kwargs
    )


def test_version():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

    done = run(["--version"])

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rotor {declared}\n"


def test_explain_dash_reads_the_event_from_stdin():
    event = (ROOT / "events" / "rotation-succeeded.json").read_text()

    done = run(["explain", "-", "--json"], input=event)

    assert done.returncode == 0, done.stderr
    assert '"kind": "rotation"' in done.stdout


def test_a_closed_pipe_ends_the_demo_quietly():
    """``rotor demo | head``: the reader goes away; no traceback, the shell's 141."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [*ROTOR, "demo"], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True
    )
    os.close(write_end)
    os.close(read_end)  # before the demo prints its first line

    _, err = process.communicate(timeout=300)

    assert "Traceback" not in err
    assert err == ""
    assert process.returncode == 141


def test_a_terminal_sees_progress_on_stderr_and_a_file_does_not(tmp_path):
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*ROTOR, "discover", "prod/db", "--world"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = process.communicate(timeout=300)
    os.close(leader)

    assert process.returncode == 0
    assert b"connecting to the embedded world" in seen
    assert b"scanning ECS: " in seen and b"task definitions" in seen
    assert "consumer(s)" in out
    # Without a terminal: nothing but errors on stderr.
    done = run(["discover", "prod/db", "--world"])
    assert done.returncode == 0 and done.stderr == ""


def test_the_demo_needs_its_extra_and_says_so():
    """`pip install .` without the demo extra: the embedded world says what to install."""
    code = "import sys; sys.modules['moto'] = None; import rotor; sys.exit(rotor.main())"

    done = subprocess.run(
        [sys.executable, "-c", code, "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert done.returncode == 1
    assert done.stderr == "rotor: error: the embedded world needs moto: pip install 'rotor[demo]'\n"


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow  # builds and installs a wheel: CI runs it (`pytest -m slow`)
def test_the_demo_runs_from_an_installed_wheel_outside_the_checkout(tmp_path: Path):
    wheels = tmp_path / "wheels"
    pip("wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT))
    (wheel,) = wheels.glob("rotor-*.whl")
    target = tmp_path / "site"
    pip("install", "-q", "--no-deps", "-t", str(target), str(wheel))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}

    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import orchestration.cli.world as w; print(w.events_dir() / 'world.json')",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    demo = run(["demo"], cwd=elsewhere, env=env)
    # The `rotor` command's light entry point is in the wheel too.
    command = subprocess.run(
        [sys.executable, "-m", "rotor", "--version"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert where.stdout.strip() == str(target / "orchestration" / "cli" / "samples" / "world.json")
    assert (target / "rotor.py").is_file()
    assert command.returncode == 0 and command.stdout.startswith("rotor "), command.stderr
    assert demo.returncode == 0, demo.stderr
    assert "Summary: 209 events replayed, 4 redeploys (4 services, each once)" in demo.stdout
