"""rotor's own record of the deployments it started: the freshness rule, made atomic.

The freshness rule reads ECS's PRIMARY deployment, which is seconds old by the time rotor acts.
Two deliveries of one rotation handled at once (the native label event and RotationSucceeded
arrive seconds apart, often in two Lambda containers) would both see the service as stale. And
the two carry different times, so a deployment made for the first can look older than the
second. Before each UpdateService, rotor therefore claims the service in this ledger:

* refused if rotor already redeployed it for this change (secret ARN @ the version that became
  AWSCURRENT), whatever the event times say;
* refused if rotor redeployed it at or after the time the new value became current (this also
  coalesces secrets rotated together into one deployment);
* otherwise granted, recording now as the service's deployment time.

The ledger lives in DynamoDB (``ROTOR_STATE_TABLE``, one conditional write per claim) when
configured, shared by every container; in memory otherwise (one process).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from orchestration.errors import PermanentAwsError
from orchestration.retry import RetryPolicy
from orchestration.times import iso, utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEEP_FOR = timedelta(days=2)  # long after any duplicate delivery of one rotation


@dataclass(frozen=True, slots=True)
class Claim:
    """A granted claim, with what is needed to give it back."""

    service_arn: str
    change: str | None
    previous_deployed_at: datetime | None
    token: str


class RedeployLedger(Protocol):
    def claim(
        self, service_arn: str, change: str | None, rotated_at: datetime, now: datetime
    ) -> Claim | str:
        """A ``Claim`` to redeploy now, or the reason rotor must not (already done)."""
        ...

    def release(self, claim: Claim) -> None:
        """The redeploy did not happen: undo the claim so a retry may make it."""
        ...


@dataclass
class _Record:
    deployed_at: datetime
    changes: dict[str, datetime] = field(default_factory=dict)  # change -> when claimed


class MemoryRedeployLedger:
    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def claim(
        self, service_arn: str, change: str | None, rotated_at: datetime, now: datetime
    ) -> Claim | str:
        with self._lock:
            record = self._records.get(service_arn)
            if record is not None:
                record.changes = {c: at for c, at in record.changes.items() if now - at < KEEP_FOR}
                refusal = _refusal(record.deployed_at, set(record.changes), change, rotated_at)
                if refusal:
                    return refusal
            previous = record.deployed_at if record else None
            changes = dict(record.changes) if record else {}
            if change:
                changes[change] = now
            self._records[service_arn] = _Record(utc(now), changes)
            return Claim(service_arn, change, previous, token=uuid.uuid4().hex)

    def release(self, claim: Claim) -> None:
        with self._lock:
            record = self._records.get(claim.service_arn)
            if record is None:
                return
            if claim.change:
                record.changes.pop(claim.change, None)
            if claim.previous_deployed_at is None and not record.changes:
                del self._records[claim.service_arn]
            elif claim.previous_deployed_at is not None:
                record.deployed_at = claim.previous_deployed_at


class DynamoDbRedeployLedger:
    """Items ``pk = "redeploy#<service ARN>"`` with ``deployed_at`` (epoch ms), ``changes``
    (string set), ``owner`` (the claim's token) and ``expires_at`` (TTL, epoch seconds)."""

    def __init__(self, client: DynamoDBClient, table: str, retry: RetryPolicy) -> None:
        self._client = client
        self._table = table
        self._retry = retry

    def claim(
        self, service_arn: str, change: str | None, rotated_at: datetime, now: datetime
    ) -> Claim | str:
        token = uuid.uuid4().hex  # the same across retries of this one claim
        condition = "attribute_not_exists(pk) OR (deployed_at < :rotated"
        values: dict[str, Any] = {
            ":rotated": {"N": str(_ms(rotated_at))},
            ":now": {"N": str(_ms(now))},
            ":owner": {"S": token},
            ":expires": {"N": str(int((utc(now) + KEEP_FOR).timestamp()))},
        }
        update = "SET deployed_at = :now, #owner = :owner, expires_at = :expires"
        if change:
            condition += " AND NOT contains(changes, :change)"
            values[":change"] = {"S": change}
            values[":changes"] = {"SS": [change]}
            update += " ADD changes :changes"
        condition += ")"

        def write() -> Claim | str:
            try:
                answer = self._client.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": f"redeploy#{service_arn}"}},
                    ConditionExpression=condition,
                    UpdateExpression=update,
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_OLD",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                old: Mapping[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
                if old.get("owner", {}).get("S") == token:
                    # An earlier attempt of this very claim landed; its answer was lost.
                    return Claim(service_arn, change, None, token)
                deployed = _from_ms(old["deployed_at"]["N"]) if "deployed_at" in old else None
                changes = set(old.get("changes", {}).get("SS", []))
                return _refusal(deployed, changes, change, rotated_at) or "claimed elsewhere"
            old = answer.get("Attributes") or {}
            previous = _from_ms(old["deployed_at"]["N"]) if "deployed_at" in old else None
            return Claim(service_arn, change, previous, token)

        return self._retry.call("UpdateItem", write)

    def release(self, claim: Claim) -> None:
        key = {"pk": {"S": f"redeploy#{claim.service_arn}"}}
        owned = {
            "ConditionExpression": "#owner = :owner",  # only our own claim, never a newer one
            "ExpressionAttributeNames": {"#owner": "owner"},
        }
        try:
            if claim.previous_deployed_at is None:  # the item did not exist before the claim
                self._retry.call(
                    "DeleteItem",
                    self._client.delete_item,
                    TableName=self._table,
                    Key=key,
                    ExpressionAttributeValues={":owner": {"S": claim.token}},
                    **owned,
                )
                return
            update = "SET deployed_at = :previous"
            values: dict[str, Any] = {
                ":owner": {"S": claim.token},
                ":previous": {"N": str(_ms(claim.previous_deployed_at))},
            }
            if claim.change:
                update += " DELETE changes :changes"
                values[":changes"] = {"SS": [claim.change]}
            self._retry.call(
                "UpdateItem",
                self._client.update_item,
                TableName=self._table,
                Key=key,
                UpdateExpression=update,
                ExpressionAttributeValues=values,
                **owned,
            )
        except PermanentAwsError as exc:
            if exc.code != "ConditionalCheckFailedException":
                raise  # a newer claim replaced ours otherwise: nothing to undo


def _refusal(
    deployed_at: datetime | None, changes: set[str], change: str | None, rotated_at: datetime
) -> str | None:
    if change and change in changes:
        return f"already redeployed by rotor for this value ({change.rsplit('@', 1)[-1]})"
    if deployed_at is not None and utc(deployed_at) >= utc(rotated_at):
        return f"already fresh: rotor redeployed it at {iso(deployed_at)}"
    return None


def _ms(moment: datetime) -> int:
    return int(utc(moment).timestamp() * 1000)


def _from_ms(value: str) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
