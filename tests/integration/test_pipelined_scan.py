"""The scan is pipelined: a task definition is read as soon as the describe batch naming it
returns, not after every cluster is listed and described."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from orchestration.secrets.references import SecretIdentity
from tests.conftest import make_runtime

pytestmark = pytest.mark.integration


def test_task_definitions_are_read_while_other_clusters_are_still_being_listed(
    clients, retry, ecs_world, ecs_calls
):
    db = ecs_world.secret("prod/db")
    for cluster in ("fast", "slow"):
        ecs_world.cluster(cluster)
        ecs_world.service(cluster, f"{cluster}-api", ecs_world.task_definition(secrets=[db]))
    first_read = threading.Event()

    def on_read(**_: Any) -> None:
        first_read.set()

    def slow_list(params: dict[str, Any], **_: Any) -> None:
        # The slow cluster's list answers only once a task definition has been read (or after
        # 10 s, when a scan with a barrier would still be waiting for this list).
        if str(params.get("cluster", "")).endswith("/slow"):
            params["_waited"] = first_read.wait(timeout=10)

    waited: list[bool] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if "_waited" in params:
            waited.append(params.pop("_waited"))

    events = clients.ecs.meta.events
    events.register("before-parameter-build.ecs.DescribeTaskDefinition", on_read)
    events.register("before-parameter-build.ecs.ListServices", slow_list)
    events.register("before-parameter-build.ecs.ListServices", record)

    found = make_runtime(clients, retry).discovery().consumers(SecretIdentity.from_full_arn(db))

    assert sorted(c.service.name for c in found) == ["fast-api", "slow-api"]
    assert waited == [True]  # the fast cluster's task definition was read first
    order = [name for name, _ in ecs_calls.calls]
    assert order.index("DescribeTaskDefinition") < len(order) - 1 - order[::-1].index(
        "ListServices"
    )
