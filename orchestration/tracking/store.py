"""What rotor remembers about rollouts: rotations, each consumer's status, the deployments rotor
started, and the counters behind the pacing policies (flap guard, per-cluster cap).

In memory (one process: ``rotor replay``, the demo, a Lambda without a state table) or in the
DynamoDB state table (``ROTOR_STATE_TABLE``, key ``pk``, TTL ``expires_at``), shared by every
container. Items:

* ``rotation#<secret ARN>@<version>`` (``@<time>`` for a secret rotor cannot describe):
  ``secret``, ``version``, ``rotated_at``, ``recorded_at``; kept 14 days;
* ``status#<rotation id>#<service ARN>``: one consumer's ``status``, ``detail``, ``at``,
  ``cluster``, ``deployment``; kept 14 days. One item per consumer, so a rotation of
  thousands of consumers stays far below DynamoDB's 400 KB item limit. A status is written
  only over one it may replace (``may_replace``), conditionally on the status it read: it
  never moves backwards;
* ``deployment#<deployment id>``: the rotation, secret and service a deployment rotor started
  belongs to, so the tracker follows only rotor's own deployments; kept 2 days;
* ``latest-deployment#<service ARN>``: the same, for the last deployment rotor started of the
  service: the end of a deployment that superseded it ends it too; kept 2 days;
* ``flap#<service ARN>``: when rotor forced a deployment of the service in the last hour;
* ``rollouts#<cluster ARN>``: the services of the cluster rotor is redeploying now, each with a
  lease (a deployment whose end rotor never hears of frees its slot when the lease ends).

Counters are read, changed and written back under a version condition, retried on conflict.

In DynamoDB, what only informs (rotations, statuses) and the pacing counters are best effort:
one attempt each, and a failure is logged, never raised. A table that cannot answer right away
must not hold up a redeploy, which the redeploy ledger already makes happen once; the pacing
policies then let the job through (they fail open). The record of a deployment rotor started,
which the tracker needs, goes through the retry policy and is logged if it still fails.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from orchestration.aws.retry import RetryPolicy, to_rotor_error
from orchestration.errors import AwsCallError, ConditionFailed, RetryableAwsError
from orchestration.times import iso, utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

ROTATION_KEEP = timedelta(days=14)
DEPLOYMENT_KEEP = timedelta(days=2)
ROLLOUT_LEASE = timedelta(minutes=30)  # a deployment nobody reports on frees its slot then
_CONFLICT_ATTEMPTS = 20


class RolloutSlot(StrEnum):
    """The answer to a request for one of a cluster's rollout slots."""

    TAKEN = "taken"  # this request took a free slot: the caller frees it if it deploys nothing
    HELD = "held"  # the service already held one (another job's deployment): not the caller's
    FULL = "full"  # the cluster is at its cap: wait

    @property
    def let_through(self) -> bool:
        return self is not RolloutSlot.FULL


class Status(StrEnum):
    PLANNED = "planned"
    QUEUED = "queued"
    DEPLOYING = "deploying"
    FRESH = "fresh"
    FAILED = "failed"
    SKIPPED = "skipped"


#: The statuses each status may replace (besides none at all). A status never moves back:
#: "queued" never replaces what a worker already decided, "skipped" never replaces a deployment
#: under way or done. A deployment rotor starts replaces any status of another deployment (a
#: rollback to this value, a redeploy after a failure); the end of a deployment replaces only
#: that deployment's "deploying" (or what was written before it, if that write was lost).
_MOVES: dict[Status, frozenset[Status]] = {
    Status.PLANNED: frozenset(),
    Status.QUEUED: frozenset({Status.PLANNED, Status.QUEUED}),
    Status.SKIPPED: frozenset({Status.PLANNED, Status.QUEUED, Status.SKIPPED}),
    Status.DEPLOYING: frozenset({Status.PLANNED, Status.QUEUED, Status.SKIPPED}),
    Status.FAILED: frozenset({Status.PLANNED, Status.QUEUED, Status.SKIPPED, Status.FAILED}),
    Status.FRESH: frozenset({Status.PLANNED, Status.QUEUED, Status.SKIPPED}),
}
#: Statuses that name a deployment: a write about that same deployment may replace them.
_OF_A_DEPLOYMENT = frozenset({Status.DEPLOYING, Status.FRESH, Status.FAILED})


