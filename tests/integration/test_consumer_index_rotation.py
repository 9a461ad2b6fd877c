"""The consumer index in use: kept by ECS CloudTrail events (the rotation function's handler
path, and ``rotor replay``), and read at rotation time instead of a scan.

ECS calls are counted exactly (a botocore hook on the client rotor uses; the world is built and
read back through another client). With an index, a rotation's ECS reads are the candidates'
``DescribeServices``, ten a call per cluster: no List* call, and no ``DescribeTaskDefinition``
of a revision rotor already knows.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from handlers.entry import make_handler
from orchestration import HANDLER_KINDS
from orchestration.aws.clients import AwsClients
from orchestration.ecs.indexed import index_records
from orchestration.secrets.references import SecretIdentity
from orchestration.settings import Settings
from orchestration.state.consumer_index import ConsumerIndex
from tests.aws_fakes import ApiCalls
from tests.conftest import ACCOUNT, REGION, load_event, make_runtime
from tests.integration.conftest import (
    STALE,
    STATE_TABLE,
    EcsWorld,
    RedeployQueue,
    backdate_deployment,
    iso,
    rotation_event,
)
from tests.integration.workers import FakeLambdaContext, drain

pytestmark = pytest.mark.integration

ROTATION_HANDLER = "handlers.rotation.lambda_handler"
LISTS = ("ListClusters", "ListServices")


def _cluster_arn(name: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{name}"


def ecs_event(sample: str, cluster: str, service: str, task_definition: str = "") -> dict:
    """A sample ECS CloudTrail event about ``cluster``/``service`` (as AWS writes it)."""
    event = load_event(sample)
    event["id"] = str(uuid.uuid4())
    now = iso(datetime.now(UTC))
    event["time"] = now
    detail = event["detail"]
    detail["eventTime"] = now
    request = detail["requestParameters"]
    request["cluster"] = cluster
    request["service" if "service" in request else "serviceName"] = service
    if task_definition:
        request["taskDefinition"] = task_definition
    written = detail["responseElements"].get("service") or detail["responseElements"]["taskSet"]
    written["serviceArn"] = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{service}"
    written["clusterArn"] = _cluster_arn(cluster)
    if task_definition:
        written["taskDefinition"] = task_definition
    return event


class Index:
    """The state table's index, as every container reads it."""

    def __init__(self, clients: AwsClients, table: str) -> None:
        self.index = ConsumerIndex.for_table(clients.dynamodb, table, _no_retry())

    def names(self, secret_arn: str) -> set[str]:
        candidates = self.index.candidates(SecretIdentity.from_full_arn(secret_arn))
        assert candidates is not None
        return {s.service_arn.rsplit("/", 1)[-1] for s in candidates.services}


def _no_retry() -> Any:
    from orchestration.aws.retry import RetryPolicy

    return RetryPolicy(max_attempts=1)


@pytest.fixture
def index(clients: AwsClients, state_table: str) -> Index:
    return Index(clients, state_table)


def rebuild(runtime: Any, at: datetime | None = None) -> None:
    """What the reconciler does: a full scan, then the region's index rebuilt from it."""
    inventory = runtime.discovery().scan()
    assert inventory.failures == []
    runtime.consumer_index.rebuild(
        REGION, index_records(inventory), at or datetime.now(UTC) - timedelta(seconds=1)
    )


def table_runtime(clients: AwsClients, retry: Any, **settings: Any) -> Any:
    return make_runtime(clients, retry, Settings(state_table=STATE_TABLE, **settings))


def rotation_handler(runtime: Any) -> Any:
    return make_handler(HANDLER_KINDS[ROTATION_HANDLER], lambda: runtime)


# --- the index kept by ECS events -------------------------------------------------------------


