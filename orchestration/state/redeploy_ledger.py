"""rotor's record of the deployments it made for each new secret value.

The freshness rule reads ECS's PRIMARY deployment, which is seconds old by the time rotor acts.
Two deliveries of one rotation (the native label event and RotationSucceeded) carry different
times and are often handled at the same moment by two Lambda containers: by the time rule
alone both could redeploy. So, right before UpdateService, rotor claims the pair
(service, change), where the change is ``secret ARN @ the version that became AWSCURRENT``:

* a claim is refused while another invocation holds it (``pending``; the lease lasts as long
  as the claimant may run, so a retry after a Lambda was killed finds it expired);
* a claim is refused once rotor's deployment for that change is made (``confirmed``), as long
  as that deployment is still the newest the service has: if the service was deployed again
  since (say for a later value, and AWSCURRENT was then rolled back to this one), rotor
  redeploys;
* a failed redeploy gives its claim back; an expired lease (a Lambda killed mid-way) is taken
  over.

One item per (service, change), with a TTL: nothing grows. In DynamoDB (``ROTOR_STATE_TABLE``)
claims are conditional writes shared by every container; in memory otherwise (one process).
When the version is unknown (a secret rotor cannot describe), there is no change to claim and
only the freshness rule applies.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import PermanentAwsError
from orchestration.times import iso, utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEEP_FOR = timedelta(days=2)  # long after any duplicate delivery of one rotation
MAX_LEASE = timedelta(minutes=15)  # a Lambda runs at most this long
LEASE_MARGIN = timedelta(seconds=30)
PENDING, CONFIRMED = "pending", "confirmed"


@dataclass(frozen=True, slots=True)
class Claim:
    service_arn: str
    change: str
    token: str
    claimed_at: datetime


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    held_elsewhere: bool = False  # another invocation is at it now: wait, or retry the event


class RedeployLedger(Protocol):
    def claim(
        self,
        service_arn: str,
        change: str,
        primary_created_at: datetime | None,
        now: datetime,
        lease: timedelta = MAX_LEASE,
    ) -> Claim | Refusal:
        """A ``Claim`` to redeploy ``service_arn`` for ``change`` now, or why rotor must not.
        ``primary_created_at`` is when the service's current PRIMARY deployment was made;
        ``lease`` is how long the claimant may still run."""
        ...

    def confirm(self, claim: Claim, deployment_created_at: datetime) -> None:
        """The deployment for the claim exists (made at ``deployment_created_at``)."""
        ...

    def release(self, claim: Claim) -> None:
        """The redeploy did not happen: give the claim back so a retry may make it."""
        ...


@dataclass
class _Record:
    state: str
    token: str
    claimed_at: datetime
    lease_until: datetime
    deployment_created_at: datetime | None = None


def _refusal(
    record: _Record, change: str, primary_created_at: datetime | None, now: datetime
) -> Refusal | None:
    version = change.rsplit("@", 1)[-1]
    if record.state == PENDING and utc(now) < utc(record.lease_until):
        return Refusal(
            f"another rotor invocation is redeploying it for this value ({version})",
            held_elsewhere=True,
        )
    if (
        record.state == CONFIRMED
        and record.deployment_created_at is not None
        and primary_created_at is not None
        and utc(primary_created_at) <= utc(record.deployment_created_at)
    ):
        return Refusal(
            f"already redeployed by rotor for this value ({version}) "
            f"at {iso(record.deployment_created_at)}"
        )
    return None


def _lease_until(now: datetime, lease: timedelta) -> datetime:
    return utc(now) + min(max(lease, timedelta(0)), MAX_LEASE) + LEASE_MARGIN


class MemoryRedeployLedger:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    def claim(
        self,
        service_arn: str,
        change: str,
        primary_created_at: datetime | None,
        now: datetime,
        lease: timedelta = MAX_LEASE,
    ) -> Claim | Refusal:
        with self._lock:
            self._forget_before(now - KEEP_FOR)
            record = self._records.get((service_arn, change))
            if record is not None:
                refusal = _refusal(record, change, primary_created_at, now)
                if refusal:
                    return refusal
            claim = Claim(service_arn, change, uuid.uuid4().hex, utc(now))
            self._records[(service_arn, change)] = _Record(
                PENDING, claim.token, claim.claimed_at, _lease_until(now, lease)
            )
            return claim

    def confirm(self, claim: Claim, deployment_created_at: datetime) -> None:
        with self._lock:
            record = self._records.get((claim.service_arn, claim.change))
            if record is not None and record.token == claim.token:
                record.state = CONFIRMED
                record.deployment_created_at = utc(deployment_created_at)

    def release(self, claim: Claim) -> None:
        with self._lock:
            record = self._records.get((claim.service_arn, claim.change))
            if record is not None and record.token == claim.token:
                del self._records[(claim.service_arn, claim.change)]

    def _forget_before(self, horizon: datetime) -> None:
        for key in [k for k, r in self._records.items() if r.claimed_at < utc(horizon)]:
            del self._records[key]


class DynamoDbRedeployLedger:
    """Items ``pk = "redeploy#<service ARN>#<change>"``: ``state``, ``owner`` (the claim's
    token), ``claimed_at``, ``lease_until`` and ``deployment_created_at`` (epoch ms),
    ``expires_at`` (TTL, epoch seconds)."""

    def __init__(self, client: DynamoDBClient, table: str, retry: RetryPolicy) -> None:
        self._client = client
        self._table = table
        self._retry = retry

    def claim(
        self,
        service_arn: str,
        change: str,
        primary_created_at: datetime | None,
        now: datetime,
        lease: timedelta = MAX_LEASE,
    ) -> Claim | Refusal:
        claim = Claim(service_arn, change, uuid.uuid4().hex, utc(now))  # one token per claim
        # Unknown PRIMARY age: never refuse for a confirmed record (redeploying is the safe side).
        primary = _ms(primary_created_at) if primary_created_at else 2**62

        def put() -> Claim | Refusal:
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        "pk": {"S": _key(service_arn, change)},
                        "state": {"S": PENDING},
                        "owner": {"S": claim.token},
                        "claimed_at": {"N": str(_ms(now))},
                        "lease_until": {"N": str(_ms(_lease_until(now, lease)))},
                        "expires_at": {"N": str(int((utc(now) + KEEP_FOR).timestamp()))},
                    },
                    ConditionExpression="attribute_not_exists(pk)"
                    " OR (#state = :pending AND lease_until < :now)"
                    " OR (#state = :confirmed AND deployment_created_at < :primary)",
                    ExpressionAttributeNames={"#state": "state"},
                    ExpressionAttributeValues={
                        ":pending": {"S": PENDING},
                        ":confirmed": {"S": CONFIRMED},
                        ":now": {"N": str(_ms(now))},
                        ":primary": {"N": str(primary)},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                old: dict[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
                if _text(old, "owner") == claim.token:
                    return claim  # an earlier attempt of this very claim landed; answer lost
                record = _Record(
                    state=_text(old, "state") or PENDING,
                    token=_text(old, "owner") or "",
                    claimed_at=_from_ms(old.get("claimed_at", {}).get("N", "0")),
                    lease_until=_from_ms(old.get("lease_until", {}).get("N", "0")),
                    deployment_created_at=(
                        _from_ms(old["deployment_created_at"]["N"])
                        if "deployment_created_at" in old
                        else None
                    ),
                )
                return _refusal(record, change, primary_created_at, now) or Refusal(
                    "another rotor invocation holds this value's claim", held_elsewhere=True
                )
            return claim

        return self._retry.call("PutItem", put)

    def confirm(self, claim: Claim, deployment_created_at: datetime) -> None:
        self._owned(
            "UpdateItem",
            self._client.update_item,
            claim,
            UpdateExpression="SET #state = :confirmed, deployment_created_at = :created",
            values={
                ":confirmed": {"S": CONFIRMED},
                ":created": {"N": str(_ms(deployment_created_at))},
            },
            names={"#state": "state"},
        )

    def release(self, claim: Claim) -> None:
        self._owned("DeleteItem", self._client.delete_item, claim)

    def _owned(
        self,
        operation: str,
        call: Any,
        claim: Claim,
        *,
        values: dict[str, Any] | None = None,
        names: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Act on the claim's item only while it is still ours (not taken over after expiry)."""
        try:
            self._retry.call(
                operation,
                call,
                TableName=self._table,
                Key={"pk": {"S": _key(claim.service_arn, claim.change)}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner", **(names or {})},
                ExpressionAttributeValues={":owner": {"S": claim.token}, **(values or {})},
                **kwargs,
            )
        except PermanentAwsError as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise  # otherwise taken over by another invocation: nothing of ours to change


def _key(service_arn: str, change: str) -> str:
    return f"redeploy#{service_arn}#{change}"


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    return value if isinstance(value, str) else None


def _ms(moment: datetime) -> int:
    return int(utc(moment).timestamp() * 1000)


def _from_ms(value: str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
