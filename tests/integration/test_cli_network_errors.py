"""An unreachable endpoint is a failed run (exit 1), said in one line."""

from __future__ import annotations

import io
import sys

import pytest

from orchestration.cli.main import main

pytestmark = pytest.mark.integration


def test_unreachable_endpoint_is_a_failed_run_not_bad_input(capsys, monkeypatch):
    # Nothing listens on the discard port of loopback: the connection is refused at once.
    from orchestration.cli import main as cli

    monkeypatch.setattr(cli, "CLI_DEADLINE_SECONDS", 0.0)  # no retries after the first attempt

    status = main(
        ["discover", "prod/db", "--region", "us-east-1", "--endpoint-url", "http://127.0.0.1:9"]
    )

    captured = capsys.readouterr()
    assert status == 1
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("rotor: error: DescribeSecret failed: ConnectionError")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_rotor_says_what_it_is_trying(capsys, monkeypatch):
    from orchestration.cli import main as cli

    monkeypatch.setattr(cli, "CLI_DEADLINE_SECONDS", 0.0)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    status = main(
        ["discover", "prod/db", "--region", "us-east-1", "--endpoint-url", "http://127.0.0.1:9"]
    )

    shown = terminal.getvalue()
    assert status == 1
    assert "rotor: connecting to AWS in us-east-1 at http://127.0.0.1:9" in shown
    assert "DescribeSecret to AWS in us-east-1 at http://127.0.0.1:9 failed (" in shown
    # The status line is erased; the error is the last line, alone.
    assert shown.endswith("\r\x1b[K" + shown.rsplit("\r\x1b[K", 1)[-1])
    assert shown.rsplit("\r\x1b[K", 1)[-1].startswith("rotor: error: DescribeSecret failed")
