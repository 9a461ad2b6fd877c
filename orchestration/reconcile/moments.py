"""When did a secret's current value become current? The evidence the reconciler uses.

A version's ``CreatedDate`` is when it was created, often as AWSPENDING, before the AWSCURRENT
label moved to it: a deployment made between the two holds the OLD value. Without the event,
rotor looks for the moment the label moved, in this order:

1. the state table: the rotation record (``rotation#<secret ARN>@<version>``) the event path
   wrote when it handled the value (its time is the event's), or one an earlier pass of the
   reconciler wrote (``source`` says how that pass knew);
2. the secret's versions (``ListSecretVersionIds``, deprecated ones included): a version that
   is the secret's only version ever was current from its creation (the first version of a
   secret is always AWSCURRENT), so the moment is its ``CreatedDate``;
3. CloudTrail's event history (``LookupEvents``, 90 days, no trail needed), from the version's
   ``CreatedDate`` on: the last ``UpdateSecretVersionStage`` that moved AWSCURRENT to the
   version; else the first ``RotationSucceeded`` of the secret after it (logged right after
   the rotation moved the label: a later moment, which errs toward redeploying); else the
   ``PutSecretValue`` (staged AWSCURRENT, or no stage: the default) or ``UpdateSecret`` that
   created the version as current (moment = that call's time);
4. otherwise the moment is unknown. rotor errs toward redeploying: it takes the moment it first
   saw the version current (right after its ``DescribeSecret``), which is after the real one,
   and records it, so the next pass knows that a deployment made after it holds the value or
   a newer one (the bound that stops passes from redeploying forever).

CloudTrail is asked only when a consumer was deployed after the version's ``CreatedDate``
(one deployed before it is stale whatever the moment), at most 2 requests per second (the
``LookupEvents`` quota, metered by the client's rate limiter), one event name per request
(``LookupEvents`` takes one lookup attribute), every page, each event name's history read
once a pass (not once a secret).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import AwsCallError
from orchestration.secrets.references import AWSCURRENT, SecretIdentity
from orchestration.times import utc

if TYPE_CHECKING:
    from mypy_boto3_cloudtrail import CloudTrailClient

log = logging.getLogger(__name__)

PAGE_SIZE = 50  # LookupEvents' maximum
#: The fields of a CloudTrail record the searches read (the rest is not kept).
KEPT_FIELDS = (
    "eventID",
    "eventTime",
    "requestParameters",
    "responseElements",
    "additionalEventData",
)


class Evidence(StrEnum):
    """What decided whether a consumer is stale (reported per consumer)."""

    #: Deployed before the version was created (or of unknown age): stale whatever the moment.
    CREATED_DATE = "created-date"
    #: The rotation record of the event path in the state table: the event's time.
    STATE_TABLE = "state-table"
    #: The only version the secret ever had: current since its CreatedDate.
    ONLY_VERSION = "only-version"
    #: CloudTrail LookupEvents: the call that made the version current.
    CLOUDTRAIL = "cloudtrail"
    #: The moment is unknown; an earlier pass first saw the version current then (a bound).
    FIRST_SEEN = "first-seen"
    #: The moment is unknown: rotor erred toward redeploying (the moment it first saw it).
    UNKNOWN = "unknown"


#: What the reconciler writes as the rotation record's ``source``, per evidence.
#: (A moment rotor did not know is recorded as when it first saw the value current: a bound.)
FIRST_SEEN_SOURCE = "reconciler:first-seen"
RECORD_SOURCES: Mapping[Evidence, str] = {
    Evidence.CLOUDTRAIL: "reconciler:cloudtrail",
    Evidence.ONLY_VERSION: "reconciler:only-version",
    Evidence.CREATED_DATE: FIRST_SEEN_SOURCE,
    Evidence.UNKNOWN: FIRST_SEEN_SOURCE,
    Evidence.FIRST_SEEN: FIRST_SEEN_SOURCE,
}


def evidence_of_record(source: str) -> Evidence:
    """The evidence a stored rotation record gives: one a pass wrote when the moment was
    unknown is a bound (first seen), any other is the moment itself."""
    if source == FIRST_SEEN_SOURCE:
        return Evidence.FIRST_SEEN
    return Evidence.STATE_TABLE


@dataclass(frozen=True, slots=True)
class Moment:
    """When the value became current (to judge deployments by), and how rotor knows."""

    at: datetime
    evidence: Evidence
    detail: str


@dataclass(frozen=True, slots=True)
class Found:
    at: datetime
    detail: str


class CloudTrailHistory:
    """CloudTrail's event history of one account and region, read through ``LookupEvents``."""

    def __init__(self, client: CloudTrailClient, retry: RetryPolicy) -> None:
        self._client = client
        self._retry = retry
        #: event name -> (from when, every record since then): what this pass has read. An
        #: event name is the only filter ``LookupEvents`` takes here, so each secret's search
        #: would read the account's whole history of it again, at 2 requests a second for the
        #: whole account; it is read once a pass instead.
        self._held: dict[str, tuple[datetime, list[dict[str, Any]]]] = {}

    def became_current(
        self, secret: SecretIdentity, version: str, created: datetime
    ) -> Found | None:
        """When ``version`` of ``secret`` became AWSCURRENT, from the calls CloudTrail logged
        since ``created``; ``None`` when none says. Raises ``AwsCallError``."""
        start = utc(created).replace(microsecond=0)  # event times are whole seconds
        searches: tuple[tuple[str, Callable[[dict[str, Any]], bool], bool], ...] = (
            ("UpdateSecretVersionStage", lambda r: _moved_current_to(r, secret, version), True),
            ("RotationSucceeded", lambda r: _names(r, secret), False),
            (
                "PutSecretValue",
                lambda r: _created_current(r, version, default=True) and _names(r, secret),
                False,
            ),
            (
                "UpdateSecret",
                lambda r: _created_current(r, version, default=True) and _names(r, secret),
                False,
            ),
        )
        for event_name, matches, last in searches:
            times = [
                moment
                for record in self._history(event_name, start)
                if matches(record) and (moment := _event_time(record)) is not None
            ]
            times = [t for t in times if t >= start]
            if times:
                at = max(times) if last else min(times)
                return Found(at, f"CloudTrail {event_name} at {at.isoformat()}")
        return None

    def _history(self, event_name: str, start: datetime) -> list[dict[str, Any]]:
        """Every record of ``event_name`` since ``start`` at least (some may be older: the
        caller filters), read once a pass: a search from no earlier is answered from what was
        read; one from earlier reads only the part before it. (Every secret searched was
        described before the first read, so what was read holds every call that made it
        current.) Raises ``AwsCallError``; a read that failed is not kept."""
        held = self._held.get(event_name)
        if held is not None and held[0] <= start:
            return held[1]
        if held is None:
            records = list(self._records(event_name, start))
        else:
            ids = {str(r.get("eventID")) for r in held[1]}
            earlier = self._records(event_name, start, end=held[0])  # EndTime is inclusive
            records = held[1] + [r for r in earlier if str(r.get("eventID")) not in ids]
        self._held[event_name] = (start, records)
        return records

    def _records(
        self, event_name: str, start: datetime, end: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every record of ``event_name`` from ``start`` (to ``end``), each page retried;
        failed calls (an ``errorCode``) left out."""
        token: str | None = None
        while True:
            page = self._retry.call(
                "LookupEvents",
                self._client.lookup_events,
                LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": event_name}],
                StartTime=start,
                **({"EndTime": end} if end is not None else {}),
                MaxResults=PAGE_SIZE,
                **({"NextToken": token} if token else {}),
            )
            for event in page.get("Events") or []:
                record = _record(event.get("CloudTrailEvent"))
                if record is not None and not record.get("errorCode"):
                    # Only what the searches read: a pass holds every record it read.
                    yield {key: record[key] for key in KEPT_FIELDS if key in record}
            token = page.get("NextToken") or None
            if not token:
                return


def _record(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        log.warning("LookupEvents gave a CloudTrailEvent that is not JSON: skipped")
        return None
    return record if isinstance(record, dict) else None


def _event_time(record: Mapping[str, Any]) -> datetime | None:
    text = record.get("eventTime")
    if not isinstance(text, str):
        return None
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def _section(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = record.get(name)
    return value if isinstance(value, Mapping) else {}


def _names(record: Mapping[str, Any], secret: SecretIdentity) -> bool:
    """Whether the record is about ``secret``: by full ARN, partial ARN or name."""
    said = (
        _section(record, "responseElements").get("arn"),
        _section(record, "responseElements").get("aRN"),  # UpdateSecret's spelling
        _section(record, "requestParameters").get("secretId"),
        _section(record, "additionalEventData").get("SecretId"),
    )
    partial = secret.arn[: -len(secret.suffix) - 1] if secret.suffix else secret.arn
    return any(word in (secret.arn, partial, secret.name) for word in said if word)


def _moved_current_to(record: Mapping[str, Any], secret: SecretIdentity, version: str) -> bool:
    request = _section(record, "requestParameters")
    return (
        request.get("versionStage") == AWSCURRENT
        and request.get("moveToVersionId") == version
        and _names(record, secret)
    )


def _created_current(record: Mapping[str, Any], version: str, *, default: bool) -> bool:
    """A call that created ``version`` as AWSCURRENT: staged AWSCURRENT, or no stage at all
    (the default). A version id is the caller's ClientRequestToken, unique per secret only:
    the caller also checks that the record names the secret."""
    response = _section(record, "responseElements")
    if response.get("versionId") != version:
        return False
    stages = response.get("versionStages")
    if stages is None:
        stages = _section(record, "requestParameters").get("versionStages")
    if stages is None:
        return default
    return AWSCURRENT in stages


def lookup_failed(exc: AwsCallError) -> str:
    return f"CloudTrail LookupEvents failed ({exc.code}): the moment is unknown"
