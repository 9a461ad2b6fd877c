"""An unreachable endpoint is a failed run (exit 1), said in one line."""

from __future__ import annotations

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
