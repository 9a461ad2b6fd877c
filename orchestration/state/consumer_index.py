"""The consumer index: which ECS services reference which secret, kept in the state table.

A rotation with an index reads only its candidates (``candidates``) instead of scanning the
account. The index is maintained one service at a time (``record_service`` and
``forget_service``: ECS CloudTrail events, and a candidate found running another task definition
at rotation time) and replaced region by region by a full scan (``rebuild``: the reconciler).
An index is trusted only if a full scan built its region within ``max_age``
(``ROTOR_INDEX_MAX_AGE``): events alone may have been lost, so an index never built, or not
rebuilt for too long, is not used (``candidates`` answers ``None``: the caller scans).

Items (keys in ``orchestration.state.keys``):

* ``index-service#<service ARN>``: the service's ``cluster``, ``region``, the
  ``task_definitions`` indexed for it, the ``secrets`` they reference (each as
  ``partition:region:account:name_part``, the name part as the reference has it: a bare name,
  a partial ARN's name, or a full ARN's ``name-XXXXXX``), ``recorded_at`` (epoch microseconds),
  and a ``revision``. A forgotten service keeps a tombstone (``forgotten``) for a day, so a
  rebuild whose scan began before the deletion does not bring it back;
* ``index-secret#<secret>#<shard>``: a string set ``services`` of the service ARNs whose
  task definitions reference the secret. Each service belongs to one of ``SHARDS`` shards (a
  hash of its ARN), so a secret's consumers spread over ``SHARDS`` items: at most about 700
  service ARNs of the longest kind (cluster and service names of 255 characters) fit in one
  item's 400 KB, so ``SHARDS`` of them hold at least 11,000, and some 60,000 ARNs of a common
  length. A write that would still exceed the item limit fails the write (an AWS error), and
  the rebuild that follows reports it;
* ``index-built#<region>``: ``built_at`` of the region's last full scan.

Lookups read both keys a full identity may be referenced by (``name`` and ``name-XXXXXX``):
exactly the rule of ``SecretReference.points_at``.

Concurrent writers. An event maintaining one service, another event about the same service, and
a rebuild may race. Each change of one service is one DynamoDB ``TransactWriteItems``: the
service item written only over the revision read (a condition), together with the ``ADD`` and
``DELETE`` of its ARN in the secrets' sets. DynamoDB applies a transaction all or nothing and
serializes conflicting ones (AWS: "TransactWriteItems is a synchronous and idempotent write
operation that groups up to 100 write actions in a single all-or-nothing operation"; a
concurrent write to one of its items cancels it with ``TransactionConflict``), so the sets
change in the order of the service item's revisions: a late writer re-reads and tries again,
and no set keeps or loses a service against its item. (moto does not make this atomic across
threads; the reasoning is AWS's.) A change touching more than ``TRANSACTION_ACTIONS`` items
(a service referencing about 100 secrets) writes its extra ``ADD``s first, outside the
transaction: an extra set member is harmless, since a lookup keeps a service only if its item
names the secret too. A rebuild never overwrites a service recorded after its scan began
(``built_at``): that record is newer than what the scan read. Likewise a record carries when
ECS was looked at (``observed_at``, taken before the describe), and neither a record nor a
deletion overwrites the record of a later look: two containers describing one service may
write in the other order than they read.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import PermanentAwsError, RetryableAwsError
from orchestration.models import TaskDefinitionSummary
from orchestration.secrets.references import ReferenceKind, SecretIdentity
from orchestration.state import codec, keys
from orchestration.state.codec import KEY_ATTRIBUTE
from orchestration.state.store import CONFLICT_ATTEMPTS, VERSION_ATTRIBUTE, DynamoDbStateStore
from orchestration.times import utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

#: How many items hold one secret's consumers.
SHARDS = 16
#: ``TransactWriteItems`` takes at most 100 actions: the service item and 99 set changes.
TRANSACTION_ACTIONS = 100
#: ``BatchGetItem`` reads at most 100 keys a call.
BATCH_GET = 100
#: Services a rebuild writes at once (each change is one transaction). One by default: a
#: steady-state rebuild writes only what changed; a first build of a large account may pass
#: more (DynamoDB serves them; moto's transactions are not thread-safe, so tests keep one).
REBUILD_WORKERS = 1
DEFAULT_MAX_AGE = timedelta(hours=2)  # the reconciler rebuilds every 30 minutes
SERVICE_KIND = "index-service"
SECRET_KIND = "index-secret"
BUILT_KIND = "index-built"


@dataclass(frozen=True, slots=True)
class IndexedService:
    """One service the index says references the secret, and what it was indexed running."""

    service_arn: str
    cluster_arn: str
    task_definitions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IndexedCandidates:
    """The services the index holds for a secret, and when the index's region was built."""

    secret: SecretIdentity
    built_at: datetime
    services: tuple[IndexedService, ...]

    def by_cluster(self) -> dict[str, list[IndexedService]]:
        grouped: dict[str, list[IndexedService]] = {}
        for service in self.services:
            grouped.setdefault(service.cluster_arn, []).append(service)
        return grouped


