"""Secret references in ECS task definitions, and whether one points at a given secret.

ECS accepts these forms (docs/references.md has the whole grammar, with examples):

* ``arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX[:JSON_KEY[:STAGE[:VERSION_ID]]]``
  (trailing colons are part of it; ``-XXXXXX`` may be absent: a partial ARN);
* in ``secrets`` and ``logConfiguration.secretOptions``, anything that is not an ARN is an SSM
  parameter name; an SSM parameter ARN is an SSM parameter too;
* the SSM pass-through ``/aws/reference/secretsmanager/NAME`` (name or ARN form) resolves to the
  secret's AWSCURRENT value: an unpinned reference to that secret;
* ``repositoryCredentials.credentialsParameter`` also takes a secret's bare name, resolved in the
  task definition's own account and region.

Names are compared whole, never by prefix, and never across account, region or partition.
Partitions and their regions are botocore's (its ``partitions.json``): a region is valid when
some partition's ``regionRegex`` matches it, and an ARN's partition must be that region's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from botocore.loaders import create_loader

from orchestration.errors import InvalidReferenceError

AWSCURRENT = "AWSCURRENT"
SSM_PASSTHROUGH_PREFIX = "/aws/reference/secretsmanager/"

# Secret names: 1-512 of letters, digits and /_+=.@-  (managed secrets add "!", as in rds!db-…).
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@!-]{1,512}")
_SUFFIX = re.compile(r"-([A-Za-z0-9]{6})$")
_ACCOUNT = re.compile(r"\d{12}")
# SSM parameter names: letters, digits, _.-/ ; a ":version" or ":label" selector may follow.
_SSM_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,2048}(:[A-Za-z0-9_.\-]{1,100})?")
_VERSION_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_STAGE = re.compile(r"[A-Za-z0-9_.\-]{1,256}")


@cache
def _partitions() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Each partition botocore knows (aws, aws-cn, aws-us-gov, aws-eusc, aws-iso…) with the
    pattern of its region names, read once from botocore's own data."""
    data = create_loader().load_data("partitions")
    return tuple(
        (str(p["id"]), re.compile(str(p["regionRegex"]), re.ASCII)) for p in data["partitions"]
    )


def partition_of(region: str) -> str | None:
    """The partition ``region`` belongs to (``eusc-de-east-1``: ``aws-eusc``), or None when
    no partition's region pattern matches it (not an AWS region)."""
    return next((pid for pid, pattern in _partitions() if pattern.fullmatch(region)), None)


class ReferenceField(StrEnum):
    """Where in a container definition a reference was found."""

    SECRETS = "secrets"
    REPOSITORY_CREDENTIALS = "repositoryCredentials"
    SECRET_OPTIONS = "logConfiguration.secretOptions"


class ReferenceKind(StrEnum):
    SECRET = "secret"  # a Secrets Manager ARN (full or partial) or a bare secret name
    SSM_PASSTHROUGH = "ssm-passthrough"  # /aws/reference/secretsmanager/NAME
    SSM_PARAMETER = "ssm-parameter"  # any other SSM parameter: never a secret