def test_a_created_service_is_indexed_by_its_event_with_one_describe(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    runtime = table_runtime(clients, retry)
    rebuild(runtime)  # an empty account: an index that holds nothing
    ecs_world.service("prod", "billing", td)
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(
        ecs_event("ecs-create-service.json", "prod", "billing", td), FakeLambdaContext()
    )

    assert answer["kind"] == "service_changed"
    assert index.names(db) == {"billing"}
    assert calls.counts == Counter({"DescribeServices": 1, "DescribeTaskDefinition": 1})


def test_an_update_to_a_task_definition_without_the_reference_moves_the_service_out(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    db = ecs_world.secret("prod/db")
    api_key = ecs_world.secret("prod/api-key")
    first = ecs_world.task_definition(secrets=[db], family="billing")
    second = ecs_world.task_definition(secrets=[api_key], family="billing")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "billing", first)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    assert index.names(db) == {"billing"}
    ecs_world.ecs.update_service(cluster="prod", service="billing", taskDefinition=second)

    rotation_handler(runtime)(
        ecs_event("ecs-update-service.json", "prod", "billing", second), FakeLambdaContext()
    )

    assert index.names(db) == set()
    assert index.names(api_key) == {"billing"}


def test_a_deleted_service_is_forgotten_after_one_describe(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "billing", td)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    ecs_world.ecs.delete_service(cluster="prod", service="billing", force=True)
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(
        ecs_event("ecs-delete-service.json", "prod", "billing"), FakeLambdaContext()
    )

    assert answer["kind"] == "service_deleted"
    assert index.names(db) == set()
    assert calls.counts == Counter({"DescribeServices": 1})  # ECS says it is gone


def test_a_service_ecs_shows_draining_is_forgotten(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """Right after DeleteService, AWS shows the service DRAINING (moto goes straight to
    INACTIVE): it never runs again, whichever event asked."""
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "billing", td)
    runtime = table_runtime(clients, retry)

    def draining(parsed: dict[str, Any], **_: Any) -> None:
        for described in parsed.get("services", []):
            described["status"] = "DRAINING"

    for sample in ("ecs-update-service.json", "ecs-delete-service.json"):
        rebuild(runtime, datetime.now(UTC))  # indexed again, ACTIVE to the scan
        assert index.names(db) == {"billing"}
        clients.ecs.meta.events.register("after-call.ecs.DescribeServices", draining)
        rotation_handler(runtime)(ecs_event(sample, "prod", "billing", td), FakeLambdaContext())
        clients.ecs.meta.events.unregister("after-call.ecs.DescribeServices", draining)
        assert index.names(db) == set(), sample


def test_a_late_delete_event_does_not_forget_the_service_recreated_under_its_arn(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """Deleted, then created again with the same name (so the same ARN): EventBridge neither
    orders events nor delivers them once, so the DeleteService event may be handled after the
    CreateService event of the new service. The index must still hold the live service."""
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "billing", td)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    ecs_world.ecs.delete_service(cluster="prod", service="billing", force=True)
    deleted = ecs_event("ecs-delete-service.json", "prod", "billing")
    ecs_world.service("prod", "billing", td)  # the same name: the same ARN
    handler = rotation_handler(runtime)
    handler(ecs_event("ecs-create-service.json", "prod", "billing", td), FakeLambdaContext())
    assert index.names(db) == {"billing"}

    handler(deleted, FakeLambdaContext())  # late, or delivered a second time

    assert index.names(db) == {"billing"}
    answer = handler(rotation_event(db), FakeLambdaContext())
    assert [a.rsplit("/", 1)[-1] for a in answer["redeployed"]] == ["billing"]


def test_an_older_look_at_a_service_does_not_overwrite_a_newer_one(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """Two UpdateService calls in a row, their events handled at once by two containers: the
    one that described the service first may write last. The index keeps what ECS said last."""
    db = ecs_world.secret("prod/db")
    api_key = ecs_world.secret("prod/api-key")
    first = ecs_world.task_definition(secrets=[api_key], family="billing")
    second = ecs_world.task_definition(secrets=[api_key], family="billing")
    third = ecs_world.task_definition(secrets=[db], family="billing")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "billing", first)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    ecs_world.ecs.update_service(cluster="prod", service="billing", taskDefinition=second)
    handler = rotation_handler(runtime)
    raced: list[str] = []

    def meanwhile(**_: Any) -> None:
        """After the first container's describe (it saw ``second``): the service moves on, and
        the second container handles that event to the end."""
        if raced:
            return
        raced.append("raced")
        ecs_world.ecs.update_service(cluster="prod", service="billing", taskDefinition=third)
        handler(ecs_event("ecs-update-service.json", "prod", "billing", third), FakeLambdaContext())
        assert index.names(db) == {"billing"}

    clients.ecs.meta.events.register("after-call.ecs.DescribeServices", meanwhile)
    handler(ecs_event("ecs-update-service.json", "prod", "billing", second), FakeLambdaContext())
    clients.ecs.meta.events.unregister("after-call.ecs.DescribeServices", meanwhile)

    assert raced
    assert index.names(db) == {"billing"}  # ECS's last word: it runs ``third``
    assert index.names(api_key) == set()


def rolling_out_from(previous: str) -> Any:
    """DescribeServices as AWS answers during a rolling deployment: the PRIMARY deployment on
    the new task definition, and the ACTIVE one it replaces (moto keeps only the new one)."""

    def answer(parsed: dict[str, Any], **_: Any) -> None:
        for described in parsed.get("services", []):
            primary = described["deployments"][0]
            described["deployments"] = [
                primary,
                {**primary, "id": "ecs-svc/1", "status": "ACTIVE", "taskDefinition": previous},
            ]

    return answer


def test_a_deployment_a_circuit_breaker_rolls_back_keeps_the_service_under_its_old_secrets(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """UpdateService moves billing from a task definition referencing prod/db to one
    referencing prod/db-v2; the deployment fails and ECS's circuit breaker rolls it back to the
    first, with no API call (so no event). A rotation of prod/db must still find billing."""
    db = ecs_world.secret("prod/db")
    db_v2 = ecs_world.secret("prod/db-v2")
    first = ecs_world.task_definition(secrets=[db], family="billing")
    second = ecs_world.task_definition(secrets=[db_v2], family="billing")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "billing", first)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    ecs_world.ecs.update_service(cluster="prod", service="billing", taskDefinition=second)
    rollout = rolling_out_from(first)
    clients.ecs.meta.events.register("after-call.ecs.DescribeServices", rollout)
    rotation_handler(runtime)(
        ecs_event("ecs-update-service.json", "prod", "billing", second), FakeLambdaContext()
    )
    clients.ecs.meta.events.unregister("after-call.ecs.DescribeServices", rollout)
    assert index.names(db_v2) == {"billing"}
    ecs_world.ecs.update_service(cluster="prod", service="billing", taskDefinition=first)
    backdate_deployment(ecs_world.backend, "prod", "billing", STALE)  # before the rotation

    answer = rotation_handler(runtime)(rotation_event(db), FakeLambdaContext())

    assert [a.rsplit("/", 1)[-1] for a in answer["redeployed"]] == ["billing"]


def test_a_task_set_of_an_external_service_indexes_its_task_definition(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "checkout", "", controller="EXTERNAL")
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    assert index.names(db) == set()
    ecs_world.task_set("prod", "checkout", td)

    rotation_handler(runtime)(
        ecs_event("ecs-create-task-set.json", "prod", "checkout", td), FakeLambdaContext()
    )

    assert index.names(db) == {"checkout"}


def test_a_service_outside_rotor_clusters_is_neither_described_nor_indexed(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """With ClusterNames (``ROTOR_CLUSTERS``) the function may describe only those clusters'
    services (its IAM policy's ``ecs:cluster`` condition): an event about another cluster's
    service is no error to retry and dead-letter, and that service is not rotor's to index."""
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.cluster("staging")
    runtime = table_runtime(clients, retry, clusters=("prod",))
    rebuild(runtime)
    ecs_world.service("staging", "billing", td)
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(
        ecs_event("ecs-create-service.json", "staging", "billing", td), FakeLambdaContext()
    )

    assert answer["status"] == "processed"
    assert calls.counts == Counter()
    assert index.names(db) == set()
    assert any("ROTOR_CLUSTERS" in n for n in answer["notes"])


def test_with_rotor_clusters_a_rotation_leaves_indexed_services_of_other_clusters_alone(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """Indexed before ClusterNames narrowed: the index path keeps to the clusters a scan
    would read, as the scan does."""
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    for cluster in ("prod", "staging"):
        ecs_world.cluster(cluster)
        ecs_world.service(cluster, f"{cluster}-api", td)
    rebuild(table_runtime(clients, retry))
    assert index.names(db) == {"prod-api", "staging-api"}
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(table_runtime(clients, retry, clusters=("prod",)))(
        rotation_event(db), FakeLambdaContext()
    )

    assert [a.rsplit("/", 1)[-1] for a in answer["redeployed"]] == ["prod-api"]
    assert ecs_world.updates_reached_moto == Counter({"prod-api": 1})
    assert all(p["cluster"].endswith("prod") for p in calls.of("DescribeServices"))


def test_rotors_own_forced_deployment_costs_no_read(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str
) -> None:
    runtime = table_runtime(clients, retry)
    calls = ApiCalls().attach(clients.ecs)
    event = load_event("ecs-update-service-force-new-deployment.json")

    answer = rotation_handler(runtime)(event, FakeLambdaContext())

    assert answer["status"] == "ignored"
    assert calls.counts == Counter()


def test_without_a_state_table_an_ecs_event_calls_nothing(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any
) -> None:
    runtime = make_runtime(clients, retry)
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(
        ecs_event("ecs-create-service.json", "prod", "billing"), FakeLambdaContext()
    )

    assert answer["status"] == "processed"
    assert calls.counts == Counter()


def test_rotor_replay_of_a_create_service_event_updates_the_index(
    ecs_world: EcsWorld,
    clients: AwsClients,
    retry: Any,
    state_table: str,
    index: Index,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from orchestration.cli.main import main

    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    rebuild(table_runtime(clients, retry))
    ecs_world.service("prod", "billing", td)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(ecs_event("ecs-create-service.json", "prod", "billing", td)))
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)

    status = main(["replay", str(path), "--region", REGION, "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert json.loads(captured.out)["status"] == "processed"
    assert index.names(db) == {"billing"}


# --- the index at rotation time ---------------------------------------------------------------

CLUSTERS = {"alpha": 6, "bravo": 5, "charlie": 5, "delta": 5}  # 21 consumers
OTHERS = 300 - sum(CLUSTERS.values())


def busy_account(ecs_world: EcsWorld) -> tuple[str, str]:
    """300 services in 4 clusters; 21 of them reference prod/db, stale since ten days."""
    db = ecs_world.secret("prod/db")
    other = ecs_world.secret("prod/other")
    consumer = ecs_world.task_definition(secrets=[db], family="consumer")
    bystander = ecs_world.task_definition(secrets=[other], family="bystander")
    names = list(CLUSTERS)
    for name in names:
        ecs_world.cluster(name)
    for cluster, count in CLUSTERS.items():
        for i in range(count):
            ecs_world.service(cluster, f"{cluster}-consumer-{i}", consumer)
    for i in range(OTHERS):
        ecs_world.service(names[i % len(names)], f"bystander-{i}", bystander)
    return db, consumer


def bound(per_cluster: dict[str, int]) -> int:
    return sum(math.ceil(n / 10) for n in per_cluster.values())


def test_with_an_index_a_rotation_reads_only_its_candidates_and_redeploys_each_once(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    db, consumer = busy_account(ecs_world)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    # Created after the rebuild: the index knows it only from its CreateService event.
    ecs_world.service("alpha", "late-consumer", consumer)
    rotation_handler(runtime)(
        ecs_event("ecs-create-service.json", "alpha", "late-consumer", consumer),
        FakeLambdaContext(),
    )
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(rotation_event(db), FakeLambdaContext())

    consumers = {**CLUSTERS, "alpha": CLUSTERS["alpha"] + 1}
    reads = {op: n for op, n in calls.counts.items() if op != "UpdateService"}
    assert reads == {"DescribeServices": bound(consumers)}  # 4, against ~40 for a scan
    assert not set(LISTS) & set(calls.counts)
    assert "DescribeTaskDefinition" not in calls.counts
    assert len(answer["redeployed"]) == 22
    assert ecs_world.updates_reached_moto == Counter(
        {f"{c}-consumer-{i}": 1 for c, n in CLUSTERS.items() for i in range(n)}
        | {"late-consumer": 1}
    )
    assert any("consumer index: 22 candidate(s)" in n for n in answer["notes"])


@pytest.mark.parametrize(
    ("snapshot_max_age", "worker_reads"),
    [
        ("60s", 0),  # the default: each job decides on the planner's look at its service
        (0, 22),  # always describe: one more read per consumer, as before jobs carried it
    ],
)
def test_with_an_index_the_queue_path_plans_from_the_candidates(
    ecs_world: EcsWorld,
    clients: AwsClients,
    retry: Any,
    state_table: str,
    redeploy_queue: RedeployQueue,
    queued_runtime: Any,
    snapshot_max_age: Any,
    worker_reads: int,
) -> None:
    db, consumer = busy_account(ecs_world)
    stack = queued_runtime(state_table=STATE_TABLE, snapshot_max_age=snapshot_max_age)
    rebuild(stack.runtime)
    ecs_world.service("delta", "late-consumer", consumer)
    rotation_handler(stack.runtime)(
        ecs_event("ecs-create-service.json", "delta", "late-consumer", consumer),
        FakeLambdaContext(),
    )
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(stack.runtime)(rotation_event(db), FakeLambdaContext())

    consumers = {**CLUSTERS, "delta": CLUSTERS["delta"] + 1}
    assert dict(calls.counts) == {"DescribeServices": bound(consumers)}
    assert len(answer["queued"]) == 22
    drain(redeploy_queue, stack.worker)
    # Each job carries the planner's look at its service and runs promptly: the worker decides
    # on it, so the rotation as a whole, its jobs included, reads only what the planning read.
    assert dict(calls.counts) == {
        "DescribeServices": bound(consumers) + worker_reads,
        "UpdateService": 22,
    }
    assert ecs_world.updates_reached_moto == Counter(
        {f"{c}-consumer-{i}": 1 for c, n in CLUSTERS.items() for i in range(n)}
        | {"late-consumer": 1}
    )


def test_a_consumer_moved_to_a_task_definition_without_the_reference_is_re_indexed(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """Moved without an event reaching rotor: the candidate is described, no longer
    references the secret, is not redeployed, and is indexed on what it runs now."""
    db = ecs_world.secret("prod/db")
    other = ecs_world.secret("prod/other")
    td = ecs_world.task_definition(secrets=[db], family="api")
    moved_to = ecs_world.task_definition(secrets=[other], family="api")
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", td)
    ecs_world.service("prod", "moved", td)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    ecs_world.ecs.update_service(cluster="prod", service="moved", taskDefinition=moved_to)
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(rotation_event(db), FakeLambdaContext())

    assert [a.rsplit("/", 1)[-1] for a in answer["redeployed"]] == ["api"]
    # The move itself is the test's UpdateService; rotor's is api's alone.
    assert ecs_world.updates_reached_moto == Counter({"api": 1, "moved": 1})
    assert calls.of("UpdateService") == [
        p for p in calls.of("UpdateService") if p["service"].endswith("/api")
    ]
    assert calls.counts["DescribeServices"] == 1
    assert calls.counts["DescribeTaskDefinition"] == 1  # the revision it moved to, once
    assert index.names(db) == {"api"}
    assert index.names(other) == {"moved"}
    assert any("moved runs other task definitions than indexed" in n for n in answer["notes"])


def test_a_candidate_deleted_since_is_forgotten(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", td)
    ecs_world.service("prod", "gone", td)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    ecs_world.ecs.delete_service(cluster="prod", service="gone", force=True)

    answer = rotation_handler(runtime)(rotation_event(db), FakeLambdaContext())

    assert [a.rsplit("/", 1)[-1] for a in answer["redeployed"]] == ["api"]
    assert index.names(db) == {"api"}


def test_a_candidate_ecs_shows_draining_is_forgotten_not_redeployed(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str, index: Index
) -> None:
    """Deleted with tasks still stopping, AWS shows the service DRAINING (moto goes straight to
    INACTIVE): ListServices no longer lists it, so a scan never sees it again. The index path
    forgets it too, rather than describe it and report it skipped on every rotation until the
    next rebuild."""
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", td)
    ecs_world.service("prod", "gone", td)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)

    def draining(parsed: dict[str, Any], **_: Any) -> None:
        for described in parsed.get("services", []):
            if described["serviceName"] == "gone":
                described["status"] = "DRAINING"

    clients.ecs.meta.events.register("after-call.ecs.DescribeServices", draining)
    answer = rotation_handler(runtime)(rotation_event(db), FakeLambdaContext())
    clients.ecs.meta.events.unregister("after-call.ecs.DescribeServices", draining)

    assert [a.rsplit("/", 1)[-1] for a in answer["redeployed"]] == ["api"]
    assert answer["skipped"] == []  # as a scan, which does not list it
    assert ecs_world.updates_reached_moto == Counter({"api": 1})
    assert index.names(db) == {"api"}


def test_a_stale_index_is_not_trusted_the_rotation_scans_and_says_so(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str
) -> None:
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", td)
    runtime = table_runtime(clients, retry)
    rebuild(runtime, datetime.now(UTC) - timedelta(hours=3))
    # Created after the index was built, unknown to it: only a scan finds it.
    ecs_world.service("prod", "unindexed", td)
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(rotation_event(db), FakeLambdaContext())

    assert calls.counts["ListServices"] >= 1  # a full scan
    assert sorted(a.rsplit("/", 1)[-1] for a in answer["redeployed"]) == ["api", "unindexed"]
    (note,) = [n for n in answer["notes"] if "ROTOR_INDEX_MAX_AGE" in n]
    assert "not trusted" in note and "full scan instead" in note


def test_an_index_never_built_or_no_table_means_a_full_scan(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str
) -> None:
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", td)
    for runtime in (table_runtime(clients, retry), make_runtime(clients, retry)):
        calls = ApiCalls().attach(clients.ecs)

        answer = rotation_handler(runtime)(
            rotation_event(db, event_id=str(uuid.uuid4())), FakeLambdaContext()
        )

        assert calls.counts["ListServices"] >= 1
        assert not any("consumer index" in n for n in answer["notes"])
        clients.ecs.meta.events.unregister("before-parameter-build.ecs", calls._record)
    assert ecs_world.updates_reached_moto == Counter({"api": 1})  # the ledger: once


def test_an_index_the_table_cannot_return_right_away_means_a_full_scan_said_so(
    ecs_world: EcsWorld, clients: AwsClients, retry: Any, state_table: str
) -> None:
    from tests.aws_fakes import ErrorInjector

    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.cluster("prod")
    ecs_world.service("prod", "api", td)
    runtime = table_runtime(clients, retry)
    rebuild(runtime)
    throttled = ErrorInjector(
        1.0, code="ProvisionedThroughputExceededException", operations={"BatchGetItem"}
    ).attach(clients.dynamodb)
    calls = ApiCalls().attach(clients.ecs)

    answer = rotation_handler(runtime)(rotation_event(db), FakeLambdaContext())

    assert throttled.injected["BatchGetItem"] == 1  # one attempt, no retry budget spent
    assert calls.counts["ListServices"] >= 1
    assert [a.rsplit("/", 1)[-1] for a in answer["redeployed"]] == ["api"]
    assert any("could not be read" in n and "full scan instead" in n for n in answer["notes"])