def may_replace(old: ServiceStatus | None, new: ServiceStatus) -> bool:
    """Whether ``new`` may replace the service's status ``old`` (``None``: none yet)."""
    if old is None:
        return True
    if old.status in _MOVES[new.status]:
        return True
    if old.status not in _OF_A_DEPLOYMENT or new.deployment_id is None:
        return False
    if new.status is Status.DEPLOYING:
        return new.deployment_id != old.deployment_id  # another deployment of rotor's
    # The end of a deployment: only of the one the status names, and only once.
    return old.status is Status.DEPLOYING and new.deployment_id == old.deployment_id


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    status: Status
    detail: str
    at: datetime
    cluster_arn: str = ""
    deployment_id: str | None = None

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "status": self.status.value,
            "detail": self.detail,
            "at": iso(self.at),
            "cluster": self.cluster_arn,
        }
        if self.deployment_id:
            item["deployment"] = self.deployment_id
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> ServiceStatus:
        return cls(
            Status(str(item["status"])),
            str(item.get("detail", "")),
            _parse_iso(str(item["at"])),
            str(item.get("cluster", "")),
            str(item["deployment"]) if item.get("deployment") else None,
        )


@dataclass(frozen=True, slots=True)
class StoredRotation:
    rotation_id: str
    secret_arn: str
    version: str | None
    rotated_at: datetime
    recorded_at: datetime
    services: dict[str, ServiceStatus] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    deployment_id: str
    rotation_id: str
    service_arn: str
    cluster_arn: str
    rotated_at: datetime
    secret_arn: str  # the secret whose new value the deployment is for


class RolloutStore(Protocol):
    #: Kept beyond this process (the state table ``rotor status`` reads).
    durable: bool

    def with_retry(self, retry: RetryPolicy) -> RolloutStore:
        """The same records, reached through ``retry`` (an invocation's deadline)."""
        ...

    def record_rotation(
        self, rotation_id: str, secret_arn: str, version: str | None, rotated_at: datetime
    ) -> None:
        """Remember a rotation (again: a second delivery changes nothing)."""
        ...

    def set_status(
        self,
        rotation_id: str,
        service_arn: str,
        status: ServiceStatus,
        *,
        only_if_new: bool = False,
    ) -> None:
        """The service's status in the rotation; ``only_if_new`` keeps one already set."""
        ...

    def record_deployment(self, record: DeploymentRecord) -> None: ...

    def deployment(self, deployment_id: str) -> DeploymentRecord | None: ...

    def latest_deployment(self, service_arn: str) -> DeploymentRecord | None:
        """The last deployment rotor started of the service (kept as long as deployments)."""
        ...

    def rotations(self, since: datetime, secret: str | None = None) -> list[StoredRotation]:
        """Rotations recorded since ``since`` (of ``secret``: its ARN or name), newest first."""
        ...

    def take_redeploy_slot(
        self, service_arn: str, now: datetime, limit: int, window: timedelta
    ) -> bool:
        """Count one forced deployment of the service unless ``limit`` are already counted in
        the ``window`` before ``now`` (then return False)."""
        ...

    def give_back_redeploy_slot(self, service_arn: str, at: datetime) -> None: ...

    def take_rollout_slot(
        self, cluster_arn: str, service_arn: str, now: datetime, limit: int
    ) -> RolloutSlot:
        """Hold one of the cluster's ``limit`` rollout slots for the service. A service that
        holds one already keeps it (``HELD``: a duplicate job must not free another's slot)."""
        ...

    def free_rollout_slot(self, cluster_arn: str, service_arn: str) -> None: ...

    def overdue_rollouts(self, cluster_arn: str, now: datetime) -> list[str]:
        """The services of the cluster whose slot's lease has ended (see ``cap_policy``)."""
        ...

    def renew_rollout_slot(self, cluster_arn: str, service_arn: str, now: datetime) -> None:
        """A held slot's rollout still runs: it is held until ``ROLLOUT_RECHECK`` after ``now``."""
        ...


# --- the pacing policies: pure functions, applied alike by both backends -------------------

#: A hold whose lease ended this long ago is dropped even if nobody could check its rollout.
ROLLOUT_HOLD_MAX = timedelta(hours=6)
#: A slot whose rollout ECS says still runs is looked at again after this long.
ROLLOUT_RECHECK = timedelta(minutes=5)


def flap_policy(
    times: list[int], now: datetime, limit: int, window: timedelta
) -> tuple[list[int] | None, bool]:
    """The flap guard on the times (epoch ms) rotor forced a deployment of one service: the
    new times (``None``: unchanged) and whether one more is allowed now."""
    recent = [t for t in times if t > _ms(now - window)]
    if len(recent) >= limit:
        return None, False
    return [*recent, _ms(now)], True


