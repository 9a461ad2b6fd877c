"""The consumer index's contract (``orchestration/state/consumer_index.py``), on both backends.

The index answers "which services reference this secret" by the reference rules' own matching
(``SecretReference.points_at``), is trusted only when a full scan built its region within its
maximum age, follows a service that moved to another task definition, forgets what a rebuild no
longer finds, and holds thousands of consumers of one secret within DynamoDB's item limit.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from orchestration.models import TaskDefinitionSummary
from orchestration.secrets.references import ReferenceField, SecretIdentity, parse_reference
from orchestration.state import consumer_index as index_module
from orchestration.state.consumer_index import SHARDS, ConsumerIndex, IndexedCandidates
from tests.conftest import ACCOUNT, REGION
from tests.integration.conftest import NOW, Backend

pytestmark = pytest.mark.integration

PREFIX = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
DB = SecretIdentity("aws", REGION, ACCOUNT, "prod/db", "Ab12Cd")
API_KEY = SecretIdentity("aws", REGION, ACCOUNT, "prod/api-key", "Zz99Yy")
CLUSTER = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/prod"
OTHER_REGION = "eu-west-1"


def service(name: str, cluster: str = "prod", region: str = REGION) -> str:
    return f"arn:aws:ecs:{region}:{ACCOUNT}:service/{cluster}/{name}"


def td(revision: str, *values: str, field: ReferenceField = ReferenceField.SECRETS) -> Any:
    """A task definition summary referencing ``values`` (as a task definition would)."""
    arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{revision}"
    references = tuple(
        ("app", parse_reference(v, field, partition="aws", region=REGION, account=ACCOUNT))
        for v in values
    )
    return TaskDefinitionSummary(arn, references)


def found(candidates: IndexedCandidates | None) -> dict[str, tuple[str, ...]]:
    assert candidates is not None, "the index should be usable"
    return {s.service_arn: s.task_definitions for s in candidates.services}


def built(backend: Backend, *records: tuple[str, str, list[Any]]) -> ConsumerIndex:
    index = backend.consumer_index()
    index.rebuild(REGION, records, NOW - timedelta(minutes=5))
    return index


def test_an_index_never_built_is_not_used(backend: Backend) -> None:
    index = backend.consumer_index()
    index.record_service(service("api"), CLUSTER, [td("api:1", DB.arn)])

    assert index.built_at(REGION) is None
    assert index.candidates(DB, now=NOW) is None


def test_an_index_older_than_its_maximum_age_is_not_used(backend: Backend) -> None:
    index = backend.consumer_index(max_age=timedelta(hours=2))
    index.rebuild(REGION, [(service("api"), CLUSTER, [td("api:1", DB.arn)])], NOW)

    assert found(index.candidates(DB, now=NOW + timedelta(hours=2)))
    assert index.candidates(DB, now=NOW + timedelta(hours=2, seconds=1)) is None
    # Each region has its own: a secret of a region never scanned has no index.
    other = SecretIdentity("aws", OTHER_REGION, ACCOUNT, "prod/db", "Ab12Cd")
    assert index.candidates(other, now=NOW) is None


def test_every_form_of_a_reference_is_found_by_the_reference_rules(backend: Backend) -> None:
    index = built(
        backend,
        (service("full"), CLUSTER, [td("full:1", DB.arn)]),
        (service("json-key"), CLUSTER, [td("json-key:1", f"{DB.arn}:password::")]),
        (service("partial"), CLUSTER, [td("partial:1", f"{PREFIX}prod/db")]),
        (
            service("bare"),
            CLUSTER,
            [td("bare:1", "prod/db", field=ReferenceField.REPOSITORY_CREDENTIALS)],
        ),
        (
            service("passthrough"),
            CLUSTER,
            [td("passthrough:1", "/aws/reference/secretsmanager/prod/db")],
        ),
        (service("ssm"), CLUSTER, [td("ssm:1", "prod/db")]),  # an SSM parameter, not a secret
        (service("prefix"), CLUSTER, [td("prefix:1", f"{PREFIX}prod/db-2")]),  # another name
        (service("other-suffix"), CLUSTER, [td("other-suffix:1", f"{PREFIX}prod/db-Xx11Xx")]),
        (service("api"), CLUSTER, [td("api:1", API_KEY.arn)]),
    )

    assert sorted(found(index.candidates(DB, now=NOW))) == sorted(
        service(n) for n in ("full", "json-key", "partial", "bare", "passthrough")
    )
    # Known by name only, a secret matches the references by name, never a full ARN's.
    by_name = SecretIdentity("aws", REGION, ACCOUNT, "prod/db")
    assert sorted(found(index.candidates(by_name, now=NOW))) == sorted(
        service(n) for n in ("partial", "bare", "passthrough")
    )
    # The same name in another account is another secret.
    elsewhere = SecretIdentity("aws", REGION, "210987654321", "prod/db", "Ab12Cd")
    assert found(index.candidates(elsewhere, now=NOW)) == {}


def test_candidates_carry_their_cluster_and_indexed_task_definitions(backend: Backend) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:3", DB.arn), td("api:4")]))

    candidates = index.candidates(DB, now=NOW)
    assert candidates is not None
    assert candidates.built_at == NOW - timedelta(minutes=5)
    (only,) = candidates.services
    assert only.cluster_arn == CLUSTER
    assert only.task_definitions == (td("api:3").arn, td("api:4").arn)
    assert candidates.by_cluster() == {CLUSTER: [only]}


def test_a_service_re_recorded_on_a_new_task_definition_moves_between_secrets(
    backend: Backend,
) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))

    index.record_service(service("api"), CLUSTER, [td("api:2", API_KEY.arn)])

    assert found(index.candidates(DB, now=NOW)) == {}
    assert found(index.candidates(API_KEY, now=NOW)) == {service("api"): (td("api:2").arn,)}
    # Another container reads the same index.
    assert found(backend.consumer_index().candidates(API_KEY, now=NOW)) == {
        service("api"): (td("api:2").arn,)
    }


def test_recording_the_same_task_definitions_again_writes_nothing(backend: Backend) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))
    commits: list[Any] = []
    real = index._commit
    index._commit = lambda change: commits.append(change) or real(change)  # type: ignore[method-assign]

    index.record_service(service("api"), CLUSTER, [td("api:1", DB.arn)])

    assert commits == []


def test_a_service_created_after_the_rebuild_is_a_candidate(backend: Backend) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))

    index.record_service(service("new"), CLUSTER, [td("new:1", DB.arn)])

    assert sorted(found(index.candidates(DB, now=NOW))) == [service("api"), service("new")]


def test_a_rebuild_drops_a_service_gone_from_the_scan(backend: Backend) -> None:
    index = built(
        backend,
        (service("api"), CLUSTER, [td("api:1", DB.arn)]),
        (service("gone"), CLUSTER, [td("gone:1", DB.arn)]),
    )

    index.rebuild(REGION, [(service("api"), CLUSTER, [td("api:1", DB.arn)])], NOW)

    assert found(index.candidates(DB, now=NOW)) == {service("api"): (td("api:1").arn,)}
    assert index.built_at(REGION) == NOW


def test_a_rebuild_replaces_what_it_finds_changed(backend: Backend) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))

    index.rebuild(REGION, [(service("api"), CLUSTER, [td("api:2", API_KEY.arn)])], NOW)

    assert found(index.candidates(DB, now=NOW)) == {}
    assert found(index.candidates(API_KEY, now=NOW)) == {service("api"): (td("api:2").arn,)}


def test_a_rebuild_keeps_what_an_event_recorded_after_its_scan_began(backend: Backend) -> None:
    """The scan began at NOW - 5 min and read the service on api:1; an event recorded api:2
    since (it happens now, after the scan began): the event's record stands, and a service
    the scan did not see yet (created since) is not forgotten."""
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))
    index.record_service(service("api"), CLUSTER, [td("api:2", DB.arn)])
    index.record_service(service("new"), CLUSTER, [td("new:1", DB.arn)])

    index.rebuild(
        REGION,
        [(service("api"), CLUSTER, [td("api:1", DB.arn)])],
        NOW - timedelta(minutes=5),
    )

    assert found(index.candidates(DB, now=NOW)) == {
        service("api"): (td("api:2").arn,),
        service("new"): (td("new:1").arn,),
    }


def test_a_forgotten_service_is_no_candidate_and_an_older_scan_does_not_bring_it_back(
    backend: Backend,
) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))

    index.forget_service(service("api"))
    assert found(index.candidates(DB, now=NOW)) == {}

    # A scan that began before the deletion still listed it.
    index.rebuild(
        REGION, [(service("api"), CLUSTER, [td("api:1", DB.arn)])], NOW - timedelta(minutes=1)
    )
    assert found(index.candidates(DB, now=NOW)) == {}

    # Created again (the same name), it is a candidate again.
    index.record_service(service("api"), CLUSTER, [td("api:1", DB.arn)])
    assert found(index.candidates(DB, now=NOW)) == {service("api"): (td("api:1").arn,)}


def test_a_deletion_older_than_the_record_forgets_nothing(backend: Backend) -> None:
    """A service deleted, then created again under the same name (the same ARN) and recorded:
    the deletion, handled late, does not forget the new one."""
    index = built(backend)
    index.record_service(service("api"), CLUSTER, [td("api:1", DB.arn)])

    index.forget_service(service("api"), deleted_at=NOW - timedelta(minutes=1))
    assert found(index.candidates(DB, now=NOW)) == {service("api"): (td("api:1").arn,)}

    index.forget_service(service("api"), deleted_at=NOW + timedelta(minutes=1))
    assert found(index.candidates(DB, now=NOW)) == {}


def test_a_rebuild_leaves_other_regions_alone(backend: Backend) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))
    index.record_service(service("eu", region=OTHER_REGION), CLUSTER, [td("eu:1", DB.arn)])

    index.rebuild(OTHER_REGION, [], NOW + timedelta(minutes=1))

    # The eu service (it references the us-east-1 secret) is gone; api stays.
    assert found(index.candidates(DB, now=NOW)) == {service("api"): (td("api:1").arn,)}


def test_a_change_that_lost_a_race_reads_again_and_lands_on_the_winner(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between this writer's read and its write, another container moved the service to
    another secret: the write is refused (the revision moved), read again, and the sets end as
    the last write says: neither secret keeps the service against its item."""
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))
    other = backend.consumer_index()
    real = index._services
    raced = []

    def read_then_lose(arns: Any) -> Any:
        held = real(arns)
        if not raced:
            raced.append(True)
            # Described before this writer's look (a later look would win: see below).
            other.record_service(
                service("api"),
                CLUSTER,
                [td("api:2", API_KEY.arn)],
                observed_at=NOW - timedelta(minutes=1),
            )
        return held

    monkeypatch.setattr(index, "_services", read_then_lose)
    index.record_service(service("api"), CLUSTER, [td("api:3", DB.arn, API_KEY.arn)])

    assert raced
    assert found(index.candidates(DB, now=NOW)) == {service("api"): (td("api:3").arn,)}
    assert found(index.candidates(API_KEY, now=NOW)) == {service("api"): (td("api:3").arn,)}
    index.record_service(service("api"), CLUSTER, [td("api:4")])
    assert found(index.candidates(DB, now=NOW)) == {}
    assert found(index.candidates(API_KEY, now=NOW)) == {}


