"""Tests do not depend on when they run: not on a pause after collection, nor on the machine's
clock against the sample events' dates."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import NOW

pytestmark = pytest.mark.integration

#: Tests that build events around NOW and compare them with deployments moto stamps (the
#: rollback test is the one that failed when started over a minute after collection).
CLOCK_SENSITIVE = [
    "tests/integration/test_redeploy_once.py::test_a_rollback_to_an_earlier_value_redeploys_again",
    "tests/integration/test_rotation.py",
]


def test_each_test_starts_at_the_fixed_now():
    assert NOW <= datetime.now(UTC) < NOW + timedelta(seconds=30)


@pytest.mark.slow  # pytest again, in a subprocess: CI runs it (`pytest -m slow`)
def test_a_pause_after_collection_breaks_no_test():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",  # one process: the clock jumps once, in the process that runs the tests
            "0",
            "-p",
            "tests.pause_after_collection",
            "-x",
            *CLOCK_SENSITIVE,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