def secret_key(partition: str, region: str, account: str, name_part: str) -> str:
    return f"{partition}:{region}:{account}:{name_part}"


def lookup_keys(secret: SecretIdentity) -> tuple[str, ...]:
    """The keys a reference to ``secret`` may be indexed under (``points_at``'s two forms)."""
    where = (secret.partition, secret.region, secret.account)
    found = [secret_key(*where, secret.name)]
    if secret.suffix is not None:
        found.append(secret_key(*where, f"{secret.name}-{secret.suffix}"))
    return tuple(found)


def referenced_keys(task_definitions: Sequence[TaskDefinitionSummary]) -> list[str]:
    """The secrets ``task_definitions`` reference, as index keys (SSM parameters are not)."""
    found = {
        secret_key(ref.partition, ref.region, ref.account, ref.name_part)
        for td in task_definitions
        for _, ref in td.references
        if ref.kind is not ReferenceKind.SSM_PARAMETER
    }
    return sorted(found)


def shard_of(service_arn: str) -> int:
    digest = hashlib.sha256(service_arn.encode()).digest()
    return int.from_bytes(digest[:4], "big") % SHARDS


def region_of(service_arn: str) -> str:
    """``us-east-1`` of ``arn:aws:ecs:us-east-1:123456789012:service/…``."""
    parts = service_arn.split(":")
    return parts[3] if len(parts) > 3 else ""


class _Unchanged(Enum):
    """``decide``'s answer when the service's item is to stay as it is."""

    UNCHANGED = auto()


UNCHANGED = _Unchanged.UNCHANGED
#: The service's item now (``None``: none) -> the item to write, ``None`` to delete it, or
#: ``UNCHANGED``.
Decide = Callable[[dict[str, Any] | None], dict[str, Any] | _Unchanged | None]


@dataclass(frozen=True, slots=True)
class _Change:
    """One service's change: its item (``None``: delete it) over ``revision``, and the set
    members to add and remove (shard keys)."""

    service_arn: str
    item: dict[str, Any] | None
    revision: int
    add: tuple[str, ...]
    remove: tuple[str, ...]


