"""The one Secrets Manager adapter: resolve, describe and restore (rotation, alarms, the CLI).

An event may name a secret by full ARN, partial ARN or bare name. A full ARN needs no call.
Otherwise ``DescribeSecret`` (which still answers during the recovery window, and never
returns the value) gives the full ARN. A secret rotor cannot describe (owned by another account
that did not share DescribeSecret, or gone) falls back to what the event says. A user's words
on the command line are held to more: a secret that does not exist is an error
(``identify``). rotor never calls ``GetSecretValue``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import InvalidReferenceError, PermanentAwsError
from orchestration.secrets.references import AWSCURRENT, SecretIdentity

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

log = logging.getLogger(__name__)


#: ``ReplicationStatus[].Status`` (DescribeSecret's ``ReplicationStatusType``).
IN_SYNC = "InSync"
IN_PROGRESS = "InProgress"
FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class ReplicaFacts:
    """One replica of a secret, as the primary's ``DescribeSecret`` lists it in
    ``ReplicationStatus``: its region, ``InSync``, ``InProgress`` or ``Failed``, and what
    Secrets Manager says about it."""

    region: str
    status: str
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def in_sync(self) -> bool:
        return self.status == IN_SYNC


def replica_identity(primary: SecretIdentity, region: str) -> SecretIdentity:
    """The replica of ``primary`` in ``region``: AWS names it like the primary (same account,
    name and suffix), only the region differs, and so does its ARN."""
    return dataclasses.replace(primary, region=region)


@dataclass(frozen=True, slots=True)
class SecretFacts:
    """A secret as rotor knows it after resolution."""

    identity: SecretIdentity
    described: bool  # False: DescribeSecret was not possible; facts come from the event
    deleted_date: datetime | None = None  # set while the secret is scheduled for deletion
    tags: dict[str, str] = field(default_factory=dict)
    current_version: str | None = None  # the version labelled AWSCURRENT (never its value)
    why_not_described: str | None = None
    #: the secret's replicas in other regions (``ReplicationStatus``; a primary's only)
    replicas: tuple[ReplicaFacts, ...] = ()
    #: when AWS answered the DescribeSecret (its HTTP Date header, to the second): AWS's clock,
    #: not this machine's (``None``: no such header)
    answered_at: datetime | None = None

    def replica(self, region: str) -> ReplicaFacts | None:
        return next((r for r in self.replicas if r.region == region), None)

    @property
    def scheduled_for_deletion(self) -> bool:
        return self.deleted_date is not None


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One version of a secret as ``ListSecretVersionIds`` lists it (never its value)."""

    version_id: str
    stages: tuple[str, ...]
    created: datetime | None  # when the version was created (as AWSPENDING, or current)


