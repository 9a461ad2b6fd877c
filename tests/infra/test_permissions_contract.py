"""The permissions contract: every AWS call a deployed function makes is one its role allows.

The handlers process what the template's rules route to them inside moto, with the state table
and restore-on-access on (so every kind of call happens), while a hook records each operation
per function. Each recorded call must be among the actions the template grants that function
(restore granted as with RestoreOnAccess=true). Least privilege must still be enough.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients
from orchestration.events.routing import route
from tests.conftest import SAMPLE_EVENTS
from tests.infra.test_metrics_contract import Containers
from tests.integration.conftest import inbox, state_table  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def _granted(stack: dict[str, Any], function: str) -> set[str]:
    """Actions of the function's ``Policies`` statements (both sides of every Fn::If)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Effect" in node and "Action" in node:
                actions = node["Action"]
                found.update([actions] if isinstance(actions, str) else actions)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(stack["Resources"][function]["Properties"]["Policies"])
    return found


def test_every_call_the_functions_make_is_granted_to_them(
    stack: dict[str, Any],
    world: Any,
    clients: AwsClients,
    inbox: Any,  # noqa: F811
    state_table: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)
    monkeypatch.setenv("ROTOR_RESTORE_ON_ACCESS", "true")
    calls: dict[str, set[str]] = defaultdict(set)
    current = {"function": ""}

    def record(model: Any, **_: Any) -> None:
        prefix = model.service_model.endpoint_prefix
        calls[current["function"]].add(f"{prefix}:{model.name}")

    for client in (clients.ecs, clients.secretsmanager, clients.sns, clients.dynamodb):
        client.meta.events.register("before-call", record)
    containers = Containers(monkeypatch, clients)
    for path in SAMPLE_EVENTS:
        event = json.loads(path.read_text())
        for r in route(event):
            current["function"] = r.function
            containers.invoke(r.handler, copy.deepcopy(event))

    assert set(calls) == {"RotationFunction", "AlarmsFunction"}
    assert "secretsmanager:RestoreSecret" in calls["AlarmsFunction"]  # the path was taken
    assert "ecs:UpdateService" in calls["RotationFunction"]
    assert {c for c in calls["RotationFunction"] if c.startswith("dynamodb:")}
    for function, made in calls.items():
        assert made - _granted(stack, function) == set(), function
    # No function may call what it does not need: the alarms function never redeploys.
    assert "ecs:UpdateService" not in _granted(stack, "AlarmsFunction")