class ConsumerIndex(ABC):
    """The index's rules; the two backends only store (``MemoryConsumerIndex``,
    ``DynamoDbConsumerIndex``). Build one with ``for_table`` or ``in_memory``."""

    def __init__(self, max_age: timedelta = DEFAULT_MAX_AGE) -> None:
        self.max_age = max_age

    @staticmethod
    def for_table(
        client: DynamoDBClient,
        table: str,
        retry: RetryPolicy,
        max_age: timedelta = DEFAULT_MAX_AGE,
    ) -> DynamoDbConsumerIndex:
        return DynamoDbConsumerIndex(client, table, retry, max_age)

    @staticmethod
    def in_memory(max_age: timedelta = DEFAULT_MAX_AGE) -> MemoryConsumerIndex:
        return MemoryConsumerIndex(max_age)

    @abstractmethod
    def with_retry(self, retry: RetryPolicy) -> ConsumerIndex:
        """The same index, reached through ``retry`` (an invocation's deadline)."""

    # --- the public API ----------------------------------------------------------------

    def record_service(
        self,
        service_arn: str,
        cluster_arn: str,
        task_definitions: Sequence[TaskDefinitionSummary],
        observed_at: datetime | None = None,
    ) -> None:
        """The service runs ``task_definitions`` as ECS showed it at ``observed_at`` (when the
        describe began; default: now): it is indexed under the secrets they reference, and no
        longer under any other. A record of a later look is kept: two containers describing
        one service may write in the other order than they read."""
        at = utc(observed_at) if observed_at is not None else _now()
        wanted = self._service_item(service_arn, cluster_arn, task_definitions, at)

        def decide(old: dict[str, Any] | None) -> dict[str, Any] | _Unchanged | None:
            if old is not None and int(old.get("recorded_at", 0)) > _micros(at):
                return UNCHANGED  # a later look at the service is recorded
            return UNCHANGED if _same(old, wanted) else wanted

        self._apply(service_arn, decide)

    def forget_service(self, service_arn: str, deleted_at: datetime | None = None) -> None:
        """The service was deleted at ``deleted_at`` (default: now): it is indexed under no
        secret. A record made after ``deleted_at`` is kept: a service created since under the
        same name has the same ARN, and a late or repeated DeleteService event (EventBridge
        neither orders events nor delivers them once) must not forget it."""
        at = utc(deleted_at) if deleted_at is not None else _now()
        tombstone = self._tombstone(service_arn, at)

        def decide(old: dict[str, Any] | None) -> dict[str, Any] | _Unchanged | None:
            if old is None or old.get("forgotten"):
                return UNCHANGED
            if int(old.get("recorded_at", 0)) > _micros(at):
                return UNCHANGED  # recorded after the deletion: a service created since
            return tombstone

        self._apply(service_arn, decide)

    def candidates(
        self, secret: SecretIdentity, now: datetime | None = None
    ) -> IndexedCandidates | None:
        """The indexed services that reference ``secret``; ``None`` when ``secret.region`` has
        no index a full scan built within ``max_age`` of ``now``."""
        built = self.built_at(secret.region)
        if built is None or utc(now or _now()) - built > self.max_age:
            return None
        wanted = lookup_keys(secret)
        members = self._members([keys.index_secret(k, s) for k in wanted for s in range(SHARDS)])
        items = self._services(sorted(members))
        services = [
            IndexedService(
                arn,
                str(item.get("cluster", "")),
                tuple(str(t) for t in item.get("task_definitions", [])),
            )
            for arn, item in sorted(items.items())
            # the item is the truth (a tombstone names no secret)
            if not item.get("forgotten") and set(item.get("secrets", [])) & set(wanted)
        ]
        return IndexedCandidates(secret, built, tuple(services))

    def rebuild(
        self,
        region: str,
        services: Iterable[tuple[str, str, Sequence[TaskDefinitionSummary]]],
        built_at: datetime,
        *,
        workers: int = REBUILD_WORKERS,
    ) -> None:
        """Replace what the index holds for ``region`` with what a full scan found
        (``(service ARN, cluster ARN, task definitions)``), then record ``built_at``: when the
        scan began. A service recorded after ``built_at`` (by an event the scan may predate)
        keeps its record; one the scan did not find is forgotten. Only what changed is written,
        ``workers`` services at a time; an error stops the rebuild before ``built_at`` is
        recorded (a half-done rebuild is not trusted)."""
        built_at = utc(built_at)
        started = _micros(built_at)
        held = {str(item["service"]): item for item in self._region_items(region)}
        changes: list[tuple[str, Decide, dict[str, Any] | None]] = []
        found: set[str] = set()
        for service_arn, cluster_arn, task_definitions in services:
            found.add(service_arn)
            wanted = self._service_item(service_arn, cluster_arn, task_definitions, built_at)

            def decide(
                old: dict[str, Any] | None, wanted: dict[str, Any] = wanted
            ) -> dict[str, Any] | _Unchanged | None:
                if old is not None and int(old.get("recorded_at", 0)) > started:
                    return UNCHANGED
                return UNCHANGED if _same(old, wanted) else wanted

            if decide(held.get(service_arn)) is not UNCHANGED:
                changes.append((service_arn, decide, held.get(service_arn)))
        for service_arn, item in held.items():
            if service_arn in found or item.get("forgotten"):
                continue
            tombstone = self._tombstone(service_arn, built_at)

            def gone(
                old: dict[str, Any] | None, tombstone: dict[str, Any] = tombstone
            ) -> dict[str, Any] | _Unchanged | None:
                if old is None or old.get("forgotten"):
                    return UNCHANGED
                if int(old.get("recorded_at", 0)) > started:
                    return UNCHANGED  # created after the scan began
                return tombstone

            changes.append((service_arn, gone, item))
        if changes:
            with ThreadPoolExecutor(
                max(1, min(workers, len(changes))), thread_name_prefix="rotor-index"
            ) as pool:
                list(pool.map(lambda change: self._apply(*change), changes))
        self._set_built(region, built_at)

    def built_at(self, region: str) -> datetime | None:
        """When a full scan last rebuilt ``region``'s index; ``None``: never."""
        item = self._get(keys.index_built(region))
        if not item or "built_at" not in item:
            return None
        return codec.from_micros(int(item["built_at"]))

    # --- the rules ----------------------------------------------------------------------

    def _service_item(
        self,
        service_arn: str,
        cluster_arn: str,
        task_definitions: Sequence[TaskDefinitionSummary],
        at: datetime,
    ) -> dict[str, Any]:
        return {
            "kind": SERVICE_KIND,
            "service": service_arn,
            "cluster": cluster_arn,
            "region": region_of(service_arn),
            "task_definitions": list(dict.fromkeys(td.arn for td in task_definitions)),
            "secrets": referenced_keys(task_definitions),
            "recorded_at": _micros(at),
        }

    def _tombstone(self, service_arn: str, at: datetime) -> dict[str, Any]:
        return {
            "kind": SERVICE_KIND,
            "service": service_arn,
            "region": region_of(service_arn),
            "forgotten": True,
            "secrets": [],
            "task_definitions": [],
            "recorded_at": _micros(at),
            codec.EXPIRES_ATTRIBUTE: codec.seconds(at + keys.INDEX_FORGOTTEN_KEEP),
        }

    def _apply(
        self, service_arn: str, decide: Decide, held: dict[str, Any] | _Unchanged | None = UNCHANGED
    ) -> None:
        """Decide on the service's item (``held``: as a scan already read it) and commit the
        change with its set changes, over the revision read; again on conflict."""
        shard = shard_of(service_arn)
        for _ in range(CONFLICT_ATTEMPTS):
            old = self._services([service_arn]).get(service_arn) if held is UNCHANGED else held
            assert not isinstance(old, _Unchanged)
            held = UNCHANGED  # after a conflict, read again
            new = decide(old)
            if isinstance(new, _Unchanged):
                return
            before = set(old.get("secrets", [])) if old else set()
            after = set(new.get("secrets", [])) if new else set()
            change = _Change(
                service_arn,
                new,
                int((old or {}).get(VERSION_ATTRIBUTE, 0)),
                tuple(keys.index_secret(k, shard) for k in sorted(after)),  # re-added: heals
                tuple(keys.index_secret(k, shard) for k in sorted(before - after)),
            )
            if self._commit(change):
                return
        raise RetryableAwsError(
            "TransactWriteItems", "Conflict", f"{service_arn} kept changing in the index"
        )

    # --- what a backend stores ------------------------------------------------------------

    @abstractmethod
    def _services(self, service_arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The service items held for ``service_arns`` (tombstones too), by ARN."""

    @abstractmethod
    def _region_items(self, region: str) -> list[dict[str, Any]]:
        """Every service item (tombstones too) of ``region``."""

    @abstractmethod
    def _members(self, set_keys: Sequence[str]) -> set[str]:
        """The union of the sets at ``set_keys``."""

    @abstractmethod
    def _commit(self, change: _Change) -> bool:
        """Apply ``change`` all at once if the service item is still at ``change.revision``;
        False when it is not (nothing written)."""

    @abstractmethod
    def _get(self, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def _set_built(self, region: str, built_at: datetime) -> None:
        """Record ``built_at`` unless a later one is recorded."""


class MemoryConsumerIndex(ConsumerIndex):
    """One process's index (``rotor replay`` without a table, the demo, the tests)."""

    def __init__(self, max_age: timedelta = DEFAULT_MAX_AGE) -> None:
        super().__init__(max_age)
        self._items: dict[str, dict[str, Any]] = {}
        self._sets: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def with_retry(self, retry: RetryPolicy) -> MemoryConsumerIndex:
        return self  # makes no AWS call

    def _services(self, service_arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            found = {arn: self._items.get(keys.index_service(arn)) for arn in service_arns}
            return {arn: dict(item) for arn, item in found.items() if item is not None}

    def _region_items(self, region: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(item)
                for item in self._items.values()
                if item.get("kind") == SERVICE_KIND and item.get("region") == region
            ]

    def _members(self, set_keys: Sequence[str]) -> set[str]:
        with self._lock:
            return {arn for key in set_keys for arn in self._sets.get(key, ())}

    def _commit(self, change: _Change) -> bool:
        key = keys.index_service(change.service_arn)
        with self._lock:
            if int(self._items.get(key, {}).get(VERSION_ATTRIBUTE, 0)) != change.revision:
                return False
            if change.item is None:
                self._items.pop(key, None)
            else:
                self._items[key] = {
                    **change.item,
                    KEY_ATTRIBUTE: key,
                    VERSION_ATTRIBUTE: change.revision + 1,
                }
            for set_key in change.add:
                self._sets.setdefault(set_key, set()).add(change.service_arn)
            for set_key in change.remove:
                self._sets.get(set_key, set()).discard(change.service_arn)
        return True

    def _get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._items.get(key)
            return dict(item) if item is not None else None

    def _set_built(self, region: str, built_at: datetime) -> None:
        key = keys.index_built(region)
        with self._lock:
            held = int(self._items.get(key, {}).get("built_at", 0))
            if _micros(built_at) > held:
                self._items[key] = {"kind": BUILT_KIND, "built_at": _micros(built_at)}


class DynamoDbConsumerIndex(ConsumerIndex):
    """The state table's index, shared by every container. Reads are consistent
    (``ConsistentRead``); every call goes through the retry policy."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        retry: RetryPolicy,
        max_age: timedelta = DEFAULT_MAX_AGE,
    ) -> None:
        super().__init__(max_age)
        self._client = client
        self._table = table
        self._retry = retry
        #: the table's single reads and scans, as every other kind of item is read
        self._items = DynamoDbStateStore(client, table, retry)

    def with_retry(self, retry: RetryPolicy) -> DynamoDbConsumerIndex:
        return DynamoDbConsumerIndex(self._client, self._table, retry, self.max_age)

    def _services(self, service_arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        items = self._batch_get([keys.index_service(arn) for arn in service_arns])
        return {str(item["service"]): item for item in items if item.get("kind") == SERVICE_KIND}

    def _region_items(self, region: str) -> list[dict[str, Any]]:
        return self._items.scan(
            "#kind = :kind AND #region = :region",
            {"#kind": "kind", "#region": "region"},
            {":kind": SERVICE_KIND, ":region": region},
            consistent=True,
        )

    def _members(self, set_keys: Sequence[str]) -> set[str]:
        return {
            str(arn)
            for item in self._batch_get(set_keys)
            for arn in item.get("services", ())  # a string set: gone once empty
        }

    def _commit(self, change: _Change) -> bool:
        key = keys.index_service(change.service_arn)
        member = codec.encode({":arn": {change.service_arn}})[":arn"]
        sets: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": codec.key(set_key),
                    "UpdateExpression": "ADD #services :arn SET #kind = :kind",
                    "ExpressionAttributeNames": {"#services": "services", "#kind": "kind"},
                    "ExpressionAttributeValues": {
                        ":arn": member,
                        **codec.encode({":kind": SECRET_KIND}),
                    },
                }
            }
            for set_key in change.add
        ] + [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": codec.key(set_key),
                    "UpdateExpression": "DELETE #services :arn",
                    "ExpressionAttributeNames": {"#services": "services"},
                    "ExpressionAttributeValues": {":arn": member},
                }
            }
            for set_key in change.remove
        ]
        condition: dict[str, Any] = (
            {
                "ConditionExpression": "#revision = :revision",
                "ExpressionAttributeNames": {"#revision": VERSION_ATTRIBUTE},
                "ExpressionAttributeValues": codec.encode({":revision": change.revision}),
            }
            if change.revision
            else {
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": KEY_ATTRIBUTE},
            }
        )
        own: dict[str, Any]
        if change.item is None:
            own = {"Delete": {"TableName": self._table, "Key": codec.key(key), **condition}}
        else:
            item = {**change.item, KEY_ATTRIBUTE: key, VERSION_ATTRIBUTE: change.revision + 1}
            own = {"Put": {"TableName": self._table, "Item": codec.encode(item), **condition}}
        # Removals go inside the transaction first; additions that do not fit go before it
        # (an extra member is harmless: a lookup keeps a service only if its item names the
        # secret), removals that do not fit after it.
        room = TRANSACTION_ACTIONS - 1
        additions, removals = sets[: len(change.add)], sets[len(change.add) :]
        after, removals = removals[room:], removals[:room]
        fit = room - len(removals)
        before, inside = additions[fit:], removals + additions[:fit]
        for action in before:
            self._retry.call("UpdateItem", self._client.update_item, **action["Update"])
        try:
            self._retry.call(
                "TransactWriteItems",
                self._client.transact_write_items,
                TransactItems=[own, *inside],
            )
        except PermanentAwsError as exc:
            if exc.code == "TransactionCanceledException" and (
                "ConditionalCheckFailed" in exc.message or "TransactionConflict" in exc.message
            ):
                return False
            raise
        for action in after:
            self._retry.call("UpdateItem", self._client.update_item, **action["Update"])
        return True

    def _get(self, key: str) -> dict[str, Any] | None:
        return self._items.get(key)

    def _set_built(self, region: str, built_at: datetime) -> None:
        item = {
            KEY_ATTRIBUTE: keys.index_built(region),
            "kind": BUILT_KIND,
            "region": region,
            "built_at": _micros(built_at),
        }
        try:
            self._retry.call(
                "PutItem",
                self._client.put_item,
                TableName=self._table,
                Item=codec.encode(item),
                ConditionExpression="attribute_not_exists(#built) OR #built < :built",
                ExpressionAttributeNames={"#built": "built_at"},
                ExpressionAttributeValues=codec.encode({":built": _micros(built_at)}),
            )
        except PermanentAwsError as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise
            log.info("index of %s: a later rebuild is already recorded", region)

    def _batch_get(self, item_keys: Sequence[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        distinct = list(dict.fromkeys(item_keys))
        for start in range(0, len(distinct), BATCH_GET):
            request: Mapping[str, Any] = {
                self._table: {
                    "Keys": [codec.key(k) for k in distinct[start : start + BATCH_GET]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(CONFLICT_ATTEMPTS):
                answer = self._retry.call(
                    "BatchGetItem", self._client.batch_get_item, RequestItems=request
                )
                found.extend(
                    codec.decode(i) for i in answer.get("Responses", {}).get(self._table, [])
                )
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RetryableAwsError(
                    "BatchGetItem", "UnprocessedKeys", "the table kept keys unread"
                )
        return found


def _same(old: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """The item already says what ``wanted`` says (its time aside)."""
    if old is None or old.get("forgotten"):
        return False
    return all(
        old.get(name) == wanted.get(name) for name in ("cluster", "task_definitions", "secrets")
    )


def _micros(moment: datetime) -> int:
    return codec.micros(moment)


def _now() -> datetime:
    return datetime.now(UTC)
