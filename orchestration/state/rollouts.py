"""What rotor remembers about rollouts: rotations, each consumer's status, the deployments rotor
started, and the counters behind the pacing policies (flap guard, per-cluster cap).

One class, ``RolloutStore``, over the state store's versioned ``update``
(``orchestration.state.store``): in memory (one process: ``rotor replay``, the demo, a Lambda
without a state table) or in the DynamoDB state table (``ROTOR_STATE_TABLE``, key ``pk``, TTL
``expires_at``), shared by every container. Every rule is written once; the two backends differ
only in where the items live. Items:

* ``rotation#<secret ARN>@<version>`` (``@<time>`` for a secret rotor cannot describe):
  ``secret``, ``version``, ``rotated_at``, ``recorded_at`` (the first delivery's); 14 days;
* ``status#<rotation id>#<service ARN>``: one consumer's ``status``, ``detail``, ``at``,
  ``cluster``, ``deployment``; 14 days. One item per consumer, so a rotation of thousands of
  consumers stays far below DynamoDB's 400 KB item limit. A status is written only over one it
  may replace (``may_replace``), in one versioned update: it never moves backwards;
* ``deployment#<deployment id>``: the rotation, secret and service a deployment rotor started
  belongs to, so the tracker follows only rotor's own deployments; 2 days;
* ``latest-deployment#<service ARN>``: the same, for the last deployment rotor started of the
  service: the end of a deployment that superseded it ends it too; 2 days;
* ``flap#<service ARN>``: when rotor forced a deployment of the service in the last hour;
* ``rollouts#<cluster ARN>``: the services of the cluster rotor is redeploying now, each with a
  lease; a hold whose lease ended is overdue until someone asks ECS (``cap_policy``).

What only informs (rotations, statuses) and the pacing counters are best effort: one attempt
each, and a failure is logged, never raised. A table that cannot answer right away must not
hold up a redeploy, which the redeploy ledger already makes happen once; the pacing policies
then let the job through (they fail open). The record of a deployment rotor started, which the
tracker needs, goes through the retry policy and is logged if it still fails.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import AwsCallError
from orchestration.state import codec, keys
from orchestration.state.store import DynamoDbStateStore, MemoryStateStore, StateStore
from orchestration.times import iso, utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

ROTATION_KEEP = keys.ROTATION_KEEP
DEPLOYMENT_KEEP = keys.DEPLOYMENT_KEEP
ROLLOUT_LEASE = timedelta(minutes=30)  # a deployment nobody reports on is looked at then

_Answer = TypeVar("_Answer")


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
    #: Who wrote the record: "" (an event rotor handled: ``rotated_at`` is the event's time),
    #: or the reconciler, which says how it knew the moment (``orchestration.reconcile``).
    source: str = ""


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    deployment_id: str
    rotation_id: str
    service_arn: str
    cluster_arn: str
    rotated_at: datetime
    secret_arn: str  # the secret whose new value the deployment is for
    #: When ECS created the deployment (``None``: not known). A deployment whose end is
    #: reported as of before then cannot have superseded it.
    created_at: datetime | None = None


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
    return keys.status(rotation_id, service_arn)


def _parse_iso(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _ms(moment: datetime) -> int:
    return int(utc(moment).timestamp() * 1000)


def _epoch(moment: datetime) -> int:
    """The TTL of an item kept until ``moment``: whole seconds, never before it."""
    return codec.seconds(codec.expiry(moment))


def _matches(secret: str | None, record: StoredRotation) -> bool:
    """Whether ``secret`` (a name, a partial or a full ARN) names the record's secret: names
    are compared whole, never by prefix. Only a full ARN's ``-XXXXXX`` suffix (six letters
    or digits) is dropped to compare: ``prod/db`` is not ``prod/db-admin``."""
    if secret is None:
        return True
    arn = record.secret_arn
    given, recorded = secret.split(":", 4), arn.split(":", 4)
    if len(given) == len(recorded) == 5 and given[0] == "arn":
        # A replica's rotation is recorded under the replica's ARN, which differs from its
        # primary's only in the region: an ARN names the secret in every region, as a name does.
        arn = ":".join([*recorded[:3], given[3], recorded[4]])
    name = arn.split(":secret:", 1)[-1]
    stem, dash, suffix = name.rpartition("-")
    if dash and stem and len(suffix) == 6 and suffix.isascii() and suffix.isalnum():
        return secret in (arn, name, stem, arn[: -len(suffix) - 1])
    return secret in (arn, name)


def _holds(held: Mapping[str, int]) -> dict[str, Any]:
    """A cluster's rollouts item: kept (TTL) until its last hold could be dropped."""
    last = max(held.values(), default=0)
    until = datetime.fromtimestamp(last / 1000, tz=UTC) + ROLLOUT_HOLD_MAX
    return {"kind": "rollouts", "held": dict(held), "expires_at": _epoch(until)}


