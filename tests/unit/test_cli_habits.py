"""The command line keeps the habits of the AWS CLI: bad settings and out-of-range input are
bad input (exit 2, one line naming what is wrong), Ctrl-C is quiet (exit 130), and what
``--help`` offers works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from orchestration.cli.main import main
from tests.conftest import EVENTS, ROOT
from tests.unit.test_cli_errors import _one_line_error


def _status(argv: list[str]) -> int | str | None:
    try:
        return main(argv)
    except SystemExit as exited:  # argparse's own errors
        return exited.code


# --- bad settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROTOR_TOPIC_ARN", "notanarn"),
        ("ROTOR_TOPIC_ARN", "arn:aws:sqs:us-east-1:123456789012:rotor"),
        ("ROTOR_REDEPLOY_QUEUE_URL", "notaurl"),
        ("ROTOR_REDEPLOY_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/rotor-jobs"),
    ],
)
def test_a_malformed_setting_is_bad_input_naming_it(capsys, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)

    status = main(["replay", str(EVENTS / "rotation-succeeded.json"), "--world"])

    assert status == 2
    line = _one_line_error(capsys)
    assert variable in line and repr(value) in line


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("ROTOR_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:no-such-topic", "no SNS topic"),
        (
            "ROTOR_REDEPLOY_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue",
            "no SQS queue",
        ),
    ],
)
def test_a_topic_or_queue_that_does_not_exist_is_bad_input_naming_it(
    capsys, monkeypatch, variable, value, words
):
    monkeypatch.setenv(variable, value)

    status = main(["replay", str(EVENTS / "rotation-succeeded.json"), "--world"])

    assert status == 2
    line = _one_line_error(capsys)
    assert variable in line and words in line and value in line


@pytest.mark.parametrize("command", ["discover", "replay"])
def test_a_cluster_that_does_not_exist_is_warned_about_once_and_the_run_fails(
    capsys, monkeypatch, command
):
    """The README's choice: the scan names it and goes on with the others (as in Lambda);
    the list may be incomplete, so the run fails (1), not bad input (2)."""
    monkeypatch.setenv("ROTOR_CLUSTERS", "prod,gone")
    target = "prod/db" if command == "discover" else str(EVENTS / "rotation-succeeded.json")

    status = main([command, target, "--world"])

    captured = capsys.readouterr()
    assert status == 1
    warnings = [line for line in captured.err.splitlines() if "cluster gone" in line]
    assert len(warnings) == 1, captured.err
    assert warnings[0].startswith("rotor: warning: could not read cluster gone")
    assert "prod/api" in captured.out or "api:1" in captured.out  # prod was scanned


# --- out-of-range input ---------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_rotated_at_out_of_range_is_bad_input(capsys, moment):
    status = _status(["discover", "prod/db", "--world", "--rotated-at", moment])

    assert status == 2
    line = _one_line_error(capsys)
    assert "--rotated-at" in line and "out of range" in line


@pytest.mark.parametrize("since", ["99999999999999d", "1000000d"])
def test_a_since_too_long_ago_is_bad_input(capsys, since):
    status = _status(["status", "--since", since, "--region", "us-east-1"])

    assert status == 2
    line = _one_line_error(capsys)
    assert "--since" in line and "OverflowError" not in line


WORLD = json.loads((EVENTS / "world.json").read_text())


def _world_with(**changes: object) -> dict:
    world = json.loads(json.dumps(WORLD))
    for path, value in changes.items():
        target = world
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return world


@pytest.mark.parametrize(
    ("world", "words"),
    [
        (_world_with(account="abc"), "account must be a 12-digit AWS account id"),
        (_world_with(region="mars-north-9"), "region 'mars-north-9' is not an AWS region"),
        (_world_with(clusters__0__services__0__tags="oops"), "tags of service prod/api"),
        (_world_with(secrets__0__tags="oops"), "tags of secret arn:aws:secretsmanager:"),
        (_world_with(secrets__0__tags={"k": 1}), "must be an object of strings"),
    ],
    ids=["account", "region", "service-tags", "secret-tags", "tag-value"],
)
def test_a_world_file_with_a_wrong_field_names_the_field(tmp_path, capsys, world, words):
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world))

    status = main(["discover", "prod/db", "--world-file", str(path)])

    assert status == 2
    line = _one_line_error(capsys)
    assert "world file" in line and words in line
    assert "object has no attribute" not in line


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_while_the_world_starts_is_quiet(capsys, monkeypatch):
    from orchestration.cli.world import EmbeddedWorld

    def interrupted(self: EmbeddedWorld) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(EmbeddedWorld, "__enter__", interrupted)

    status = main(["replay", str(EVENTS / "rotation-succeeded.json"), "--world"])

    assert status == 130
    assert capsys.readouterr() == ("", "")


def test_ctrl_c_while_parsing_is_quiet(capsys, monkeypatch):
    from orchestration.cli import main as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)

    try:
        status = main(["demo"])
    except KeyboardInterrupt:  # (caught, or it would stop the test run)
        pytest.fail("Ctrl-C escaped main()")
    assert status == 130
    assert capsys.readouterr() == ("", "")


#: Sends the process SIGINT the moment it starts importing rotor proper: Ctrl-C at start-up.
_CTRL_C_AT_START_UP = """
import builtins, os, signal, sys
# As in a terminal: a shell starts background jobs with SIGINT ignored, which Python keeps.
signal.signal(signal.SIGINT, signal.default_int_handler)
real_import = builtins.__import__
def importing(name, *args, **kwargs):
    if name == "orchestration.cli.main":
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)
builtins.__import__ = importing
import rotor
sys.exit(rotor.main())
"""


def test_ctrl_c_during_start_up_is_quiet_and_exits_130():
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_AT_START_UP, "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert done.stderr == ""  # no traceback through the imports
    assert done.stdout == ""
    assert done.returncode == 130
    assert signal.SIGINT == 2  # the shell's 130 is 128 + SIGINT


def test_the_command_is_the_light_entry_point():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"rotor": "rotor:main"}


# --- what --help offers works ---------------------------------------------------------------


def test_status_offers_no_world(capsys):
    """Each run starts its embedded world afresh: it never has rotations to report."""
    assert _status(["status", "--help"]) == 0
    assert "--world" not in capsys.readouterr().out

    assert _status(["status", "--world"]) == 2
    assert "unrecognized arguments: --world" in _one_line_error(capsys)
