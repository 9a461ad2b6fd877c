"""One store for everything rotor remembers between invocations: claims with an owner and a lease.

The notify windows and the redeploy ledger (and, next, the rollout tracker and the consumer
index) all need the same thing: "this key is mine until then, unless someone else holds it".
This module gives them one small interface, after the shape of Powertools' idempotency utility
(a base, persistence layers, a data record):

* ``Record``: one key's state: its ``owner`` (a token unique to one claim), ``state``
  (``pending`` while the owner works, ``confirmed`` once its work is done), ``claimed_at``,
  ``lease_until`` (a pending record holds the key until then: a claimant that died is taken
  over), ``expires_at`` (the record is gone after it; DynamoDB's TTL) and ``data`` (what the
  user of the store records: text and times);
* ``StateStore.claim`` takes a key, or says who holds it; ``confirm`` and ``release`` act only
  while the record is still the caller's (an owner check); ``read`` reads it back;
* ``MemoryStateStore`` (one process) and ``DynamoDbStateStore`` (a table shared by every Lambda
  container: key ``pk`` string, TTL attribute ``expires_at``). One contract test suite runs
  against both.

A claim wins when the key has no live record: none, expired, a pending record whose lease has
passed, a record the claimant already owns (an earlier attempt whose answer was lost: the
claim returns that record as it is held, unchanged, in both stores), or a confirmed record the
caller's ``replaces`` says it may replace. Everything else loses, and the
caller gets the holder's record to say why. Times keep microseconds in both stores.
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import ConditionFailed, RetryableAwsError
from orchestration.state import codec
from orchestration.state.codec import EXPIRES_ATTRIBUTE, KEY_ATTRIBUTE, Value
from orchestration.times import utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Attributes the store itself keeps; everything else on an item is the record's ``data``.
_CORE = frozenset({KEY_ATTRIBUTE, EXPIRES_ATTRIBUTE, "owner", "state", "claimed_at", "lease_until"})


class State(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    owner: str
    state: State
    claimed_at: datetime
    lease_until: datetime
    expires_at: datetime  # whole seconds
    data: Mapping[str, Value] = field(default_factory=dict)

    def expired(self, now: datetime) -> bool:
        return utc(self.expires_at) <= utc(now)

    def leased(self, now: datetime) -> bool:
        """A pending record whose owner may still be at work."""
        return self.state is State.PENDING and utc(now) < utc(self.lease_until)


@dataclass(frozen=True, slots=True)
class Won:
    record: Record


@dataclass(frozen=True, slots=True)
class Lost:
    holder: Record


Replaces = Callable[[Record], bool]
T = TypeVar("T")
#: ``update``'s change: the item now (``None``: none) -> (the item to write or ``None``, answer).
Change = Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, T]]
#: How often ``update`` reads again when the item changed under it.
CONFLICT_ATTEMPTS = 20
VERSION_ATTRIBUTE = "revision"  # counts the writes of an ``update`` item


def _never(_: Record) -> bool:
    return False


def claimable(old: Record | None, owner: str, now: datetime, replaces: Replaces) -> bool:
    """The one rule both stores apply (DynamoDB in its condition expression, then in Python)."""
    if old is None or old.owner == owner or old.expired(now):
        return True
    if old.state is State.PENDING:
        return not old.leased(now)
    return replaces(old)


class StateStore(ABC):
    @abstractmethod
    def claim(
        self,
        key: str,
        owner: str,
        *,
        now: datetime,
        lease_until: datetime,
        expires_at: datetime,
        data: Mapping[str, Value] | None = None,
        replaces: Replaces = _never,
    ) -> Won | Lost:
        """Hold ``key`` for ``owner`` (pending until ``lease_until``), or say who holds it.
        ``replaces`` may let a confirmed record go (its owner's work is no longer current)."""

    @abstractmethod
    def confirm(self, claim: Record, data: Mapping[str, Value] | None = None) -> Record | None:
        """Mark the claim's work done, adding ``data``; ``None`` when it is no longer ours."""

    @abstractmethod
    def release(self, claim: Record) -> bool:
        """Give the claim back; False when it was no longer ours (nothing changed)."""

    @abstractmethod
    def read(self, key: str) -> Record | None:
        """The key's record, expired or not; ``None`` when there is none."""

    #: The operation a conflict that never ends is reported as.
    _update_operation = "Update"

    def update(self, key: str, change: Change[T]) -> T:
        """Read the item at ``key`` (``None``: none), apply ``change``, and write what it returns
        (``None``: leave the item as it is) if nobody wrote in between; again on conflict.
        Returns ``change``'s answer. Items are plain values: text, numbers, lists, maps."""
        for _ in range(CONFLICT_ATTEMPTS):
            held = self.get(key)
            version = int((held or {}).get(VERSION_ATTRIBUTE, 0))
            written, answer = change(held)
            if written is None:
                return answer
            item = {**written, KEY_ATTRIBUTE: key, VERSION_ATTRIBUTE: version + 1}
            if self._write_over(key, item, version):
                return answer
            # written in between: read again
        raise RetryableAwsError(
            self._update_operation, "Conflict", f"{key} kept changing under rotor"
        )

    @abstractmethod
    def _write_over(self, key: str, item: dict[str, Any], version: int) -> bool:
        """Write ``item`` at ``key`` only if the item there is still at revision ``version``
        (0: none, or one without a revision); False when it is not (nothing written)."""

    @abstractmethod
    def get(self, key: str) -> dict[str, Any] | None:
        """The item at ``key`` (as ``update`` wrote it), or ``None``."""

    @abstractmethod
    def items(self, kinds: Collection[str]) -> list[dict[str, Any]]:
        """Every item whose ``kind`` is one of ``kinds`` (with its key as ``pk``)."""

    def with_retry(self, retry: RetryPolicy) -> StateStore:
        """The same records, reached through ``retry`` (say, with an invocation's deadline)."""
        return self


def _new_record(
    key: str,
    owner: str,
    now: datetime,
    lease_until: datetime,
    expires_at: datetime,
    data: Mapping[str, Value] | None,
) -> Record:
    return Record(
        key=key,
        owner=owner,
        state=State.PENDING,
        claimed_at=utc(now),
        lease_until=utc(lease_until),
        expires_at=codec.expiry(expires_at),
        data=_utc_values(data),
    )


class MemoryStateStore(StateStore):
    """Records in a dict behind a lock: one process (a warm Lambda container, a CLI run)."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._items: dict[str, dict[str, Any]] = {}  # ``update``'s items
        self._lock = threading.Lock()

    def claim(
        self,
        key: str,
        owner: str,
        *,
        now: datetime,
        lease_until: datetime,
        expires_at: datetime,
        data: Mapping[str, Value] | None = None,
        replaces: Replaces = _never,
    ) -> Won | Lost:
        with self._lock:
            self._forget_expired(now)
            old = self._records.get(key)
            if old is not None and old.owner == owner:
                return Won(old)
            if not claimable(old, owner, now, replaces):
                assert old is not None
                return Lost(old)
            record = _new_record(key, owner, now, lease_until, expires_at, data)
            self._records[key] = record
            return Won(record)

    def confirm(self, claim: Record, data: Mapping[str, Value] | None = None) -> Record | None:
        with self._lock:
            record = self._records.get(claim.key)
            if record is None or record.owner != claim.owner:
                return None
            confirmed = replace(
                record, state=State.CONFIRMED, data={**record.data, **_utc_values(data)}
            )
            self._records[claim.key] = confirmed
            return confirmed

    def release(self, claim: Record) -> bool:
        with self._lock:
            record = self._records.get(claim.key)
            if record is None or record.owner != claim.owner:
                return False
            del self._records[claim.key]
            return True

    def read(self, key: str) -> Record | None:
        with self._lock:
            return self._records.get(key)

    def _write_over(self, key: str, item: dict[str, Any], version: int) -> bool:
        """As in DynamoDB: the change is made outside the lock, the write only over the
        revision read."""
        with self._lock:
            now_held = self._items.get(key)
            if int((now_held or {}).get(VERSION_ATTRIBUTE, 0)) != version:
                return False
            self._items[key] = copy.deepcopy(item)
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            held = self._items.get(key)
            return copy.deepcopy(held) if held is not None else None

    def items(self, kinds: Collection[str]) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(i) for i in self._items.values() if i.get("kind") in kinds]

    def _forget_expired(self, now: datetime) -> None:
        for key in [k for k, r in self._records.items() if r.expired(now)]:
            del self._records[key]


class DynamoDbStateStore(StateStore):
    """One item per key: ``pk``, ``owner``, ``state``, ``claimed_at`` and ``lease_until`` (epoch
    microseconds), ``expires_at`` (epoch seconds, the TTL attribute), and the record's data as
    top-level attributes (text as ``S``, times as ``N`` epoch microseconds).

    A claim is one conditional ``PutItem`` (atomic: two containers cannot both win); only a
    confirmed record that ``replaces`` lets go costs a second, owner-checked one. Every call
    goes through the retry policy; inside a caller's budget it is one attempt of the caller's.
    """

    def __init__(self, client: DynamoDBClient, table: str, retry: RetryPolicy) -> None:
        self._client = client
        self._table = table
        self._retry = retry

    def claim(
        self,
        key: str,
        owner: str,
        *,
        now: datetime,
        lease_until: datetime,
        expires_at: datetime,
        data: Mapping[str, Value] | None = None,
        replaces: Replaces = _never,
    ) -> Won | Lost:
        record = _new_record(key, owner, now, lease_until, expires_at, data)
        item = _item(record)

        def put() -> Won | Lost:
            old = self._put(
                item,
                "attribute_not_exists(#pk) OR #expires <= :now_s"
                " OR (#state = :pending AND #lease <= :now_us)",
                {
                    ":now_s": codec.number(codec.seconds(now)),
                    ":now_us": codec.number(codec.micros(now)),
                    ":pending": codec.text(State.PENDING.value),
                },
                {"#pk": KEY_ATTRIBUTE, "#lease": "lease_until", "#expires": EXPIRES_ATTRIBUTE},
            )
            if old is None:
                return Won(record)
            if old.owner == owner and not old.expired(now):
                return Won(old)  # its own claim (an attempt whose answer was lost), as held
            if not claimable(old, owner, now, replaces):
                return Lost(old)
            # A confirmed record the caller may replace: replace exactly that one.
            if (
                self._put(
                    item,
                    "#owner = :old_owner AND #state = :old_state",
                    {
                        ":old_owner": codec.text(old.owner),
                        ":old_state": codec.text(old.state.value),
                    },
                    {},
                )
                is None
            ):
                return Won(record)
            now_held = self._get(key)
            return Lost(now_held) if now_held is not None else Lost(old)

        return self._retry.call("PutItem", put)

    def confirm(self, claim: Record, data: Mapping[str, Value] | None = None) -> Record | None:
        values = {f":d{i}": codec.attribute(v) for i, v in enumerate((data or {}).values())}
        names = {f"#d{i}": name for i, name in enumerate((data or {}).keys())}
        assignments = ", ".join(f"{n} = {v}" for n, v in zip(names, values, strict=True))
        try:
            answer = self._retry.call(
                "UpdateItem",
                self._client.update_item,
                TableName=self._table,
                Key=codec.key(claim.key),
                UpdateExpression="SET #state = :confirmed" + (f", {assignments}" if data else ""),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#state": "state", "#owner": "owner", **names},
                ExpressionAttributeValues={
                    ":confirmed": codec.text(State.CONFIRMED.value),
                    ":owner": codec.text(claim.owner),
                    **values,
                },
                ReturnValues="ALL_NEW",
            )
        except ConditionFailed:
            return None  # taken over after its lease: nothing of ours to change
        return _record(answer.get("Attributes") or {})

    def release(self, claim: Record) -> bool:
        try:
            self._retry.call(
                "DeleteItem",
                self._client.delete_item,
                TableName=self._table,
                Key=codec.key(claim.key),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": codec.text(claim.owner)},
            )
        except ConditionFailed:
            return False
        return True

    def read(self, key: str) -> Record | None:
        return self._retry.call("GetItem", self._get, key=key)

    def with_retry(self, retry: RetryPolicy) -> DynamoDbStateStore:
        return DynamoDbStateStore(self._client, self._table, retry)

    _update_operation = "PutItem"

    def _write_over(self, key: str, item: dict[str, Any], version: int) -> bool:
        """A ``PutItem`` conditional on the version read (``get`` reads consistently)."""
        try:
            self._retry.call(
                "PutItem",
                self._client.put_item,
                TableName=self._table,
                Item=codec.encode(item),
                # An item without a revision (none yet, or one written before revisions
                # were kept) is replaced only if it still has none.
                **(
                    {
                        "ConditionExpression": "#version = :version",
                        "ExpressionAttributeNames": {"#version": VERSION_ATTRIBUTE},
                        "ExpressionAttributeValues": {":version": codec.number(version)},
                    }
                    if version
                    else {
                        "ConditionExpression": "attribute_not_exists(#pk)"
                        " OR attribute_not_exists(#version)",
                        "ExpressionAttributeNames": {
                            "#pk": KEY_ATTRIBUTE,
                            "#version": VERSION_ATTRIBUTE,
                        },
                    }
                ),
            )
        except ConditionFailed:
            return False
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        answer = self._retry.call(
            "GetItem",
            self._client.get_item,
            TableName=self._table,
            Key=codec.key(key),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return codec.decode(item) if item else None

    def items(self, kinds: Collection[str]) -> list[dict[str, Any]]:
        names = {f":k{i}": kind for i, kind in enumerate(sorted(kinds))}
        return self.scan(
            f"#kind IN ({', '.join(names)})", {"#kind": "kind"}, names, consistent=False
        )

    def scan(
        self,
        condition: str,
        names: Mapping[str, str],
        values: Mapping[str, Value],
        *,
        consistent: bool,
    ) -> list[dict[str, Any]]:
        """Every item ``condition`` (a Scan's FilterExpression) holds for, page by page."""
        found: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            page = self._retry.call(
                "Scan",
                self._client.scan,
                TableName=self._table,
                FilterExpression=condition,
                ExpressionAttributeNames=dict(names),
                ExpressionAttributeValues=codec.encode(dict(values)),
                **({"ConsistentRead": True} if consistent else {}),
                **({"ExclusiveStartKey": start} if start else {}),
            )
            found.extend(codec.decode(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

    def _get(self, key: str) -> Record | None:
        answer = self._client.get_item(
            TableName=self._table, Key=codec.key(key), ConsistentRead=True
        )
        item = answer.get("Item")
        return _record(item) if item else None

    def _put(
        self,
        item: dict[str, Any],
        condition: str,
        values: dict[str, Any],
        names: dict[str, str],
    ) -> Record | None:
        """Put ``item`` if ``condition`` holds: ``None`` when written, else the record there."""
        try:
            # Inside the caller's attempt: one attempt, its errors mapped to rotor's own.
            self._retry.call(
                "PutItem",
                self._client.put_item,
                TableName=self._table,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames={
                    **{
                        n: v
                        for n, v in (("#owner", "owner"), ("#state", "state"))
                        if n in condition
                    },
                    **names,
                },
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ConditionFailed as exc:
            if exc.item:
                return _record(exc.item)
            held = self._get(codec.text_of(item[KEY_ATTRIBUTE]) or "")
            if held is None:  # gone in between: the caller's retry tries again
                raise RetryableAwsError("PutItem", "Conflict", "the record changed") from exc
            return held
        return None


# --- a claim as an item (the attribute values are the codec's) ---------------------------


def _item(record: Record) -> dict[str, Any]:
    return {
        **codec.key(record.key),
        "owner": codec.text(record.owner),
        "state": codec.text(record.state.value),
        "claimed_at": codec.number(codec.micros(record.claimed_at)),
        "lease_until": codec.number(codec.micros(record.lease_until)),
        **codec.expires(record.expires_at),
        **{name: codec.attribute(value) for name, value in record.data.items()},
    }


def _record(item: Mapping[str, Any]) -> Record:
    data: dict[str, Value] = {}
    for name, attribute in item.items():
        found = codec.value(attribute) if name not in _CORE else None
        if found is not None:
            data[name] = found
    return Record(
        key=codec.text_of(item.get(KEY_ATTRIBUTE)) or "",
        owner=codec.text_of(item.get("owner")) or "",
        state=State(codec.text_of(item.get("state")) or State.PENDING.value),
        claimed_at=codec.from_micros(codec.number_of(item.get("claimed_at"))),
        lease_until=codec.from_micros(codec.number_of(item.get("lease_until"))),
        expires_at=datetime.fromtimestamp(codec.number_of(item.get(EXPIRES_ATTRIBUTE)), tz=UTC),
        data=data,
    )


def _utc_values(data: Mapping[str, Value] | None) -> dict[str, Value]:
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in (data or {}).items()}
