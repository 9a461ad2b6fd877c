"""Read an EventBridge event and decide what it means for rotor.

``classify`` is pure: no AWS calls. It accepts the event exactly as EventBridge delivers it to a
Lambda target (or the same JSON read from a file) and returns a ``Classification``. Anything that
is not a well-formed event raises ``InvalidEventError`` with a message that says what is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, ValidationError

from orchestration.errors import InvalidEventError, InvalidReferenceError
from orchestration.secrets.references import AWSCURRENT, SecretIdentity
from orchestration.times import iso, utc

SECRETS_MANAGER = "aws.secretsmanager"
ECS = "aws.ecs"
LABEL_UPDATED = "Secret Label Updated"
CLOUDTRAIL_API_CALL = "AWS API Call via CloudTrail"
CLOUDTRAIL_SERVICE_EVENT = "AWS Service Event via CloudTrail"
ECS_DEPLOYMENT_STATE_CHANGE = "ECS Deployment State Change"

# "You can't perform this operation on the secret because it was marked for deletion."
# Older text ends "…because it was deleted."; the apostrophe may be U+2019 or missing.
_MARKED_FOR_DELETION = re.compile(
    r"secret\s+because\s+it\s+was\s+(marked\s+for\s+deletion|deleted)", re.IGNORECASE
)
M = TypeVar("M", bound=BaseModel)
_ROTATION_REQUEST_ID = re.compile(r"^Rotation-(arn:[^ ]+:secret:[^ ]+)-[0-9a-fA-F-]{36}$")


class EventKind(StrEnum):
    ROTATION = "rotation"
    SECRET_VALUE_CHANGED = "secret_value_changed"
    ROTATION_FAILED = "rotation_failed"
    DELETION_SCHEDULED = "deletion_scheduled"
    PENDING_DELETION_ACCESS = "pending_deletion_access"
    DEPLOYMENT_STATE = "deployment_state"
    SERVICE_CHANGED = "service_changed"  # an ECS service may run other task definitions
    SERVICE_DELETED = "service_deleted"
    IGNORE = "ignore"


#: Kinds after which consumers of the secret hold a stale value and must be redeployed.
REDEPLOY_KINDS = frozenset({EventKind.ROTATION, EventKind.SECRET_VALUE_CHANGED})
#: Kinds that raise an alarm: a read of a secret scheduled for deletion, a deletion, a failure.
ALARM_KINDS = frozenset(
    {EventKind.PENDING_DELETION_ACCESS, EventKind.DELETION_SCHEDULED, EventKind.ROTATION_FAILED}
)
#: Kinds the tracker follows: the end of a deployment rotor started.
TRACKER_KINDS = frozenset({EventKind.DEPLOYMENT_STATE})
#: Kinds that maintain the consumer index: an ECS service created, changed or deleted.
INDEX_KINDS = frozenset({EventKind.SERVICE_CHANGED, EventKind.SERVICE_DELETED})
#: ECS calls (CloudTrail) after which a service may run other task definitions.
SERVICE_CHANGES = frozenset(
    {
        "CreateService",
        "UpdateService",
        "DeleteService",
        "CreateTaskSet",
        "UpdateServicePrimaryTaskSet",
        "DeleteTaskSet",
    }
)


class _Envelope(EventBridgeModel):
    """Any EventBridge event: enough to tell its source and detail-type."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    detail: dict[str, Any]


class CloudTrailDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    eventName: str
    eventTime: datetime | None = None
    requestID: str | None = None
    errorCode: str | None = None
    errorMessage: str | None = None
    sourceIPAddress: str | None = None
    userAgent: str | None = None
    awsRegion: str | None = None
    userIdentity: dict[str, Any] | None = None
    requestParameters: dict[str, Any] | None = None
    responseElements: dict[str, Any] | None = None
    additionalEventData: dict[str, Any] | None = None
    serviceEventDetails: dict[str, Any] | None = None


class LabelUpdatedDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    labelUpdated: str
    versionId: str | None = None


class EcsDeploymentDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    eventName: str
    deploymentId: str | None = None
    reason: str | None = None


class CloudTrailEvent(EventBridgeModel):
    """Secrets Manager through CloudTrail: an API call, or a service event (rotation)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    detail: CloudTrailDetail


class LabelUpdatedEvent(EventBridgeModel):
    """Secrets Manager's native "Secret Label Updated" event (no trail needed)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    detail: LabelUpdatedDetail


