"""The state store's contract, run against both implementations: memory, and DynamoDB (moto).

Every user of the store (notify windows, the redeploy ledger) relies on exactly these rules, so
they are proved once here, on what is read back from the store.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from orchestration.state.store import (
    DynamoDbStateStore,
    Lost,
    MemoryStateStore,
    Record,
    State,
    StateStore,
    Won,
)
from tests.aws_fakes import ErrorInjector, LoseFirstAnswer
from tests.integration.conftest import Backend

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 10, 0, 5, 123456, tzinfo=UTC)
LEASE = timedelta(minutes=1)
KEEP = timedelta(days=2)
KEY = "test#service-a"


@pytest.fixture
def store(backend: Backend) -> StateStore:
    """The state store of each backend (``backend`` runs memory, then DynamoDB in moto)."""
    return backend.state_store()


def claim(store: StateStore, owner: str, now: datetime = T0, **kwargs) -> Won | Lost:
    kwargs.setdefault("lease_until", now + LEASE)
    kwargs.setdefault("expires_at", now + KEEP)
    return store.claim(KEY, owner, now=now, **kwargs)


def won(answer: Won | Lost) -> Record:
    assert isinstance(answer, Won), answer
    return answer.record


def lost(answer: Won | Lost) -> Record:
    assert isinstance(answer, Lost), answer
    return answer.holder


def test_a_claim_on_a_free_key_wins_and_reads_back_exactly(store):
    record = won(claim(store, "a", data={"note": "text", "at": T0 + timedelta(microseconds=7)}))

    assert store.read(KEY) == record
    assert record.owner == "a"
    assert record.state is State.PENDING
    assert record.claimed_at == T0  # microseconds kept
    assert record.lease_until == T0 + LEASE
    assert record.data == {"note": "text", "at": T0 + timedelta(microseconds=7)}


def test_a_leased_claim_loses_and_names_its_holder(store):
    won(claim(store, "a"))

    holder = lost(claim(store, "b", T0 + LEASE - timedelta(microseconds=1)))

    assert holder.owner == "a"
    assert store.read(KEY).owner == "a"


def test_the_owner_claiming_again_wins_its_own_claim(store):
    """A retry whose first answer was lost meets its own claim: still ours."""
    first = won(claim(store, "a"))

    again = won(claim(store, "a", T0 + timedelta(seconds=1), data={"note": "retry"}))

    assert again.owner == first.owner == "a"
    # Both stores answer with the claim as held, unchanged (its lease, time and data).
    assert again == first
    assert store.read(KEY) == first


def test_an_expired_lease_is_taken_over_and_the_old_owner_can_change_nothing(store):
    stale = won(claim(store, "a"))

    taken = won(claim(store, "b", T0 + LEASE))

    assert store.confirm(stale, {"note": "late"}) is None
    assert store.release(stale) is False
    assert store.read(KEY) == taken


def test_confirm_keeps_the_claim_and_adds_its_data(store):
    record = won(claim(store, "a", data={"note": "claimed"}))
    deployed = T0 + timedelta(milliseconds=250, microseconds=3)

    confirmed = store.confirm(record, {"deployed": deployed})

    assert confirmed is not None
    assert store.read(KEY) == confirmed
    assert confirmed.state is State.CONFIRMED
    assert confirmed.owner == "a"
    assert confirmed.data == {"note": "claimed", "deployed": deployed}


def test_a_confirmed_record_holds_after_its_lease_unless_the_claimant_may_replace_it(store):
    record = won(claim(store, "a"))
    store.confirm(record, {"n": "1"})
    later = T0 + LEASE + timedelta(hours=1)

    assert lost(claim(store, "b", later)).owner == "a"
    seen: list[Record] = []

    def replaces(old: Record) -> bool:
        seen.append(old)
        return old.data.get("n") == "1"

    replaced = won(claim(store, "c", later, replaces=replaces))

    assert [r.owner for r in seen] == ["a"]
    assert store.read(KEY) == replaced
    assert replaced.state is State.PENDING


def test_a_record_past_its_expiry_is_gone_for_claims(store):
    record = won(claim(store, "a", expires_at=T0 + timedelta(minutes=5)))
    store.confirm(record)

    # Expiry is kept in whole seconds (DynamoDB's TTL), never before the moment asked for.
    assert lost(claim(store, "b", T0 + timedelta(minutes=5))).owner == "a"
    won(claim(store, "b", T0 + timedelta(minutes=5, seconds=1)))


def test_release_checks_the_owner(store):
    record = won(claim(store, "a"))
    impostor = Record(
        KEY, "b", State.PENDING, T0, T0 + LEASE, T0 + KEEP, {}
    )  # same key, someone else's token

    assert store.release(impostor) is False
    assert store.read(KEY) == record
    assert store.release(record) is True
    assert store.read(KEY) is None
    won(claim(store, "c", T0 + timedelta(seconds=1)))


def test_read_of_an_unknown_key_is_none(store):
    assert store.read("test#nothing") is None


def test_memory_store_lets_exactly_one_of_many_concurrent_claims_win():
    store = MemoryStateStore()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: claim(store, f"owner-{i}"), range(200)))

    assert sum(isinstance(a, Won) for a in answers) == 1


# --------------------------------------------------------------- DynamoDB: the item and its faults


def test_dynamodb_item_has_the_key_and_the_ttl_in_epoch_seconds(clients, retry, state_table):
    store = DynamoDbStateStore(clients.dynamodb, state_table, retry)

    won(claim(store, "a", expires_at=T0 + KEEP))

    (item,) = clients.dynamodb.scan(TableName=state_table)["Items"]
    assert item["pk"] == {"S": KEY}
    assert item["expires_at"] == {"N": str(int((T0 + KEEP).timestamp()) + 1)}  # rounded up
    assert item["claimed_at"] == {"N": str(int(T0.timestamp()) * 1_000_000 + 123456)}


def test_dynamodb_claim_whose_answer_was_lost_is_still_won(clients, retry, state_table):
    store = DynamoDbStateStore(clients.dynamodb, state_table, retry)
    lose = LoseFirstAnswer("PutItem").attach(clients.dynamodb)

    record = won(claim(store, "a"))

    assert lose.lost
    assert store.read(KEY) == record


def test_dynamodb_throttling_is_retried_within_one_budget(clients, sleeps, state_table):
    from orchestration.aws.retry import RetryPolicy

    store = DynamoDbStateStore(clients.dynamodb, state_table, RetryPolicy(sleep=sleeps))
    throttled = ErrorInjector(0.5, code="ProvisionedThroughputExceededException", seed=3).attach(
        clients.dynamodb
    )

    record = won(claim(store, "a"))
    confirmed = store.confirm(record, {"n": "1"})

    assert confirmed is not None and confirmed.state is State.CONFIRMED
    assert sum(throttled.injected.values()) > 0
    assert store.read(KEY) == confirmed


# --- the versioned update (the rollout store's items) ----------------------------------------


def test_update_writes_what_the_change_returns_and_answers_its_answer(store):
    def add(item):
        count = (item or {}).get("count", 0)
        return {"kind": "counter", "count": count + 1, "names": ["a"], "map": {"k": 1}}, count

    answers = [store.update("counter#x", add) for _ in range(3)]
    unchanged = store.update("counter#x", lambda item: (None, item["count"]))

    assert answers == [0, 1, 2]
    assert unchanged == 3
    item = store.get("counter#x")
    assert {k: item[k] for k in ("kind", "count", "names", "map")} == {
        "kind": "counter",
        "count": 3,
        "names": ["a"],
        "map": {"k": 1},
    }
    assert store.get("counter#none") is None
    assert [i["pk"] for i in store.items({"counter"})] == ["counter#x"]
    assert store.items({"other"}) == []


def test_update_reads_again_when_another_writer_came_in_between(store):
    """Two containers changing one item: neither change is lost."""
    calls = []

    def change(item):
        calls.append(item)
        if len(calls) == 1:  # another writer, between this read and this write
            store.update(
                "counter#x", lambda other: ({"count": (other or {}).get("count", 0) + 10}, None)
            )
        return {"count": (item or {}).get("count", 0) + 1}, None

    store.update("counter#x", change)

    assert store.get("counter#x")["count"] == 11
    assert len(calls) == 2