class SecretLookup:
    def __init__(self, client: SecretsManagerClient, retry: RetryPolicy) -> None:
        self._client = client
        self._retry = retry

    def describe(
        self, secret_id: str, *, account: str, region: str, written_by_aws: bool = False
    ) -> SecretFacts:
        """Describe a secret named as an event names it; never raises for an absent secret.
        Undescribable, it is what the event says (``written_by_aws``: a full ARN)."""
        fallback = SecretIdentity.from_event_words(
            secret_id, account=account, region=region, trust_suffix=written_by_aws
        )
        client_region = self._client.meta.region_name
        if fallback.region != client_region:
            return SecretFacts(
                fallback, described=False, why_not_described=f"secret is in {fallback.region}"
            )
        try:
            answer = self._retry.call(
                "DescribeSecret", self._client.describe_secret, SecretId=secret_id
            )
        except PermanentAwsError as exc:
            log.info("cannot describe %s: %s", secret_id, exc.code)
            return SecretFacts(fallback, described=False, why_not_described=exc.code)
        try:
            identity = SecretIdentity.from_full_arn(answer["ARN"])
        except InvalidReferenceError:
            identity = fallback
        if (identity.account, identity.region) != (fallback.account, fallback.region):
            # The name resolved in our own account, but the event is about another one.
            return SecretFacts(
                fallback, described=False, why_not_described="secret is in another account"
            )
        return SecretFacts(
            identity=identity,
            described=True,
            deleted_date=answer.get("DeletedDate"),
            tags={t["Key"]: t.get("Value", "") for t in answer.get("Tags", []) if "Key" in t},
            current_version=next(
                (
                    version
                    for version, labels in answer.get("VersionIdsToStages", {}).items()
                    if AWSCURRENT in labels
                ),
                None,
            ),
            replicas=tuple(
                ReplicaFacts(
                    str(r["Region"]), str(r.get("Status", "")), str(r.get("StatusMessage", ""))
                )
                for r in answer.get("ReplicationStatus", [])
                if r.get("Region")
            ),
            answered_at=_answered_at(answer),
        )

    def identify(self, secret_id: str) -> SecretIdentity:
        """The secret a person named (name, partial or full ARN), for the command line.

        DescribeSecret decides what they meant (``…:secret:prod/api-signer`` may be a partial
        ARN). A secret that does not exist raises ``InvalidReferenceError``, even when named by
        a full ARN; a full ARN that rotor may not describe (another account's) is taken as is.
        """
        if not secret_id.strip():
            raise InvalidReferenceError("empty secret id: give a secret name or ARN")
        try:
            answer = self._retry.call(
                "DescribeSecret", self._client.describe_secret, SecretId=secret_id
            )
        except PermanentAwsError as exc:
            if exc.code == "ResourceNotFoundException":
                raise InvalidReferenceError(f"no secret {secret_id!r}: {exc.message}") from None
            if exc.code == "ValidationException":
                raise InvalidReferenceError(
                    f"not a secret id {secret_id!r}: {exc.message}"
                ) from None
            if secret_id.startswith("arn:"):
                try:
                    identity = SecretIdentity.from_full_arn(secret_id)
                except InvalidReferenceError:
                    raise exc from None
                log.warning("cannot describe %s (%s): taking the ARN as given", secret_id, exc.code)
                return identity
            raise
        return SecretIdentity.from_full_arn(answer["ARN"])

    def versions(self, secret: SecretIdentity) -> list[SecretVersion]:
        """Every version of the secret, deprecated ones (without labels) too
        (``ListSecretVersionIds``, every page): when each was created, and its labels. Never
        a value."""
        found: list[SecretVersion] = []
        token: str | None = None
        while True:
            page = self._retry.call(
                "ListSecretVersionIds",
                self._client.list_secret_version_ids,
                SecretId=secret.arn,
                IncludeDeprecated=True,  # every version: the only one ever was current at once
                MaxResults=100,
                **({"NextToken": token} if token else {}),
            )
            for version in page.get("Versions") or []:
                if "VersionId" in version:
                    found.append(
                        SecretVersion(
                            version["VersionId"],
                            tuple(version.get("VersionStages") or ()),
                            version.get("CreatedDate"),
                        )
                    )
            token = page.get("NextToken") or None  # moto answers "" on the last page
            if not token:
                return found

    def restore(self, secret: SecretIdentity) -> None:
        """``RestoreSecret``: cancel a scheduled deletion. Raises ``AwsCallError``."""
        self._retry.call("RestoreSecret", self._client.restore_secret, SecretId=secret.arn)

    def resolve(
        self, secret_id: str, *, account: str, region: str, written_by_aws: bool
    ) -> SecretIdentity:
        """The secret's identity. An ARN that AWS wrote into the event is full and needs no call;
        the caller's own words (name, partial ARN, or an ARN whose name may merely end in
        ``-`` plus six characters) are resolved with DescribeSecret."""
        if written_by_aws:
            try:
                return SecretIdentity.from_full_arn(secret_id)
            except InvalidReferenceError:
                pass
        return self.describe(
            secret_id, account=account, region=region, written_by_aws=written_by_aws
        ).identity


def _answered_at(answer: Mapping[str, Any]) -> datetime | None:
    """The time in an answer's HTTP Date header (RFC 7231), if it has a valid one."""
    headers = (answer.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    text = headers.get("date")
    if not isinstance(text, str):
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return when.astimezone(UTC) if when.tzinfo is not None else None