def _deployment(item: Mapping[str, Any]) -> DeploymentRecord:
    return DeploymentRecord(
        str(item["deployment"]),
        str(item["rotation"]),
        str(item["service"]),
        str(item["cluster"]),
        _parse_iso(str(item["rotated_at"])),
        str(item.get("secret", "")),
        _parse_iso(str(item["created_at"])) if item.get("created_at") else None,
    )


class RolloutStore:
    def __init__(self, store: StateStore, retry: RetryPolicy, *, durable: bool) -> None:
        self._store = store  # through the retry policy: what the tracker needs
        #: One attempt: what is best effort (statuses, rotations, the pacing counters).
        self._once = store.with_retry(dataclasses.replace(retry, max_attempts=1))
        self._retry = retry
        #: Kept beyond this process (the state table ``rotor status`` reads).
        self.durable = durable

    def with_retry(self, retry: RetryPolicy) -> RolloutStore:
        """The same records, reached through ``retry`` (an invocation's deadline)."""
        clone = copy.copy(self)
        clone._store = self._store.with_retry(retry)
        clone._once = self._store.with_retry(dataclasses.replace(retry, max_attempts=1))
        clone._retry = retry
        return clone

    # rotations and statuses

    def record_rotation(
        self, rotation_id: str, secret_arn: str, version: str | None, rotated_at: datetime
    ) -> None:
        """Remember a rotation (again: a second delivery changes nothing)."""
        now = datetime.now(UTC)

        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            if item is not None:
                return None, None  # the first delivery's facts stand
            return {
                "kind": "rotation",
                "secret": secret_arn,
                "version": version or "",
                "rotated_at": iso(rotated_at),
                "recorded_at": iso(now),
                "expires_at": _epoch(now + ROTATION_KEEP),
            }, None

        self._best_effort(f"record rotation {rotation_id}", keys.rotation(rotation_id), change)

    def rotation(self, rotation_id: str) -> StoredRotation | None:
        """The rotation recorded under ``rotation_id`` (``<secret ARN>@<version>``), without
        its statuses; ``None`` when there is none (or it expired). One read, retried."""
        item = self._store.get(keys.rotation(rotation_id))
        if not item:
            return None
        return StoredRotation(
            rotation_id,
            str(item["secret"]),
            str(item.get("version")) or None,
            _parse_iso(str(item["rotated_at"])),
            _parse_iso(str(item["recorded_at"])),
            source=str(item.get("source", "")),
        )

    def remember_current(
        self,
        rotation_id: str,
        secret_arn: str,
        version: str,
        became_current_at: datetime,
        source: str,
    ) -> None:
        """The reconciler's record of a value that is current: like ``record_rotation`` (the
        first record's facts stand, whoever wrote it), and kept another ``ROTATION_KEEP`` from
        now, so that while the value stays current its record never expires and a pass never
        has to guess its moment again. Best effort."""
        now = datetime.now(UTC)

        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            if item is not None:
                return {**item, "expires_at": _epoch(now + ROTATION_KEEP)}, None
            return {
                "kind": "rotation",
                "secret": secret_arn,
                "version": version,
                # To the microsecond: a moment rotor saw itself (not an event's whole second),
                # so a deployment it made a moment later is not taken for an older one.
                "rotated_at": utc(became_current_at).isoformat(),
                "recorded_at": iso(now),
                "source": source,
                "expires_at": _epoch(now + ROTATION_KEEP),
            }, None

        self._best_effort(f"record rotation {rotation_id}", keys.rotation(rotation_id), change)

    def status(self, rotation_id: str, service_arn: str) -> ServiceStatus | None:
        """One consumer's status in the rotation (``None``: none recorded). One read, retried."""
        item = self._store.get(status_key(rotation_id, service_arn))
        return ServiceStatus.from_item(item) if item else None

    def set_status(
        self,
        rotation_id: str,
        service_arn: str,
        status: ServiceStatus,
        *,
        only_if_new: bool = False,
    ) -> None:
        """The service's status in the rotation, written only over one it may replace;
        ``only_if_new`` keeps one already set."""

        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, None]:
            old = ServiceStatus.from_item(item) if item else None
            if (only_if_new and old is not None) or not may_replace(old, status):
                return None, None
            return {
                **status.to_item(),
                "kind": "status",
                "rotation": rotation_id,
                "service": service_arn,
                "expires_at": _epoch(datetime.now(UTC) + ROTATION_KEEP),
            }, None

        self._best_effort(
            f"record the status of {service_arn}", status_key(rotation_id, service_arn), change
        )

    def rotations(self, since: datetime, secret: str | None = None) -> list[StoredRotation]:
        """Rotations recorded since ``since`` (of ``secret``: its ARN or name), newest first."""
        found: dict[str, StoredRotation] = {}
        statuses: dict[str, dict[str, ServiceStatus]] = {}
        for item in self._store.items({"rotation", "status"}):
            if item.get("kind") == "status":
                statuses.setdefault(str(item["rotation"]), {})[str(item["service"])] = (
                    ServiceStatus.from_item(item)
                )
                continue
            record = StoredRotation(
                keys.rotation_id(str(item[codec.KEY_ATTRIBUTE])),
                str(item["secret"]),
                str(item.get("version")) or None,
                _parse_iso(str(item["rotated_at"])),
                _parse_iso(str(item["recorded_at"])),
                {  # statuses kept inside the rotation's item before they had their own
                    arn: ServiceStatus.from_item(value)
                    for arn, value in dict(item.get("services", {})).items()
                },
            )
            if record.rotated_at >= utc(since) and _matches(secret, record):
                found[record.rotation_id] = record
        for rotation_id, record in found.items():
            record.services.update(statuses.get(rotation_id, {}))
        # Newest first; at one time (a primary's rotation and its replicas'), by secret ARN,
        # whatever order the table's Scan returned them in.
        by_secret = sorted(found.values(), key=lambda r: (r.secret_arn, r.rotation_id))
        return sorted(by_secret, key=lambda r: r.rotated_at, reverse=True)

    # deployments

    def record_deployment(self, record: DeploymentRecord) -> None:
        now = datetime.now(UTC)
        item = {
            "deployment": record.deployment_id,
            "rotation": record.rotation_id,
            "service": record.service_arn,
            "cluster": record.cluster_arn,
            "rotated_at": iso(record.rotated_at),
            "secret": record.secret_arn,
            "expires_at": _epoch(now + DEPLOYMENT_KEEP),
        }
        if record.created_at is not None:
            item["created_at"] = iso(record.created_at)
        # Under its id (the tracker follows it) and as the service's latest (a deployment that
        # supersedes it ends it: ECS never reports the end of a superseded one).
        for key, kind in (
            (keys.deployment(record.deployment_id), "deployment"),
            (keys.latest_deployment(record.service_arn), "latest-deployment"),
        ):
            written = {**item, "kind": kind}
            try:
                self._store.update(key, partial(_replace_with, written))
            except AwsCallError as exc:
                log.warning("could not record deployment %s: %s", record.deployment_id, exc)

    def deployment(self, deployment_id: str) -> DeploymentRecord | None:
        item = self._store.get(keys.deployment(deployment_id))
        return _deployment(item) if item else None

    def latest_deployment(self, service_arn: str) -> DeploymentRecord | None:
        """The last deployment rotor started of the service (kept as long as deployments)."""
        item = self._store.get(keys.latest_deployment(service_arn))
        return _deployment(item) if item else None

    # the pacing counters

    def take_redeploy_slot(
        self, service_arn: str, now: datetime, limit: int, window: timedelta
    ) -> bool:
        """Count one forced deployment of the service unless ``limit`` are already counted in
        the ``window`` before ``now`` (then return False)."""

        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
            times = [int(t) for t in (item or {}).get("times", [])]
            kept, allowed = flap_policy(times, now, limit, window)
            if kept is None:
                return None, allowed
            return {"kind": "flap", "times": kept, "expires_at": _epoch(now + window)}, allowed

        return self._counter(keys.flap(service_arn), change, fail_open=True)

    def give_back_redeploy_slot(self, service_arn: str, at: datetime) -> None:
        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
            times = [int(t) for t in (item or {}).get("times", [])]
            if item is None or _ms(at) not in times:
                return None, True
            times.remove(_ms(at))
            return {**item, "times": times}, True

        self._counter(keys.flap(service_arn), change, fail_open=True)

    def take_rollout_slot(
        self, cluster_arn: str, service_arn: str, now: datetime, limit: int
    ) -> RolloutSlot:
        """Hold one of the cluster's ``limit`` rollout slots for the service. A service that
        holds one already keeps it (``HELD``: a duplicate job must not free another's slot)."""

        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, RolloutSlot]:
            held, answer = cap_policy(_held(item), service_arn, now, limit)
            return (None if held is None else _holds(held)), answer

        # Failing open takes nothing, so there is nothing for the caller to free.
        return self._counter(keys.rollouts(cluster_arn), change, fail_open=RolloutSlot.HELD)

    def free_rollout_slot(self, cluster_arn: str, service_arn: str) -> None:
        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
            held = _held(item)
            if held.pop(service_arn, None) is None:
                return None, True
            return _holds(held), True

        self._counter(keys.rollouts(cluster_arn), change, fail_open=True)

    def overdue_rollouts(self, cluster_arn: str, now: datetime) -> list[str]:
        """The services of the cluster whose slot's lease has ended (see ``cap_policy``)."""
        try:
            return overdue(_held(self._once.get(keys.rollouts(cluster_arn))), now)
        except AwsCallError as exc:
            log.warning("could not read the rollouts of %s: %s", cluster_arn, exc)
            return []

    def renew_rollout_slot(self, cluster_arn: str, service_arn: str, now: datetime) -> None:
        """A held slot's rollout still runs: it is held until ``ROLLOUT_RECHECK`` after ``now``."""

        def change(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
            held = _held(item)
            if service_arn not in held:
                return None, True
            held[service_arn] = _ms(now + ROLLOUT_RECHECK)
            return _holds(held), True

        self._counter(keys.rollouts(cluster_arn), change, fail_open=True)

    # best effort

    def _best_effort(
        self,
        what: str,
        key: str,
        change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, None]],
    ) -> None:
        try:
            self._once.update(key, change)
        except AwsCallError as exc:
            log.warning("could not %s: %s", what, exc)

    def _counter(
        self,
        key: str,
        change: Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, _Answer]],
        *,
        fail_open: _Answer,
    ) -> _Answer:
        try:
            return self._once.update(key, change)
        except AwsCallError as exc:
            log.warning(
                "could not read or update %s (the policy lets the job through): %s", key, exc
            )
            return fail_open


def _replace_with(
    written: dict[str, Any], _: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, None]:
    return written, None


def _held(item: Mapping[str, Any] | None) -> dict[str, int]:
    return {s: int(u) for s, u in dict((item or {}).get("held", {})).items()}


class MemoryRolloutStore(RolloutStore):
    """One process's records (``rotor replay``, the demo, a Lambda without a state table)."""

    def __init__(self, store: StateStore | None = None) -> None:
        super().__init__(store or MemoryStateStore(), RetryPolicy(), durable=False)

    def with_retry(self, retry: RetryPolicy) -> MemoryRolloutStore:
        return self  # makes no AWS call: the container's records, as they are


class DynamoDbRolloutStore(RolloutStore):
    """The state table's records, shared by every container."""

    def __init__(self, client: DynamoDBClient, table: str, retry: RetryPolicy) -> None:
        super().__init__(DynamoDbStateStore(client, table, retry), retry, durable=True)