@dataclass(frozen=True, slots=True)
class SecretIdentity:
    """A secret as an event or DescribeSecret names it.

    ``suffix`` is the six characters AWS appends to a full ARN; it is ``None`` when only a name
    or a partial ARN is known, and then matching falls back to the exact name.
    """

    partition: str
    region: str
    account: str
    name: str
    suffix: str | None = None

    @property
    def arn(self) -> str:
        tail = f"{self.name}-{self.suffix}" if self.suffix else self.name
        return f"arn:{self.partition}:secretsmanager:{self.region}:{self.account}:secret:{tail}"

    @property
    def is_full(self) -> bool:
        return self.suffix is not None

    @classmethod
    def from_full_arn(cls, arn: str) -> SecretIdentity:
        """Parse an ARN that AWS itself produced (so it carries the ``-XXXXXX`` suffix)."""
        partition, region, account, resource = _split_secretsmanager_arn(arn)
        name_part = resource.split(":", 1)[0]
        match = _SUFFIX.search(name_part)
        if match is None or len(name_part) <= 7:
            raise InvalidReferenceError(f"not a full secret ARN (no -XXXXXX suffix): {arn!r}")
        name = name_part[: match.start()]
        _check_secret_name(name, arn)
        return cls(partition, region, account, name, match.group(1))

    @classmethod
    def from_name(cls, name: str, *, partition: str, region: str, account: str) -> SecretIdentity:
        _check_secret_name(name, name)
        return cls(partition, region, account, name, None)

    @classmethod
    def from_event_words(
        cls,
        secret_id: str,
        *,
        account: str,
        region: str,
        trust_suffix: bool = False,
    ) -> SecretIdentity:
        """Best identity from an event alone (a bare name lives in the event's account and
        region, and so in that region's partition). With ``trust_suffix`` (an ARN AWS wrote)
        a trailing ``-XXXXXX`` is the ARN suffix; without it (the caller's words) the whole
        tail is the name, since ``…:secret:prod/api-signer`` may be a partial ARN, never
        ``prod/api`` + ``signer``."""
        if secret_id.startswith("arn:"):
            partition, region, account, resource = _split_secretsmanager_arn(secret_id)
            if ":" in resource:
                raise InvalidReferenceError(f"a secret id has no ':' after the name: {secret_id!r}")
            if trust_suffix:
                try:
                    return cls.from_full_arn(secret_id)
                except InvalidReferenceError:
                    pass
            return cls.from_name(resource, partition=partition, region=region, account=account)
        partition = partition_of(region) or ""
        _check_location(partition, region, account, secret_id)
        return cls.from_name(secret_id, partition=partition, region=region, account=account)


@dataclass(frozen=True, slots=True)
class SecretReference:
    """One ``valueFrom`` / ``credentialsParameter`` value, parsed.

    For ``kind == SECRET`` and ``SSM_PASSTHROUGH``, ``name_part`` is what stands where the secret
    name goes: either ``NAME-XXXXXX`` (full ARN) or ``NAME`` (partial ARN, bare name,
    pass-through); whether it carries a suffix can only be decided against a known secret.
    """

    raw: str
    field: ReferenceField
    kind: ReferenceKind
    partition: str
    region: str
    account: str
    name_part: str
    json_key: str | None = None
    version_stage: str | None = None
    version_id: str | None = None

    @property
    def pinned(self) -> bool:
        """True when a rotation does not change the value this reference resolves to."""
        if self.version_id:
            return True
        return bool(self.version_stage) and self.version_stage != AWSCURRENT

    def points_at(self, secret: SecretIdentity) -> bool:
        """Whether this reference resolves to ``secret`` (pinned or not)."""
        if self.kind is ReferenceKind.SSM_PARAMETER:
            return False
        if (self.partition, self.region, self.account) != (
            secret.partition,
            secret.region,
            secret.account,
        ):
            return False
        if self.name_part == secret.name:  # partial ARN, bare name or pass-through
            return True
        return secret.suffix is not None and self.name_part == f"{secret.name}-{secret.suffix}"


def parse_reference(
    value: str,
    field: ReferenceField,
    *,
    partition: str,
    region: str,
    account: str,
) -> SecretReference:
    """Parse one reference found in ``field`` of a task definition in ``account``/``region``.

    Raises ``InvalidReferenceError`` for anything ECS would not accept as such a reference.
    """
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidReferenceError(f"empty or padded reference in {field}: {value!r}")
    context = {"partition": partition, "region": region, "account": account}
    if value.startswith("arn:"):
        service = value.split(":", 3)[2] if value.count(":") >= 3 else ""
        if service == "secretsmanager":
            return _parse_secret_arn(value, field)
        if service == "ssm":
            return _parse_ssm_arn(value, field)
        raise InvalidReferenceError(
            f"{field} must name Secrets Manager or SSM, not {service or 'nothing'}: {value!r}"
        )
    if value.startswith(SSM_PASSTHROUGH_PREFIX):
        return _parse_passthrough(value, field, **context)
    if field is ReferenceField.REPOSITORY_CREDENTIALS:
        _check_secret_name(value, value)
        return SecretReference(value, field, ReferenceKind.SECRET, name_part=value, **context)
    if not _SSM_NAME.fullmatch(value):
        raise InvalidReferenceError(f"not a secret ARN nor an SSM parameter name: {value!r}")
    return SecretReference(value, field, ReferenceKind.SSM_PARAMETER, name_part=value, **context)


