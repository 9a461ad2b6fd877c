"""rotor's record of the deployments it made for each new secret value.

The freshness rule reads ECS's PRIMARY deployment, which is seconds old by the time rotor acts.
Two deliveries of one rotation (the native label event and RotationSucceeded) carry different
times and are often handled at the same moment by two Lambda containers: by the time rule
alone both could redeploy. So, right before UpdateService, rotor claims the pair
(service, new value) in the state store (``orchestration.state.store``):

* the new value (``NewValue``) is the secret and the version its deployment will hold: the
  version that was AWSCURRENT when rotor described the secret right before redeploying, not
  the version the event names (a late event for v1 after v2 became current deploys v2, and a
  later rollback to v1 must redeploy again);
* a claim is refused while another invocation holds it (``pending``; the lease lasts as long
  as the claimant may run, so a retry after a Lambda was killed finds it expired), unless the
  service was deployed since that claim was made (its holder's deployment landed, even if it
  could not record it);
* a claim is refused once rotor's deployment for that value is made (``confirmed``), as long
  as that deployment is still the newest the service has: if the service was deployed again
  since (say for a later value, and AWSCURRENT was then rolled back to this one), rotor
  redeploys;
* a failed redeploy gives its claim back; an expired lease (a Lambda killed mid-way) is taken
  over.

For a secret rotor cannot describe (another account's), the version is not known for every
delivery (``RotationSucceeded`` carries none): the deliveries of one rotation are then paired
by secret and time, one record per (service, secret) that refuses a new value which became
current within ``PAIR_WINDOW`` of the one it was made for (and, when both name a version, the
same version).

One item per (service, value), with a TTL: nothing grows. In DynamoDB (``ROTOR_STATE_TABLE``)
claims are conditional writes shared by every container; in memory otherwise (one process).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Self

from orchestration.aws.retry import RetryPolicy
from orchestration.state import keys
from orchestration.state.codec import Value
from orchestration.state.store import (
    DynamoDbStateStore,
    MemoryStateStore,
    Record,
    State,
    StateStore,
    Won,
)
from orchestration.times import iso, utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEEP_FOR = keys.REDEPLOY_KEEP
MAX_LEASE = timedelta(minutes=15)  # a Lambda runs at most this long
LEASE_MARGIN = timedelta(seconds=30)
#: Deliveries of one rotation of a secret rotor cannot describe are at most this far apart.
PAIR_WINDOW = timedelta(minutes=2)

DEPLOYED_AT = "deployment_created_at"
VERSION = "version"
VALUE_TIME = "value_current_at"


@dataclass(frozen=True, slots=True)
class NewValue:
    """A secret's new current value, which rotor redeploys for.

    ``described``: ``version_id`` is the version that was AWSCURRENT when rotor described the
    secret, right before redeploying (what the deployments hold). Otherwise rotor could not
    describe it: ``version_id`` is whatever the event said (perhaps nothing), and
    ``became_current_at`` (the event's time) pairs the deliveries of one rotation.
    """

    secret_arn: str
    version_id: str | None
    described: bool = True
    became_current_at: datetime | None = None

    @property
    def version_text(self) -> str:
        return self.version_id or "version unknown"


@dataclass(frozen=True, slots=True)
class Claim:
    service_arn: str
    change: NewValue
    token: str
    claimed_at: datetime
    record: Record = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    held_elsewhere: bool = False  # another invocation is at it now: wait, or retry the event


def value_key(change: NewValue) -> str:
    """A key naming the value (for the ledger, a notify window): built, never taken apart.
    Values rotor could not describe share one key per secret, and are told apart by time."""
    if change.described and change.version_id:
        return f"{change.secret_arn}@{change.version_id}"
    return f"{change.secret_arn}#paired"


def ledger_key(service_arn: str, change: NewValue) -> str:
    return keys.redeploy(service_arn, value_key(change))


def _refusal(
    record: Record, change: NewValue, primary_created_at: datetime | None, now: datetime
) -> Refusal | None:
    """Why ``record`` stops a redeploy for ``change`` now, or ``None`` when it does not."""
    version = change.version_text
    if record.expired(now):
        return None
    primary = utc(primary_created_at) if primary_created_at is not None else None
    if record.state is State.PENDING:
        if not record.leased(now):
            return None
        if primary is not None and primary >= utc(record.claimed_at):
            return Refusal(
                f"already redeployed for this value ({version}): the service's deployment "
                f"of {iso(primary)} is newer than rotor's claim"
            )
        return Refusal(
            f"another rotor invocation is redeploying it for this value ({version})",
            held_elsewhere=True,
        )
    deployed = record.data.get(DEPLOYED_AT)
    if not isinstance(deployed, datetime) or primary is None or primary > utc(deployed):
        return None  # unknown age, or deployed again since: redeploying is the safe side
    if not change.described and not _same_rotation(record, change):
        return None
    return Refusal(f"already redeployed by rotor for this value ({version}) at {iso(deployed)}")


def _same_rotation(record: Record, change: NewValue) -> bool:
    """Two deliveries of one rotation of a secret rotor cannot describe."""
    recorded_version = record.data.get(VERSION)
    if isinstance(recorded_version, str) and change.version_id:
        return recorded_version == change.version_id
    recorded_at = record.data.get(VALUE_TIME)
    if not isinstance(recorded_at, datetime) or change.became_current_at is None:
        return False
    return abs(utc(recorded_at) - utc(change.became_current_at)) <= PAIR_WINDOW


def _lease_until(now: datetime, lease: timedelta) -> datetime:
    return utc(now) + min(max(lease, timedelta(0)), MAX_LEASE) + LEASE_MARGIN


class RedeployLedger:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def claim(
        self,
        service_arn: str,
        change: NewValue,
        primary_created_at: datetime | None,
        now: datetime,
        lease: timedelta = MAX_LEASE,
        *,
        owner: str | None = None,
    ) -> Claim | Refusal:
        """A ``Claim`` to redeploy ``service_arn`` for ``change`` now, or why rotor must not.
        ``primary_created_at`` is when the service's current PRIMARY deployment was made;
        ``lease`` is how long the claimant may still run; ``owner`` (one per claim, the same
        across its retries) lets a retry whose first answer was lost find its own claim."""
        owner = owner or uuid.uuid4().hex
        data: dict[str, Value] = {"service": service_arn, "secret": change.secret_arn}
        if change.version_id:
            data[VERSION] = change.version_id
        if change.became_current_at is not None:
            data[VALUE_TIME] = change.became_current_at
        answer = self._store.claim(
            ledger_key(service_arn, change),
            owner,
            now=now,
            lease_until=_lease_until(now, lease),
            expires_at=utc(now) + KEEP_FOR,
            data=data,
            replaces=lambda old: _refusal(old, change, primary_created_at, now) is None,
        )
        if isinstance(answer, Won):
            record = answer.record
            return Claim(service_arn, change, record.owner, record.claimed_at, record)
        return _refusal(answer.holder, change, primary_created_at, now) or Refusal(
            "another rotor invocation holds this value's claim", held_elsewhere=True
        )

    def confirm(self, claim: Claim, deployment_created_at: datetime) -> bool:
        """The deployment for the claim exists (made at ``deployment_created_at``). False when
        the claim was taken over meanwhile (nothing changed)."""
        return self._store.confirm(claim.record, {DEPLOYED_AT: deployment_created_at}) is not None

    def release(self, claim: Claim) -> bool:
        """The redeploy did not happen: give the claim back so a retry may make it."""
        return self._store.release(claim.record)

    def with_retry(self, retry: RetryPolicy) -> Self:
        """This ledger's store reached through ``retry`` (an invocation's deadline)."""
        clone = copy.copy(self)
        clone._store = self._store.with_retry(retry)
        return clone


class MemoryRedeployLedger(RedeployLedger):
    def __init__(self, store: StateStore | None = None) -> None:
        super().__init__(store if store is not None else MemoryStateStore())


class DynamoDbRedeployLedger(RedeployLedger):
    """Items ``pk = "redeploy#<service ARN>#<secret ARN>@<version>"`` (or ``...#paired``):
    the store's attributes, plus ``service``, ``secret``, ``version``, ``value_current_at`` and
    ``deployment_created_at`` (epoch microseconds)."""

    def __init__(self, client: DynamoDBClient, table: str, retry: RetryPolicy) -> None:
        super().__init__(DynamoDbStateStore(client, table, retry))
