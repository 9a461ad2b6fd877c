"""ECS's limits are per account: rotor's functions together stay under them.

rotor meters ECS calls per container (one set of token buckets per process), and
``ROTOR_ECS_CONTAINERS=N`` makes a container meter 1/N of every rate and burst. The template
sets N per function from its reserved concurrency (Mappings: EcsContainers). Here, for every
allowed concurrency of every function that may call ECS, a real limiter is built the way the
runtime builds it, its buckets are measured (tokens taken before it refuses, tokens refilled
per second), and the containers of all functions together must not exceed ECS's published
limits.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestration.aws.ratelimit import ECS_LIMITS, ApiRateLimiter, BucketLimit
from orchestration.errors import RateLimited

# Published ECS limits per account and region (burst = bucket size, sustained = refill per
# second), from "Request throttling for the Amazon ECS API" (Amazon ECS developer guide).
PUBLISHED = {
    "service-reads": BucketLimit(per_second=20, burst=100),
    "service-writes": BucketLimit(per_second=5, burst=50),
    "task-definition-reads": BucketLimit(per_second=20, burst=50),
    "cluster-reads": BucketLimit(per_second=20, burst=50),
}
SECONDS = 1000  # whole tokens: the count overshoots the rate by at most 1/SECONDS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def measured(
    containers: int, read_share: float = 1.0, *, paced: bool = False
) -> dict[str, tuple[float, float]]:
    """(burst, per second) that one container with ROTOR_ECS_CONTAINERS=containers takes
    (and ROTOR_ECS_READ_SHARE=read_share; ``paced``: the reconciler, holding
    ROTOR_RECONCILE_READ_SHARE=read_share without a burst, as its pass does)."""
    clock = Clock()
    limiter = ApiRateLimiter(clock=clock, sleep=lambda _: None)
    limiter.share_among(containers)
    if read_share != 1.0 or paced:
        limiter.hold_read_share(read_share, burst=not paced)
    found = {}
    for name, bucket in limiter.buckets.items():
        burst = _drain(bucket)
        refilled = 0
        for _ in range(SECONDS):
            clock.now += 1
            refilled += _drain(bucket)
        found[name] = (float(burst), refilled / SECONDS)
    return found


def _drain(bucket: Any) -> int:
    taken = 0
    while True:
        try:
            bucket.acquire(max_wait=0)
        except RateLimited:
            return taken
        taken += 1


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in resource["Properties"].get("Policies", []):
        for statement in policy["Statement"]:
            if "Fn::If" in statement:  # a conditional statement: both branches may apply
                found += [s for s in statement["Fn::If"][1:] if isinstance(s, dict) and s]
            else:
                found.append(statement)
    return found


def calls_ecs(resource: dict[str, Any]) -> bool:
    for statement in _statements(resource):
        actions = statement.get("Action", [])
        if any(a.startswith("ecs:") for a in ([actions] if isinstance(actions, str) else actions)):
            return True
    return False


def allowed_values(stack: dict[str, Any], parameter: str) -> list[int]:
    spec = stack["Parameters"][parameter]
    return list(range(int(spec["MinValue"]), int(spec["MaxValue"]) + 1))


def containers_for(stack: dict[str, Any], expression: Any, concurrency: int) -> int:
    """ROTOR_ECS_CONTAINERS as CloudFormation resolves it (Ref gives a Number as a string)."""
    if isinstance(expression, dict) and "Ref" in expression:
        return concurrency
    map_name, _, key = expression["Fn::FindInMap"]
    return int(stack["Mappings"][map_name][str(concurrency)][key])


#: The scheduled reconciler: one container (reserved concurrency 1), paced to a share of the
#: read limits (ROTOR_RECONCILE_READ_SHARE); the event-driven functions read at the rest
#: (ROTOR_ECS_READ_SHARE).
RECONCILER = "ReconcileFunction"


def read_share(resource: dict[str, Any]) -> float:
    """ROTOR_ECS_READ_SHARE of an event-driven function (the setting's default: 1)."""
    env = resource["Properties"].get("Environment", {}).get("Variables", {})
    return float(env.get("ROTOR_ECS_READ_SHARE", 1.0))


def ecs_callers(stack: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each event-driven function that may call ECS: (its concurrency parameter, its
    ROTOR_ECS_CONTAINERS)."""
    callers = {}
    for name, resource in stack["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function" or not calls_ecs(resource):
            continue
        if name == RECONCILER:
            continue
        props = resource["Properties"]
        env = props.get("Environment", {}).get("Variables", {})
        assert "ROTOR_ECS_CONTAINERS" in env, f"{name} calls ECS but meters the whole limit"
        parameter = props["ReservedConcurrentExecutions"]["Ref"]
        containers = env["ROTOR_ECS_CONTAINERS"]
        assert {"Ref": parameter} in containers.get("Fn::FindInMap", [containers]), name
        callers[name] = (parameter, containers)
    return callers


def test_the_limiter_knows_the_published_limits() -> None:
    assert dict(ECS_LIMITS) == PUBLISHED


def test_the_rotation_alarms_and_worker_functions_call_ecs(stack: dict[str, Any]) -> None:
    assert set(ecs_callers(stack)) == {"RotationFunction", "AlarmsFunction", "WorkerFunction"}
    assert calls_ecs(stack["Resources"][RECONCILER])
    assert not calls_ecs(stack["Resources"]["TrackerFunction"])


def test_the_reconciler_reads_at_its_share_and_never_writes(stack: dict[str, Any]) -> None:
    """One container (reserved concurrency 1) metering ROTOR_RECONCILE_READ_SHARE of each read
    limit: the account's other deployers keep the rest. It has no ecs:UpdateService (its jobs
    go to the worker), so its write bucket is never drawn on."""
    from orchestration.aws.ratelimit import ECS_READ_BUCKETS

    props = stack["Resources"][RECONCILER]["Properties"]
    assert props["ReservedConcurrentExecutions"] == 1
    env = props["Environment"]["Variables"]
    assert env["ROTOR_ECS_CONTAINERS"] == "1"
    share = float(env["ROTOR_RECONCILE_READ_SHARE"])
    assert share == 0.25  # the default of the setting
    found = measured(1, share, paced=True)
    for bucket in ECS_READ_BUCKETS:
        burst, rate = found[bucket]
        assert burst <= PUBLISHED[bucket].burst * share, bucket
        assert rate <= PUBLISHED[bucket].per_second * share * 1.01, bucket
    assert "ecs:UpdateService" not in json.dumps(props["Policies"])


def test_all_containers_of_all_functions_stay_under_ecs_limits(stack: dict[str, Any]) -> None:
    """Every event-driven function at every allowed concurrency, and the reconciler's pass
    beside them: together under ECS's limits (writes: the event-driven functions alone; the
    reconciler has none)."""
    cache: dict[tuple[int, float], dict[str, tuple[float, float]]] = {}
    worst: dict[str, dict[str, tuple[float, float]]] = {}  # function -> bucket -> worst use
    reconciler = stack["Resources"][RECONCILER]["Properties"]["Environment"]["Variables"]
    worst[RECONCILER] = measured(1, float(reconciler["ROTOR_RECONCILE_READ_SHARE"]), paced=True)
    for function, (parameter, expression) in ecs_callers(stack).items():
        share = read_share(stack["Resources"][function])
        for concurrency in allowed_values(stack, parameter):
            n = containers_for(stack, expression, concurrency)
            per_container = cache.setdefault((n, share), measured(n, share))
            for bucket, (burst, rate) in per_container.items():
                used = (concurrency * burst, concurrency * rate)
                old = worst.setdefault(function, {}).get(bucket, (0.0, 0.0))
                worst[function][bucket] = (max(old[0], used[0]), max(old[1], used[1]))
    from orchestration.aws.ratelimit import ECS_READ_BUCKETS

    for bucket, limit in PUBLISHED.items():
        if bucket not in ECS_READ_BUCKETS:
            worst[RECONCILER].pop(bucket, None)  # no ecs:UpdateService (checked above)
        burst = sum(w[bucket][0] for w in worst.values() if bucket in w)
        rate = sum(w[bucket][1] for w in worst.values() if bucket in w)
        assert burst <= limit.burst, (bucket, worst)
        assert rate <= limit.per_second * 1.01, (bucket, worst)  # see SECONDS


def test_the_event_driven_functions_leave_the_reconciler_its_read_share(
    stack: dict[str, Any],
) -> None:
    reconciler = stack["Resources"][RECONCILER]["Properties"]["Environment"]["Variables"]
    share = float(reconciler["ROTOR_RECONCILE_READ_SHARE"])
    for function in ecs_callers(stack):
        assert read_share(stack["Resources"][function]) + share <= 1, function


def test_the_check_catches_a_function_that_meters_only_its_own_containers(
    stack: dict[str, Any],
) -> None:
    """The template before the fix: ROTOR_ECS_CONTAINERS was each function's concurrency."""
    per_function = {"Ref": "WorkerConcurrency"}
    n = containers_for(stack, per_function, 2)
    three_functions = 3 * 2 * measured(n)["service-reads"][1]
    assert three_functions > PUBLISHED["service-reads"].per_second


@pytest.mark.parametrize("function", ["RotationFunction", "AlarmsFunction", "WorkerFunction"])
def test_the_concurrency_parameter_bounds_the_table(stack: dict[str, Any], function: str) -> None:
    parameter, expression = ecs_callers(stack)[function]
    table = stack["Mappings"][expression["Fn::FindInMap"][0]]
    for concurrency in allowed_values(stack, parameter):
        assert str(concurrency) in table, (function, concurrency)