def cap_policy(
    held: Mapping[str, int], service_arn: str, now: datetime, limit: int
) -> tuple[dict[str, int] | None, RolloutSlot]:
    """The cluster cap on the services holding a slot (service -> end of its lease, epoch ms):
    the new holds (``None``: unchanged) and the answer. A hold whose lease has ended still
    counts until someone has asked ECS whether its rollout still runs (``overdue``), or until
    ``ROLLOUT_HOLD_MAX`` after its end."""
    live = {s: int(u) for s, u in held.items() if int(u) > _ms(now - ROLLOUT_HOLD_MAX)}
    if service_arn in live:
        return (live if len(live) != len(held) else None), RolloutSlot.HELD
    if len(live) >= limit:
        return (live if len(live) != len(held) else None), RolloutSlot.FULL
    return {**live, service_arn: _ms(now + ROLLOUT_LEASE)}, RolloutSlot.TAKEN


def overdue(held: Mapping[str, int], now: datetime) -> list[str]:
    """The services whose hold's lease has ended: nobody reported the end of their rollout."""
    return sorted(s for s, until in held.items() if int(until) <= _ms(now))


def status_key(rotation_id: str, service_arn: str) -> str:
    return f"status#{rotation_id}#{service_arn}"


def _parse_iso(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _ms(moment: datetime) -> int:
    return int(utc(moment).timestamp() * 1000)


def _matches(secret: str | None, record: StoredRotation) -> bool:
    if secret is None:
        return True
    name = record.secret_arn.split(":secret:", 1)[-1]
    return secret in (record.secret_arn, name) or name.rsplit("-", 1)[0] == secret


# --- in memory ----------------------------------------------------------------------------


class MemoryRolloutStore:
    durable = False

    def with_retry(self, retry: RetryPolicy) -> MemoryRolloutStore:
        return self  # makes no AWS call

    def __init__(self) -> None:
        self._rotations: dict[str, StoredRotation] = {}
        self._deployments: dict[str, DeploymentRecord] = {}
        self._latest: dict[str, DeploymentRecord] = {}
        self._flaps: dict[str, list[int]] = {}  # epoch ms, as in DynamoDB
        self._rollouts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def record_rotation(
        self, rotation_id: str, secret_arn: str, version: str | None, rotated_at: datetime
    ) -> None:
        with self._lock:
            if rotation_id not in self._rotations:
                self._rotations[rotation_id] = StoredRotation(
                    rotation_id,
                    secret_arn,
                    version,
                    _parse_iso(iso(rotated_at)),
                    _parse_iso(iso(datetime.now(UTC))),
                )

    def set_status(
        self,
        rotation_id: str,
        service_arn: str,
        status: ServiceStatus,
        *,
        only_if_new: bool = False,
    ) -> None:
        with self._lock:
            record = self._rotations.get(rotation_id)
            if record is None:
                return
            old = record.services.get(service_arn)
            if (only_if_new and old is not None) or not may_replace(old, status):
                return
            record.services[service_arn] = status

    def record_deployment(self, record: DeploymentRecord) -> None:
        # Times as the state table keeps them (whole seconds): one codec for both backends.
        record = replace(record, rotated_at=_parse_iso(iso(record.rotated_at)))
        with self._lock:
            self._deployments[record.deployment_id] = record
            self._latest[record.service_arn] = record

    def latest_deployment(self, service_arn: str) -> DeploymentRecord | None:
        with self._lock:
            return self._latest.get(service_arn)

    def deployment(self, deployment_id: str) -> DeploymentRecord | None:
        with self._lock:
            return self._deployments.get(deployment_id)

    def rotations(self, since: datetime, secret: str | None = None) -> list[StoredRotation]:
        with self._lock:
            found = [
                StoredRotation(
                    r.rotation_id,
                    r.secret_arn,
                    r.version,
                    r.rotated_at,
                    r.recorded_at,
                    dict(r.services),
                )
                for r in self._rotations.values()
                if r.rotated_at >= utc(since) and _matches(secret, r)
            ]
        return sorted(found, key=lambda r: r.rotated_at, reverse=True)

    def take_redeploy_slot(
        self, service_arn: str, now: datetime, limit: int, window: timedelta
    ) -> bool:
        with self._lock:
            times, allowed = flap_policy(self._flaps.get(service_arn, []), now, limit, window)
            if times is not None:
                self._flaps[service_arn] = times
            return allowed

    def give_back_redeploy_slot(self, service_arn: str, at: datetime) -> None:
        with self._lock:
            times = self._flaps.get(service_arn, [])
            if _ms(at) in times:
                times.remove(_ms(at))

    def take_rollout_slot(
        self, cluster_arn: str, service_arn: str, now: datetime, limit: int
    ) -> RolloutSlot:
        with self._lock:
            held, answer = cap_policy(self._rollouts.get(cluster_arn, {}), service_arn, now, limit)
            if held is not None:
                self._rollouts[cluster_arn] = held
            return answer

    def free_rollout_slot(self, cluster_arn: str, service_arn: str) -> None:
        with self._lock:
            self._rollouts.get(cluster_arn, {}).pop(service_arn, None)

    def overdue_rollouts(self, cluster_arn: str, now: datetime) -> list[str]:
        with self._lock:
            return overdue(self._rollouts.get(cluster_arn, {}), now)

    def renew_rollout_slot(self, cluster_arn: str, service_arn: str, now: datetime) -> None:
        with self._lock:
            held = self._rollouts.get(cluster_arn, {})
            if service_arn in held:
                held[service_arn] = _ms(now + ROLLOUT_RECHECK)


# --- DynamoDB -----------------------------------------------------------------------------

_Answer = TypeVar("_Answer")
_SERIALIZE = TypeSerializer().serialize
_DESERIALIZE = TypeDeserializer().deserialize


def _to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _SERIALIZE(value) for key, value in values.items()}