class EcsDeploymentEvent(EventBridgeModel):
    """ECS's "ECS Deployment State Change" event."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    detail: EcsDeploymentDetail


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made an API call, as CloudTrail's userIdentity and request context tell it."""

    type: str | None = None
    arn: str | None = None
    account: str | None = None
    principal_id: str | None = None
    role_arn: str | None = None  # the role behind an assumed-role session
    session_name: str | None = None
    invoked_by: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None

    @property
    def principal(self) -> str:
        """A stable name for the principal: the role for sessions, else the ARN."""
        return self.role_arn or self.arn or self.invoked_by or self.principal_id or "unknown"

    def describe(self) -> str:
        who = self.principal
        if self.role_arn and self.session_name:
            who = f"{self.role_arn} (session {self.session_name})"
        parts = [who]
        if self.source_ip:
            parts.append(f"from {self.source_ip}")
        if self.user_agent:
            parts.append(f"via {self.user_agent}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Classification:
    """What an event means for rotor."""

    kind: EventKind
    reason: str
    event_id: str
    event_time: datetime
    account: str
    region: str
    source: str
    detail_type: str
    event_name: str | None = None
    #: The secret as best the event names it: a full ARN when the event has one, else the
    #: caller's own words (name or partial ARN). ``None`` when the event names no secret.
    secret: str | None = None
    #: Every secret the event names (BatchGetSecretValue may name several).
    secrets: tuple[str, ...] = ()
    #: True when ``secret`` is an ARN AWS itself wrote into the event (so it is a full ARN);
    #: False for the caller's own words, where ``…:secret:prod/api-signer`` may be a partial
    #: ARN of ``prod/api-signer`` or the full ARN of ``prod/api`` and only DescribeSecret can tell.
    secret_written_by_aws: bool = False
    secret_name: str | None = None
    version_id: str | None = None
    caller: Caller | None = None
    error_code: str | None = None
    error_message: str | None = None
    recovery_window_days: int | None = None
    force_delete: bool | None = None
    deletion_date: str | None = None
    #: The ECS service: an ARN AWS wrote, or (an ECS call without a response) the caller's
    #: words, a name or an ARN.
    service_arn: str | None = None
    deployment_id: str | None = None
    cluster: str | None = None  # an ECS call's cluster (ARN or name; ``default`` if none)

    @property
    def secret_id(self) -> str:
        """The secret of an event kind that names one (``classify`` makes sure it does)."""
        if self.secret is None:
            raise InvalidEventError(f"a {self.kind.value} event that names no secret")
        return self.secret

    def secret_identity(self) -> SecretIdentity | None:
        """The secret as an identity, from the event alone (no AWS call)."""
        if not self.secret:
            return None
        try:
            return SecretIdentity.from_event_words(
                self.secret,
                account=self.account,
                region=self.region,
                trust_suffix=self.secret_written_by_aws,
            )
        except InvalidReferenceError:
            return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["event_time"] = iso(self.event_time)
        data["secrets"] = list(self.secrets)
        return data


def parse_event_text(text: str | bytes) -> Mapping[str, Any]:
    """Decode an event from JSON text; anything that is not a JSON object is an error."""
    try:
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidEventError("not an event: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidEventError(f"an event is a JSON object, not {type(value).__name__}")
    return value


def classify(event: Any) -> Classification:
    """Classify one EventBridge event. Raises ``InvalidEventError`` for malformed input."""
    if isinstance(event, str | bytes):
        event = parse_event_text(event)
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"an event is a JSON object, not {type(event).__name__}")
    envelope = _validate(_Envelope, event, "event")
    base: dict[str, Any] = {
        "event_id": envelope.id,
        "event_time": _utc(envelope.time),
        "account": envelope.account,
        "region": envelope.region,
        "source": envelope.source,
        "detail_type": envelope.detail_type,
    }
    if envelope.source == SECRETS_MANAGER:
        if envelope.detail_type == LABEL_UPDATED:
            return _classify_label_updated(_validate(LabelUpdatedEvent, event, "detail"), base)
        if envelope.detail_type in (CLOUDTRAIL_API_CALL, CLOUDTRAIL_SERVICE_EVENT):
            return _classify_cloudtrail(_validate(CloudTrailEvent, event, "detail"), base)
    if envelope.source == ECS and envelope.detail_type == ECS_DEPLOYMENT_STATE_CHANGE:
        return _classify_deployment(_validate(EcsDeploymentEvent, event, "detail"), base)
    if envelope.source == ECS and envelope.detail_type == CLOUDTRAIL_API_CALL:
        return _classify_ecs_call(_validate(CloudTrailEvent, event, "detail"), base)
    return Classification(
        kind=EventKind.IGNORE,
        reason=f"rotor does not act on {envelope.source} {envelope.detail_type!r} events",
        **base,
    )


def _classify_label_updated(envelope: LabelUpdatedEvent, base: dict[str, Any]) -> Classification:
    detail = envelope.detail
    arns = [r for r in envelope.resources if ":secretsmanager:" in r]
    secret = arns[0] if arns else detail.name
    if secret is None:
        raise InvalidEventError("Secret Label Updated event names no secret (resources, name)")
    _check_secret_id(secret, envelope.account, envelope.region)
    common = {
        **base,
        "event_name": LABEL_UPDATED,
        "secret": secret,
        "secret_written_by_aws": bool(arns),
        "secrets": (secret,),
        "secret_name": detail.name,
        "version_id": detail.versionId,
    }
    if detail.labelUpdated == AWSCURRENT:
        return Classification(
            kind=EventKind.SECRET_VALUE_CHANGED,
            reason=f"AWSCURRENT moved to version {detail.versionId or '(unknown)'}",
            **common,
        )
    return Classification(
        kind=EventKind.IGNORE,
        reason=f"label {detail.labelUpdated!r} moved; consumers read AWSCURRENT",
        **common,
    )


def _classify_cloudtrail(envelope: CloudTrailEvent, base: dict[str, Any]) -> Classification:
    detail = envelope.detail
    name = detail.eventName
    request = detail.requestParameters or {}
    response = detail.responseElements or {}
    secrets, written_by_aws = _secret_ids(envelope, detail)
    common: dict[str, Any] = {
        **base,
        "event_name": name,
        "event_time": _utc(detail.eventTime) if detail.eventTime else base["event_time"],
        "secret": secrets[0] if secrets else None,
        "secrets": secrets,
        "secret_written_by_aws": written_by_aws,
        "secret_name": _text(response, "name"),
        "caller": _caller(detail),
        "error_code": detail.errorCode,
        "error_message": detail.errorMessage,
    }
    if detail.awsRegion:
        common["region"] = detail.awsRegion

    def verdict(kind: EventKind, reason: str, **more: Any) -> Classification:
        if kind is not EventKind.IGNORE:
            if not secrets:
                raise InvalidEventError(f"{name} event names no secret anywhere")
            for secret_id in secrets:
                _check_secret_id(secret_id, common["account"], common["region"])
        return Classification(kind=kind, reason=reason, **{**common, **more})

    # Rotation service events first: a RotationFailed carries its own errorMessage.
    if name == "RotationSucceeded":
        return verdict(EventKind.ROTATION, "rotation finished; AWSCURRENT holds the new value")
    if name in ("RotationFailed", "RotationAbandoned"):
        why = f" ({detail.errorMessage})" if detail.errorMessage else ""
        return verdict(
            EventKind.ROTATION_FAILED, f"{name}: AWSCURRENT still holds the old value{why}"
        )
    if detail.errorCode or detail.errorMessage:
        if detail.errorMessage and _MARKED_FOR_DELETION.search(detail.errorMessage):
            return verdict(
                EventKind.PENDING_DELETION_ACCESS,
                f"{name} failed because the secret is scheduled for deletion",
            )
        return verdict(
            EventKind.IGNORE, f"{name} failed ({detail.errorCode or 'error'}); nothing changed"
        )
    if name == "PutSecretValue":
        stages = request.get("versionStages")
        if stages is not None and not (
            isinstance(stages, list) and all(isinstance(s, str) for s in stages)
        ):
            raise InvalidEventError("requestParameters.versionStages is not a list of strings")
        if stages is None or AWSCURRENT in stages:
            return verdict(
                EventKind.SECRET_VALUE_CHANGED,
                "PutSecretValue stored a new AWSCURRENT value",
                version_id=_text(response, "versionId"),
            )
        if "AWSPENDING" in stages:
            return verdict(EventKind.IGNORE, "rotation in progress: new value staged as AWSPENDING")
        return verdict(EventKind.IGNORE, f"PutSecretValue staged {stages}, not AWSCURRENT")
    if name == "UpdateSecret":
        version = _text(response, "versionId")
        if version:
            return verdict(
                EventKind.SECRET_VALUE_CHANGED,
                "UpdateSecret stored a new AWSCURRENT value",
                version_id=version,
            )
        return verdict(EventKind.IGNORE, "UpdateSecret changed metadata only, not the value")
    if name == "DeleteSecret":
        force = request.get("forceDeleteWithoutRecovery")
        window = request.get("recoveryWindowInDays")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int | str)):
            raise InvalidEventError("requestParameters.recoveryWindowInDays is not a number")
        try:
            window_days = int(window) if window is not None else None
        except ValueError:
            raise InvalidEventError(
                f"requestParameters.recoveryWindowInDays is not a number: {window!r}"
            ) from None
        forced = force is True or str(force).lower() == "true"
        return verdict(
            EventKind.DELETION_SCHEDULED,
            "secret deleted without recovery"
            if forced
            else f"secret scheduled for deletion ({window_days or 30}-day recovery window)",
            recovery_window_days=None if forced else (window_days or 30),
            force_delete=forced,
            deletion_date=_text(response, "deletionDate"),
        )
    if name == "UpdateSecretVersionStage":
        return verdict(
            EventKind.IGNORE,
            "label move; when AWSCURRENT moves, the native Secret Label Updated event acts on it",
        )
    return verdict(EventKind.IGNORE, f"{name} does not change the value consumers read")


