"""A pytest plugin (``-p tests.pause_after_collection``): the clock jumps 75 s once collection
is done, as if the machine had paused there. Tests must pass all the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

PAUSE = timedelta(seconds=75)


def pytest_collection_finish(session: pytest.Session) -> None:
    time_machine.travel(datetime.now(UTC) + PAUSE, tick=True).start()
