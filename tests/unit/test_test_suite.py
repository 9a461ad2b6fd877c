"""The test suite's own promises: the README's command is CI's, the slow tests are left out of it
but never out of CI, and unit tests cannot open a socket (on every xdist worker too)."""

from __future__ import annotations

import shlex
import socket
import tomllib
import warnings

import pytest
from pytest_socket import SocketBlockedError

from tests.conftest import ROOT


def ci_commands() -> list[str]:
    return [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]


def test_the_readmes_test_command_is_cis() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "```sh\n.venv/bin/pytest\n```" in readme
    assert ".venv/bin/pytest" in ci_commands()


def test_slow_tests_are_left_out_by_default_and_run_by_ci() -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    addopts = shlex.split(options["ini_options"]["addopts"])
    assert addopts[addopts.index("-m") + 1] == "not slow"
    assert any(marker.startswith("slow:") for marker in options["ini_options"]["markers"])
    assert ".venv/bin/pytest -m slow" in ci_commands()


def test_the_slow_tests_are_marked() -> None:
    """The tests that take minutes carry the marker (else they would slow every run)."""
    for path, name in [
        ("tests/integration/test_cli_process.py", "test_the_demo_runs_from_an_installed_wheel"),
        ("tests/integration/test_clock.py", "test_a_pause_after_collection_breaks_no_test"),
    ]:
        text = (ROOT / path).read_text()
        before, _, _ = text.partition(f"def {name}")
        assert before.rstrip().splitlines()[-1].startswith("@pytest.mark.slow"), (path, name)


def test_a_unit_test_cannot_open_a_socket() -> None:
    # Newer pytest-socket also warns where it blocks; 0.7 (the lowest declared) does not.
    with warnings.catch_warnings(), pytest.raises(SocketBlockedError):
        warnings.simplefilter("ignore")
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