def _classify_deployment(envelope: EcsDeploymentEvent, base: dict[str, Any]) -> Classification:
    detail = envelope.detail
    services = [r for r in envelope.resources if ":ecs:" in r and ":service/" in r]
    return Classification(
        kind=EventKind.DEPLOYMENT_STATE,
        reason=f"{detail.eventName}: {detail.reason or 'no reason given'}",
        event_name=detail.eventName,
        service_arn=services[0] if services else None,
        deployment_id=detail.deploymentId,
        **base,
    )


def _classify_ecs_call(envelope: CloudTrailEvent, base: dict[str, Any]) -> Classification:
    """An ECS API call: the ones that change which task definitions a service runs maintain
    the consumer index. UpdateService without a task definition (a scale, or rotor's own
    forceNewDeployment) changes none."""
    detail = envelope.detail
    name = detail.eventName
    request = detail.requestParameters or {}
    response = detail.responseElements or {}
    written = response.get("service") or response.get("taskSet") or {}
    if not isinstance(written, Mapping):
        raise InvalidEventError(f"responseElements of {name} is not an object")
    service = _text(written, "serviceArn") or _text(request, "service")
    service = service or _text(request, "serviceName")
    cluster = _text(written, "clusterArn") or _text(request, "cluster") or "default"
    common: dict[str, Any] = {
        **base,
        "event_name": name,
        "event_time": _utc(detail.eventTime) if detail.eventTime else base["event_time"],
        "caller": _caller(detail),
        "error_code": detail.errorCode,
        "error_message": detail.errorMessage,
        "service_arn": service,
        "cluster": cluster,
        **({"region": detail.awsRegion} if detail.awsRegion else {}),
    }
    if name not in SERVICE_CHANGES:
        return Classification(
            kind=EventKind.IGNORE, reason=f"{name} changes no service's task definitions", **common
        )
    if detail.errorCode or detail.errorMessage:
        return Classification(
            kind=EventKind.IGNORE,
            reason=f"{name} failed ({detail.errorCode or 'error'}); nothing changed",
            **common,
        )
    if name == "UpdateService" and not _text(request, "taskDefinition"):
        return Classification(
            kind=EventKind.IGNORE,
            reason="UpdateService without a task definition: the service runs the same ones",
            **common,
        )
    if not service:
        raise InvalidEventError(f"{name} event names no service")
    if name == "DeleteService":
        return Classification(
            kind=EventKind.SERVICE_DELETED, reason="the service was deleted", **common
        )
    return Classification(
        kind=EventKind.SERVICE_CHANGED,
        reason=f"{name}: the service may run other task definitions",
        **common,
    )