def _from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _DESERIALIZE(value) for key, value in item.items()}


class DynamoDbRolloutStore:
    durable = True

    def __init__(self, client: DynamoDBClient, table: str, retry: RetryPolicy) -> None:
        self._client = client
        self._table = table
        self._retry = retry

    def with_retry(self, retry: RetryPolicy) -> DynamoDbRolloutStore:
        return DynamoDbRolloutStore(self._client, self._table, retry)

    # rotations and statuses

    def record_rotation(
        self, rotation_id: str, secret_arn: str, version: str | None, rotated_at: datetime
    ) -> None:
        now = datetime.now(UTC)
        self._best_effort(
            f"record rotation {rotation_id}",
            "UpdateItem",
            self._client.update_item,
            TableName=self._table,
            Key={"pk": {"S": f"rotation#{rotation_id}"}},
            UpdateExpression=(
                "SET #kind = :kind, secret = if_not_exists(secret, :secret), "
                "version = if_not_exists(version, :version), "
                "rotated_at = if_not_exists(rotated_at, :rotated), "
                "recorded_at = if_not_exists(recorded_at, :now), expires_at = :expires"
            ),
            ExpressionAttributeNames={"#kind": "kind"},
            ExpressionAttributeValues=_to_item(
                {
                    ":kind": "rotation",
                    ":secret": secret_arn,
                    ":version": version or "",
                    ":rotated": iso(rotated_at),
                    ":now": iso(now),
                    ":expires": int((now + ROTATION_KEEP).timestamp()),
                }
            ),
        )

    def set_status(
        self,
        rotation_id: str,
        service_arn: str,
        status: ServiceStatus,
        *,
        only_if_new: bool = False,
    ) -> None:
        # One item per (rotation, service): a rotation with thousands of consumers stays far
        # below DynamoDB's 400 KB item limit.
        pk = status_key(rotation_id, service_arn)
        try:
            for _ in range(_CONFLICT_ATTEMPTS):
                held = self._get(pk)
                old = ServiceStatus.from_item(held) if held else None
                if (only_if_new and old is not None) or not may_replace(old, status):
                    return
                # Written only over the status just read: a status never moves backwards.
                if held is None:
                    condition = "attribute_not_exists(pk)"
                    values: dict[str, Any] = {}
                else:
                    condition = "#status = :old_status AND #at = :old_at"
                    values = {":old_status": held["status"], ":old_at": held["at"]}
                try:
                    self._once(
                        "PutItem",
                        self._client.put_item,
                        TableName=self._table,
                        Item=_to_item(
                            {
                                **status.to_item(),
                                "pk": pk,
                                "kind": "status",
                                "rotation": rotation_id,
                                "service": service_arn,
                                "expires_at": _epoch(datetime.now(UTC) + ROTATION_KEEP),
                            }
                        ),
                        ConditionExpression=condition,
                        **(
                            {
                                "ExpressionAttributeNames": {"#status": "status", "#at": "at"},
                                "ExpressionAttributeValues": _to_item(values),
                            }
                            if values
                            else {}
                        ),
                    )
                    return
                except ConditionFailed:
                    continue  # changed in between: read again
        except AwsCallError as exc:
            log.warning("could not record the status of %s: %s", service_arn, exc)

    def record_deployment(self, record: DeploymentRecord) -> None:
        now = datetime.now(UTC)
        attributes = {
            "deployment": record.deployment_id,
            "rotation": record.rotation_id,
            "service": record.service_arn,
            "cluster": record.cluster_arn,
            "rotated_at": iso(record.rotated_at),
            "secret": record.secret_arn,
            "expires_at": int((now + DEPLOYMENT_KEEP).timestamp()),
        }
        # Under its id (the tracker follows it) and as the service's latest (a deployment that
        # supersedes it ends it: ECS never reports the end of a superseded one).
        for pk, kind in (
            (f"deployment#{record.deployment_id}", "deployment"),
            (f"latest-deployment#{record.service_arn}", "latest-deployment"),
        ):
            self._best_effort(
                f"record deployment {record.deployment_id}",
                "PutItem",
                self._client.put_item,
                retried=True,
                TableName=self._table,
                Item=_to_item({**attributes, "pk": pk, "kind": kind}),
            )

    def deployment(self, deployment_id: str) -> DeploymentRecord | None:
        return self._deployment(f"deployment#{deployment_id}")

    def latest_deployment(self, service_arn: str) -> DeploymentRecord | None:
        return self._deployment(f"latest-deployment#{service_arn}")

    def _deployment(self, pk: str) -> DeploymentRecord | None:
        item = self._get(pk, retried=True)
        if item is None:
            return None
        return DeploymentRecord(
            str(item.get("deployment") or pk.removeprefix("deployment#")),
            str(item["rotation"]),
            str(item["service"]),
            str(item["cluster"]),
            _parse_iso(str(item["rotated_at"])),
            str(item.get("secret", "")),  # "" in records written before it was kept
        )

    def rotations(self, since: datetime, secret: str | None = None) -> list[StoredRotation]:
        found: dict[str, StoredRotation] = {}
        statuses: dict[str, dict[str, ServiceStatus]] = {}
        start: dict[str, Any] | None = None
        while True:
            page = self._retry.call(
                "Scan",
                self._client.scan,
                TableName=self._table,
                FilterExpression=(
                    "(#kind = :rotation AND rotated_at >= :since) OR #kind = :status"
                ),
                ExpressionAttributeNames={"#kind": "kind"},
                ExpressionAttributeValues=_to_item(
                    {":rotation": "rotation", ":status": "status", ":since": iso(since)}
                ),
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for raw in page.get("Items", []):
                item = _from_item(raw)
                if item.get("kind") == "status":
                    statuses.setdefault(str(item["rotation"]), {})[str(item["service"])] = (
                        ServiceStatus.from_item(item)
                    )
                    continue
                record = StoredRotation(
                    str(item["pk"]).removeprefix("rotation#"),
                    str(item["secret"]),
                    str(item.get("version")) or None,
                    _parse_iso(str(item["rotated_at"])),
                    _parse_iso(str(item["recorded_at"])),
                    {  # statuses kept inside the rotation's item before they had their own
                        arn: ServiceStatus.from_item(value)
                        for arn, value in dict(item.get("services", {})).items()
                    },
                )
                if _matches(secret, record):
                    found[record.rotation_id] = record
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        for rotation_id, record in found.items():
            record.services.update(statuses.get(rotation_id, {}))
        return sorted(found.values(), key=lambda r: r.rotated_at, reverse=True)

    # counters

    def take_redeploy_slot(
        self, service_arn: str, now: datetime, limit: int, window: timedelta
    ) -> bool:
        def change(item: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
            times, allowed = flap_policy(
                [int(t) for t in item.get("times", [])], now, limit, window
            )
            if times is None:
                return None, allowed
            return {"times": times, "expires_at": _epoch(now + window)}, allowed

        return self._counter(f"flap#{service_arn}", change, fail_open=True)

    def give_back_redeploy_slot(self, service_arn: str, at: datetime) -> None:
        def change(item: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
            times = [int(t) for t in item.get("times", [])]
            if _ms(at) not in times:
                return None, True
            times.remove(_ms(at))
            return {"times": times, "expires_at": item.get("expires_at", 0)}, True

        self._counter(f"flap#{service_arn}", change, fail_open=True)

    def take_rollout_slot(
        self, cluster_arn: str, service_arn: str, now: datetime, limit: int
    ) -> RolloutSlot:
        def change(item: dict[str, Any]) -> tuple[dict[str, Any] | None, RolloutSlot]:
            held, answer = cap_policy(dict(item.get("held", {})), service_arn, now, limit)
            return (None if held is None else _holds(held)), answer

        # Failing open takes nothing, so there is nothing for the caller to free.
        return self._counter(f"rollouts#{cluster_arn}", change, fail_open=RolloutSlot.HELD)

    def free_rollout_slot(self, cluster_arn: str, service_arn: str) -> None:
        def change(item: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
            held = {s: int(u) for s, u in dict(item.get("held", {})).items()}
            if held.pop(service_arn, None) is None:
                return None, True
            return _holds(held), True

        self._counter(f"rollouts#{cluster_arn}", change, fail_open=True)

    def overdue_rollouts(self, cluster_arn: str, now: datetime) -> list[str]:
        try:
            item = self._get(f"rollouts#{cluster_arn}") or {}
        except AwsCallError as exc:
            log.warning("could not read the rollouts of %s: %s", cluster_arn, exc)
            return []
        return overdue(dict(item.get("held", {})), now)

    def renew_rollout_slot(self, cluster_arn: str, service_arn: str, now: datetime) -> None:
        def change(item: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
            held = {s: int(u) for s, u in dict(item.get("held", {})).items()}
            if service_arn not in held:
                return None, True
            held[service_arn] = _ms(now + ROLLOUT_RECHECK)
            return _holds(held), True

        self._counter(f"rollouts#{cluster_arn}", change, fail_open=True)

    def _once(self, operation: str, call: Callable[..., Any], **params: Any) -> Any:
        """One attempt, no retry: for what is best effort."""
        try:
            return call(**params)
        except (ClientError, BotoCoreError) as exc:
            raise to_rotor_error(operation, exc) from exc

    def _best_effort(
        self,
        what: str,
        operation: str,
        call: Callable[..., Any],
        *,
        retried: bool = False,
        **params: Any,
    ) -> None:
        """The call, logged instead of raised when it fails: once, or under the retry policy."""
        try:
            if retried:
                self._retry.call(operation, call, **params)
            else:
                self._once(operation, call, **params)
        except AwsCallError as exc:
            log.warning("could not %s: %s", what, exc)

    def _counter(
        self,
        pk: str,
        change: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, _Answer]],
        *,
        fail_open: _Answer,
    ) -> _Answer:
        try:
            return self._update(pk, change)
        except AwsCallError as exc:
            log.warning(
                "could not read or update %s (the policy lets the job through): %s", pk, exc
            )
            return fail_open

    def _get(self, pk: str, *, retried: bool = False) -> dict[str, Any] | None:
        call = self._retry.call if retried else self._once
        answer = call(
            "GetItem",
            self._client.get_item,
            TableName=self._table,
            Key={"pk": {"S": pk}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return _from_item(item) if item else None

    def _update(
        self, pk: str, change: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, _Answer]]
    ) -> _Answer:
        """Read the item, apply ``change`` (new attributes or None to leave it, and the answer),
        write it back if nobody wrote in between; again on conflict."""
        for _ in range(_CONFLICT_ATTEMPTS):
            item = self._get(pk) or {}
            version = int(item.get("version", 0))
            attributes, answer = change(item)
            if attributes is None:
                return answer
            try:
                self._once(
                    "PutItem",
                    self._client.put_item,
                    TableName=self._table,
                    Item=_to_item({**attributes, "pk": pk, "version": version + 1}),
                    ConditionExpression="attribute_not_exists(pk) OR version = :version",
                    ExpressionAttributeValues=_to_item({":version": version}),
                )
            except ConditionFailed:
                continue  # written in between: read again
            return answer
        raise RetryableAwsError("PutItem", "Conflict", f"{pk} kept changing under rotor")


def _holds(held: Mapping[str, int]) -> dict[str, Any]:
    """A cluster's rollouts item: kept (TTL) until its last hold could be dropped."""
    last = max(held.values(), default=0)
    until = datetime.fromtimestamp(last / 1000, tz=UTC) + ROLLOUT_HOLD_MAX
    return {"held": dict(held), "expires_at": _epoch(until)}


def _epoch(moment: datetime) -> int:
    return int(utc(moment).timestamp())