def _parse_secret_arn(value: str, field: ReferenceField) -> SecretReference:
    partition, region, account, resource = _split_secretsmanager_arn(value)
    name_part, *selectors = resource.split(":")
    if len(selectors) > 3:
        raise InvalidReferenceError(
            f"too many ':' fields after the secret name (at most json-key:stage:version-id): "
            f"{value!r}"
        )
    if field is ReferenceField.REPOSITORY_CREDENTIALS and any(selectors):
        raise InvalidReferenceError(f"repositoryCredentials takes a whole secret: {value!r}")
    _check_secret_name(name_part, value)
    json_key, stage, version_id = (*selectors, "", "", "")[:3]
    if stage and not _STAGE.fullmatch(stage):
        raise InvalidReferenceError(f"malformed version stage {stage!r} in {value!r}")
    if version_id and not _VERSION_ID.fullmatch(version_id):
        raise InvalidReferenceError(f"malformed version id {version_id!r} in {value!r}")
    return SecretReference(
        raw=value,
        field=field,
        kind=ReferenceKind.SECRET,
        partition=partition,
        region=region,
        account=account,
        name_part=name_part,
        json_key=json_key or None,
        version_stage=stage or None,
        version_id=version_id or None,
    )


def _parse_ssm_arn(value: str, field: ReferenceField) -> SecretReference:
    if field is ReferenceField.REPOSITORY_CREDENTIALS:
        raise InvalidReferenceError(f"repositoryCredentials cannot use SSM: {value!r}")
    parts = value.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("parameter"):
        raise InvalidReferenceError(f"malformed SSM parameter ARN: {value!r}")
    _, partition, _, region, account, resource = parts
    _check_location(partition, region, account, value)
    name = resource.removeprefix("parameter")
    if not name:
        raise InvalidReferenceError(f"SSM parameter ARN without a name: {value!r}")
    context = {"partition": partition, "region": region, "account": account}
    if name.startswith(SSM_PASSTHROUGH_PREFIX):
        return _parse_passthrough(name, field, raw=value, **context)
    return SecretReference(value, field, ReferenceKind.SSM_PARAMETER, name_part=name, **context)


def _parse_passthrough(
    value: str,
    field: ReferenceField,
    *,
    partition: str,
    region: str,
    account: str,
    raw: str | None = None,
) -> SecretReference:
    if field is ReferenceField.REPOSITORY_CREDENTIALS:
        raise InvalidReferenceError(f"repositoryCredentials cannot use SSM: {value!r}")
    target = value.removeprefix(SSM_PASSTHROUGH_PREFIX)
    if target.startswith("arn:"):
        secret = _parse_secret_arn(target, field)
        partition, region, account, name = (
            secret.partition,
            secret.region,
            secret.account,
            secret.name_part,
        )
    else:
        name = target
        _check_secret_name(name, value)
    return SecretReference(
        raw=raw or value,
        field=field,
        kind=ReferenceKind.SSM_PASSTHROUGH,
        partition=partition,
        region=region,
        account=account,
        name_part=name,
    )


def _split_secretsmanager_arn(arn: str) -> tuple[str, str, str, str]:
    parts = arn.split(":", 6)
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "secretsmanager":
        raise InvalidReferenceError(f"not a Secrets Manager ARN: {arn!r}")
    _, partition, _, region, account, resource_type, resource = parts
    _check_location(partition, region, account, arn)
    if resource_type != "secret":
        raise InvalidReferenceError(f"Secrets Manager ARN is not for a secret: {arn!r}")
    return partition, region, account, resource


def _check_location(partition: str, region: str, account: str, value: str) -> None:
    region_partition = partition_of(region)
    if region_partition is None:
        raise InvalidReferenceError(f"bad region {region!r} in {value!r}")
    if partition != region_partition:
        raise InvalidReferenceError(
            f"bad partition {partition!r} in {value!r}: {region} is in {region_partition}"
        )
    if not _ACCOUNT.fullmatch(account):
        raise InvalidReferenceError(f"bad account {account!r} in {value!r}")


def _check_secret_name(name: str, value: str) -> None:
    if not _SECRET_NAME.fullmatch(name):
        raise InvalidReferenceError(f"bad secret name {name!r} in {value!r}")
