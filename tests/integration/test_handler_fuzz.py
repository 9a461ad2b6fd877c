"""Mutated sample events through the real Lambda handlers, inside the embedded world.

classify() is fuzzed on its own in tests/unit/test_fuzz.py; here what classify accepts goes on
through discovery, redeploys, the ledger, the window and SNS. A handler may return, drop the
event, or raise rotor's own retryable errors (Lambda then retries a bounded number of times
and hands the event to the on-failure destination); any other exception is a bug.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.entry import make_handler
from orchestration import ALARM_KINDS, REDEPLOY_KINDS, AwsCallError, RetryableFailure
from orchestration.settings import Settings
from tests.conftest import make_runtime
from tests.unit.test_fuzz import SAMPLES, _parent, _paths, mutation_values

pytestmark = pytest.mark.integration

HANDLER_FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


class Context:
    function_name = "rotor"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:rotor"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def live_handlers(world, clients, retry, inbox, monkeypatch):
    runtime = make_runtime(clients, retry, Settings(topic_arn=inbox.topic_arn))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    return (
        make_handler(REDEPLOY_KINDS, lambda: runtime),
        make_handler(ALARM_KINDS, lambda: runtime),
    )


def _survives(handler: Any, event: Any) -> None:
    try:
        result = handler(event, Context())
    except (RetryableFailure, AwsCallError):
        return
    # "rejected": the mutation changed the event's account to one that is not trusted
    assert result["status"] in {"processed", "ignored", "dropped", "rejected"}, result


@HANDLER_FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(SAMPLES)), value=mutation_values)
def test_handlers_survive_a_sample_with_a_value_replaced(
    live_handlers, data: st.DataObject, name: str, value: Any
) -> None:
    event = copy.deepcopy(SAMPLES[name])
    path = data.draw(st.sampled_from(_paths(event)), label="path")
    _parent(event, path)[path[-1]] = value
    for handler in live_handlers:
        _survives(handler, copy.deepcopy(event))


@HANDLER_FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(SAMPLES)))
def test_handlers_survive_a_sample_with_a_key_deleted(
    live_handlers, data: st.DataObject, name: str
) -> None:
    event = copy.deepcopy(SAMPLES[name])
    path = data.draw(st.sampled_from(_paths(event)), label="path")
    del _parent(event, path)[path[-1]]
    for handler in live_handlers:
        _survives(handler, copy.deepcopy(event))