def _secret_ids(
    envelope: CloudTrailEvent, detail: CloudTrailDetail
) -> tuple[tuple[str, ...], bool]:
    """Every secret the event names, best (a full ARN AWS wrote) first, no duplicates.

    Order of trust: ``additionalEventData.SecretId`` (documented for rotation events),
    ``responseElements.arn``/``aRN``, the ARN inside a rotation ``requestID``, a
    ``serviceEventDetails`` block (where some service events and forwarding rules put it),
    ``resources``, then the caller's own ``requestParameters.secretId`` / ``secretIdList``.
    The flag says whether the first one is an ARN AWS wrote.
    """
    request = detail.requestParameters or {}
    response = detail.responseElements or {}
    additional = detail.additionalEventData or {}
    service = detail.serviceEventDetails or {}
    found: list[str] = []
    for candidate in (
        _text(additional, "SecretId"),
        _text(additional, "secretId"),
        _text(response, "arn"),
        _text(response, "aRN"),
        _rotation_request_arn(detail.requestID),
        _text(service, "SecretId"),
        _text(service, "secretId"),
        _text(service, "arn"),
    ):
        if candidate:
            found.append(candidate)
    found.extend(r for r in envelope.resources if ":secretsmanager:" in r)
    written_by_aws = bool(found)
    given = _text(request, "secretId")
    listed = request.get("secretIdList")
    if listed is not None and not (
        isinstance(listed, list) and all(isinstance(s, str) and s for s in listed)
    ):
        raise InvalidEventError("requestParameters.secretIdList is not a list of secret ids")
    callers_words = ([given] if given else []) + list(listed or [])
    full = [f for f in found if f.startswith("arn:")]
    # The caller's words add a secret only when no full ARN already names the same one.
    for word in callers_words:
        if not any(_same_secret(word, arn) for arn in full):
            found.append(word)
    return tuple(dict.fromkeys(found)), written_by_aws