def test_a_record_of_an_older_look_does_not_overwrite_a_newer_one(backend: Backend) -> None:
    index = built(backend, (service("api"), CLUSTER, [td("api:1", DB.arn)]))
    index.record_service(service("api"), CLUSTER, [td("api:3", API_KEY.arn)])

    # Described before the record above, written after it.
    index.record_service(
        service("api"), CLUSTER, [td("api:2", DB.arn)], observed_at=NOW - timedelta(minutes=1)
    )

    assert found(index.candidates(DB, now=NOW)) == {}
    assert found(index.candidates(API_KEY, now=NOW)) == {service("api"): (td("api:3").arn,)}


def test_thousands_of_consumers_of_one_secret_fit_the_item_limit(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 services with long names (ARNs of 300 bytes: 600 KB in all) reference one
    secret: the index finds them all, and no item of the table exceeds 400 KB."""
    import moto.dynamodb.models as moto_dynamodb

    # moto deep-copies the whole table before each transaction (its rollback): 2,000 of them
    # take minutes. No transaction of this test fails, so no copy is needed.
    monkeypatch.setattr(moto_dynamodb, "copy", _NoCopy)
    cluster = "c" * 100
    names = [f"{i:04d}-" + "s" * 150 for i in range(2000)]
    index = built(
        backend,
        *[(service(n, cluster), CLUSTER, [td("shared:1", DB.arn)]) for n in names],
    )

    candidates = index.candidates(DB, now=NOW)
    assert len(found(candidates)) == 2000
    assert sum(len(service(n, cluster)) for n in names) > 400 * 1024
    largest = max(len(json.dumps(sorted(m), separators=(",", ":"))) for m in _sets(backend, index))
    assert 0 < largest < 400 * 1024 / 2


class _NoCopy:
    @staticmethod
    def deepcopy(value: Any) -> Any:
        return value


def _sets(backend: Backend, index: ConsumerIndex) -> list[set[str]]:
    """Every secret set the index holds, as stored."""
    if backend.name == "memory":
        return list(index._sets.values())  # type: ignore[attr-defined]
    assert backend.clients is not None
    items = backend.clients.dynamodb.scan(TableName=backend.table)["Items"]
    return [set(i["services"]["SS"]) for i in items if i["kind"]["S"] == "index-secret"]


def test_shards_spread_a_secrets_consumers() -> None:
    shards = {index_module.shard_of(service(f"s{i}")) for i in range(200)}
    assert shards == set(range(SHARDS))


def test_a_second_rebuild_of_an_unchanged_account_writes_nothing(backend: Backend) -> None:
    records = [(service(f"s{i}"), CLUSTER, [td(f"s{i}:1", DB.arn)]) for i in range(5)]
    index = built(backend, *records)
    commits: list[Any] = []
    real = index._commit
    index._commit = lambda change: commits.append(change) or real(change)  # type: ignore[method-assign]

    index.rebuild(REGION, records, NOW)

    assert commits == []
    assert index.built_at(REGION) == NOW


def test_a_rebuild_on_several_workers_indexes_the_same(backend: Backend) -> None:
    if backend.name != "memory":
        pytest.skip("moto's TransactWriteItems is not thread-safe (DynamoDB's is)")
    index = backend.consumer_index()
    records = [(service(f"s{i}"), CLUSTER, [td(f"s{i}:1", DB.arn)]) for i in range(200)]

    index.rebuild(REGION, records, NOW, workers=8)

    assert len(found(index.candidates(DB, now=NOW))) == 200