def _same_secret(callers_id: str, full_arn: str) -> bool:
    identity = None
    try:
        identity = SecretIdentity.from_full_arn(full_arn)
    except InvalidReferenceError:
        return callers_id == full_arn
    return callers_id in (full_arn, identity.arn, identity.name) or callers_id == (
        f"arn:{identity.partition}:secretsmanager:{identity.region}:{identity.account}"
        f":secret:{identity.name}"
    )


def _check_secret_id(secret_id: str, account: str, region: str) -> None:
    try:
        SecretIdentity.from_event_words(secret_id, account=account, region=region)
    except InvalidReferenceError as exc:
        raise InvalidEventError(f"the event names a malformed secret: {exc}") from None


def _rotation_request_arn(request_id: str | None) -> str | None:
    if not request_id:
        return None
    match = _ROTATION_REQUEST_ID.match(request_id)
    return match.group(1) if match else None


def _caller(detail: CloudTrailDetail) -> Caller | None:
    identity = detail.userIdentity
    if identity is None:
        return None
    issuer: Mapping[str, Any] = {}
    context = identity.get("sessionContext")
    if isinstance(context, Mapping) and isinstance(context.get("sessionIssuer"), Mapping):
        issuer = context["sessionIssuer"]
    arn = _text(identity, "arn")
    session_name = None
    if arn and ":assumed-role/" in arn:
        session_name = arn.rsplit("/", 1)[-1]
    return Caller(
        type=_text(identity, "type"),
        arn=arn,
        account=_text(identity, "accountId"),
        principal_id=_text(identity, "principalId"),
        role_arn=_text(issuer, "arn") if issuer.get("type") in (None, "Role") else None,
        session_name=session_name,
        invoked_by=_text(identity, "invokedBy"),
        source_ip=detail.sourceIPAddress,
        user_agent=detail.userAgent,
    )


def _text(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidEventError(f"{key} should be a string, not {type(value).__name__}")
    return value


def _validate(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first["loc"]) or where
        prefix = "" if where == "event" or location.startswith(where) else f"{where}."
        raise InvalidEventError(
            f"malformed {where}: {prefix}{location}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")
        ) from None


def _utc(moment: datetime) -> datetime:
    try:
        return utc(moment)
    except OverflowError:
        raise InvalidEventError(f"time out of range: {moment.isoformat()}") from None
