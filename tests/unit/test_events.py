"""classify(): every sample event, the fields rotor reads from it, and malformed input."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestration.errors import InvalidEventError
from orchestration.events.classification import Classification, EventKind, classify
from orchestration.secrets.references import SecretIdentity
from tests.conftest import SAMPLE_EVENTS, load_event

ACCOUNT = "123456789012"
SM = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:"
DB = f"{SM}prod/db-Ab12Cd"
DB_ADMIN = f"{SM}prod/db-admin-Xy98Zw"
API_SIGNER = f"{SM}prod/api-signer-Qw34Er"
LEGACY = f"{SM}prod/legacy-token-Lg56Tk"
API_SERVICE = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/api"

#: Every sample event and what it must classify as. A new sample needs an entry here.
EXPECTED_KINDS: dict[str, EventKind] = {
    "batch-get-secret-value-marked-for-deletion.json": EventKind.PENDING_DELETION_ACCESS,
    "delete-secret-force.json": EventKind.DELETION_SCHEDULED,
    "delete-secret-recovery-window.json": EventKind.DELETION_SCHEDULED,
    "ecs-deployment-completed.json": EventKind.DEPLOYMENT_STATE,
    "ecs-deployment-failed.json": EventKind.DEPLOYMENT_STATE,
    "ecs-create-service.json": EventKind.SERVICE_CHANGED,
    "ecs-create-task-set.json": EventKind.SERVICE_CHANGED,
    "ecs-delete-service.json": EventKind.SERVICE_DELETED,
    "ecs-update-service.json": EventKind.SERVICE_CHANGED,
    "ecs-update-service-force-new-deployment.json": EventKind.IGNORE,
    "get-secret-value-access-denied.json": EventKind.IGNORE,
    "get-secret-value-marked-for-deletion-by-name.json": EventKind.PENDING_DELETION_ACCESS,
    "get-secret-value-marked-for-deletion-cross-account.json": EventKind.PENDING_DELETION_ACCESS,
    "get-secret-value-marked-for-deletion-partial-arn.json": EventKind.PENDING_DELETION_ACCESS,
    "get-secret-value-marked-for-deletion.json": EventKind.PENDING_DELETION_ACCESS,
    "get-secret-value-success.json": EventKind.IGNORE,
    "put-secret-value-awscurrent.json": EventKind.SECRET_VALUE_CHANGED,
    "put-secret-value-awspending.json": EventKind.IGNORE,
    "rotation-abandoned.json": EventKind.ROTATION_FAILED,
    "rotation-failed.json": EventKind.ROTATION_FAILED,
    "rotation-started.json": EventKind.IGNORE,
    "rotation-succeeded-api-call-detail-type.json": EventKind.ROTATION,
    "rotation-succeeded.json": EventKind.ROTATION,
    "s3-object-created.json": EventKind.IGNORE,
    "secret-label-updated-awscurrent.json": EventKind.SECRET_VALUE_CHANGED,
    "secret-label-updated-custom-label.json": EventKind.IGNORE,
    "update-secret-metadata-only.json": EventKind.IGNORE,
    "update-secret-new-value.json": EventKind.SECRET_VALUE_CHANGED,
}

#: The secret each sample names, as classify must report it (a full ARN whenever there is one).
EXPECTED_SECRETS: dict[str, str | None] = {
    "batch-get-secret-value-marked-for-deletion.json": "prod/legacy-token",
    "delete-secret-force.json": DB_ADMIN,
    "delete-secret-recovery-window.json": LEGACY,  # caller said "prod/legacy-token"
    "ecs-deployment-completed.json": None,
    "ecs-deployment-failed.json": None,
    "ecs-create-service.json": None,
    "ecs-create-task-set.json": None,
    "ecs-delete-service.json": None,
    "ecs-update-service.json": None,
    "ecs-update-service-force-new-deployment.json": None,
    "get-secret-value-access-denied.json": DB_ADMIN,
    "get-secret-value-marked-for-deletion-by-name.json": "prod/legacy-token",
    "get-secret-value-marked-for-deletion-cross-account.json": LEGACY,
    "get-secret-value-marked-for-deletion-partial-arn.json": f"{SM}prod/legacy-token",
    "get-secret-value-marked-for-deletion.json": LEGACY,
    "get-secret-value-success.json": DB,
    "put-secret-value-awscurrent.json": DB_ADMIN,  # caller said "prod/db-admin"
    "put-secret-value-awspending.json": DB,
    "rotation-abandoned.json": DB,
    "rotation-failed.json": API_SIGNER,
    "rotation-started.json": DB,
    "rotation-succeeded-api-call-detail-type.json": API_SIGNER,
    "rotation-succeeded.json": DB,
    "s3-object-created.json": None,
    "secret-label-updated-awscurrent.json": DB,
    "secret-label-updated-custom-label.json": API_SIGNER,
    "update-secret-metadata-only.json": DB,  # caller said "prod/db"
    "update-secret-new-value.json": API_SIGNER,  # legacy "aRN"; caller gave a partial ARN
}


def sample_id(path: Path) -> str:
    return path.stem


def load(name: str) -> dict[str, Any]:
    return load_event(name)


def test_every_sample_event_has_an_expected_kind_and_secret() -> None:
    names = {p.name for p in SAMPLE_EVENTS}
    assert names, "no sample events found"
    assert names == set(EXPECTED_KINDS), "add new samples to EXPECTED_KINDS (and remove old ones)"
    assert names == set(EXPECTED_SECRETS), "add new samples to EXPECTED_SECRETS"


@pytest.mark.parametrize("path", SAMPLE_EVENTS, ids=sample_id)
def test_sample_event_classifies_as_expected(path: Path) -> None:
    assert path.name in EXPECTED_KINDS, f"{path.name} has no entry in EXPECTED_KINDS"
    event = json.loads(path.read_text())
    result = classify(event)
    assert isinstance(result, Classification)
    assert result.kind is EXPECTED_KINDS[path.name]
    assert result.secret == EXPECTED_SECRETS[path.name]
    if result.secret is not None:
        assert result.secrets[0] == result.secret
    assert result.account == event["account"]
    assert result.region == event["region"]
    assert result.event_id == event["id"]
    assert result.source == event["source"]
    assert result.detail_type == event["detail-type"]
    assert result.event_time.tzinfo is not None
    assert result.reason
    json.dumps(result.to_dict())  # always serialisable


@pytest.mark.parametrize("path", SAMPLE_EVENTS, ids=sample_id)
def test_classify_accepts_str_bytes_and_dict(path: Path) -> None:
    text = path.read_text()
    from_str = classify(text)
    assert classify(text.encode()) == from_str
    assert classify(json.loads(text)) == from_str


def test_cloudtrail_event_time_is_detail_event_time_in_utc() -> None:
    event = load("rotation-succeeded.json")
    event["detail"]["eventTime"] = "2026-11-20T11:59:58+02:00"
    result = classify(event)
    assert result.event_time == datetime(2026, 11, 20, 9, 59, 58, tzinfo=UTC)
    assert result.event_time.utcoffset() is not None
    assert result.event_time.utcoffset().total_seconds() == 0


def test_cloudtrail_event_without_event_time_uses_envelope_time() -> None:
    event = load("rotation-succeeded.json")
    del event["detail"]["eventTime"]
    event["time"] = "2026-11-20T10:00:09Z"
    assert classify(event).event_time == datetime(2026, 11, 20, 10, 0, 9, tzinfo=UTC)


def test_naive_times_are_taken_as_utc() -> None:
    event = load("secret-label-updated-awscurrent.json")
    event["time"] = "2026-11-20T10:00:05"
    assert classify(event).event_time == datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)


# --- the secret ---------------------------------------------------------------------------


def test_legacy_arn_key_is_read_and_preferred_over_partial_arn() -> None:
    event = load("update-secret-new-value.json")
    assert "aRN" in event["detail"]["responseElements"]
    assert "arn" not in event["detail"]["responseElements"]
    result = classify(event)
    assert result.secret == API_SIGNER
    assert result.secrets == (API_SIGNER,)
    assert result.secret_name == "prod/api-signer"
    assert result.version_id == "b07c5222-8106-4d82-9533-f1dac6c3926e"


def test_callers_partial_arn_kept_when_nothing_better() -> None:
    event = load("update-secret-new-value.json")
    del event["detail"]["responseElements"]["aRN"]
    assert classify(event).secret == f"{SM}prod/api-signer"


def test_callers_words_naming_another_secret_are_kept_after_the_full_arn() -> None:
    event = load("update-secret-metadata-only.json")
    event["detail"]["requestParameters"]["secretId"] = "prod/db-admin"  # not prod/db
    result = classify(event)
    assert result.secret == DB
    assert result.secrets == (DB, "prod/db-admin")


def test_rotation_secret_read_from_request_id() -> None:
    event = load("rotation-succeeded.json")
    del event["detail"]["additionalEventData"]
    result = classify(event)
    assert result.kind is EventKind.ROTATION
    assert result.secret == DB


def test_rotation_secret_read_from_resources() -> None:
    event = load("rotation-succeeded.json")
    del event["detail"]["additionalEventData"]
    del event["detail"]["requestID"]
    event["resources"] = [f"{SM}prod/other-Zz11Yy"]
    result = classify(event)
    assert result.kind is EventKind.ROTATION
    assert result.secret == f"{SM}prod/other-Zz11Yy"


@pytest.mark.parametrize("key", ["SecretId", "secretId", "arn"])
@pytest.mark.parametrize(
    "sample", ["rotation-succeeded.json", "rotation-succeeded-api-call-detail-type.json"]
)
def test_rotation_secret_read_from_service_event_details(sample: str, key: str) -> None:
    """Some service events, and some forwarding rules, carry the ARN in serviceEventDetails."""
    event = load(sample)
    secret = event["detail"]["additionalEventData"]["SecretId"]
    del event["detail"]["additionalEventData"]
    del event["detail"]["requestID"]
    event["resources"] = []
    event["detail"]["serviceEventDetails"] = {key: secret}
    result = classify(event)
    assert result.kind is EventKind.ROTATION
    assert result.secret == secret
    assert result.secret_written_by_aws is True


def test_the_label_events_arn_is_written_by_aws() -> None:
    """The native event's ``resources`` ARN is AWS's own: full, its -XXXXXX suffix trusted.
    Taken as the caller's words, ``prod/db-Ab12Cd`` would be the name of a secret rotor cannot
    describe, and consumers naming ``prod/db`` would be missed."""
    result = classify(load("secret-label-updated-awscurrent.json"))
    assert result.kind is EventKind.SECRET_VALUE_CHANGED
    assert result.secret == DB
    assert result.secret_written_by_aws is True
    identity = result.secret_identity()
    assert identity is not None
    assert (identity.name, identity.suffix, identity.arn) == ("prod/db", "Ab12Cd", DB)


def test_a_label_event_without_resources_names_the_secret_in_its_own_words() -> None:
    event = load("secret-label-updated-awscurrent.json")
    event["resources"] = []
    result = classify(event)
    assert result.secret == "prod/db"
    assert result.secret_written_by_aws is False


def test_rotation_secret_documented_place_first() -> None:
    event = load("rotation-succeeded.json")
    event["resources"] = [f"{SM}prod/other-Zz11Yy"]
    result = classify(event)
    assert result.secret == DB
    assert result.secrets == (DB, f"{SM}prod/other-Zz11Yy")


def test_label_updated_without_resources_uses_detail_name() -> None:
    event = load("secret-label-updated-awscurrent.json")
    event["resources"] = []
    result = classify(event)
    assert result.kind is EventKind.SECRET_VALUE_CHANGED
    assert result.secret == "prod/db"
    assert result.version_id == "88ce1149-cf2c-4804-b1d9-2d213dd5ba3b"


def test_batch_get_names_every_secret() -> None:
    event = load("batch-get-secret-value-marked-for-deletion.json")
    event["detail"]["requestParameters"]["secretIdList"] = ["prod/legacy-token", "prod/db"]
    result = classify(event)
    assert result.secrets == ("prod/legacy-token", "prod/db")


# --- the caller ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "get-secret-value-marked-for-deletion.json",
            {
                "type": "AssumedRole",
                "account": ACCOUNT,
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/api-task-role",
                "session_name": "5f0c2a9e8b7d4c3fa1e6d2b9c8a7f4e1",
                "source_ip": "10.0.12.34",
                "principal": f"arn:aws:iam::{ACCOUNT}:role/api-task-role",
            },
            id="assumed-role",
        ),
        pytest.param(
            "get-secret-value-marked-for-deletion-cross-account.json",
            {
                "type": "AssumedRole",
                "account": "210987654321",
                "role_arn": "arn:aws:iam::210987654321:role/reporting-task-role",
                "session_name": "9b3e71d04c2a4f8e8d6b5a1c0e7f2d93",
                "source_ip": "44.212.87.130",
                "principal": "arn:aws:iam::210987654321:role/reporting-task-role",
            },
            id="cross-account-role",
        ),
        pytest.param(
            "delete-secret-force.json",
            {
                "type": "IAMUser",
                "account": ACCOUNT,
                "role_arn": None,
                "session_name": None,
                "source_ip": "203.0.113.42",
                "principal": f"arn:aws:iam::{ACCOUNT}:user/alice",
            },
            id="iam-user",
        ),
        pytest.param(
            "rotation-succeeded.json",
            {
                "type": None,
                "account": ACCOUNT,
                "role_arn": None,
                "session_name": None,
                "source_ip": "secretsmanager.amazonaws.com",
                "principal": "secretsmanager.amazonaws.com",
            },
            id="aws-service",
        ),
    ],
)
def test_caller(name: str, expected: dict[str, Any]) -> None:
    event = load(name)
    caller = classify(event).caller
    assert caller is not None
    actual = {key: getattr(caller, key) for key in expected}
    assert actual == expected
    assert caller.user_agent == event["detail"]["userAgent"]
    assert caller.principal in caller.describe()


def test_caller_describe_names_role_session_ip_and_agent() -> None:
    caller = classify(load("get-secret-value-marked-for-deletion.json")).caller
    assert caller is not None
    text = caller.describe()
    assert f"arn:aws:iam::{ACCOUNT}:role/api-task-role" in text
    assert "(session 5f0c2a9e8b7d4c3fa1e6d2b9c8a7f4e1)" in text
    assert "from 10.0.12.34" in text
    assert "via Boto3/1.35.63" in text


def test_event_without_user_identity_has_no_caller() -> None:
    event = load("rotation-succeeded.json")
    del event["detail"]["userIdentity"]
    assert classify(event).caller is None


# --- kinds, case by case ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "window", "force", "date"),
    [
        pytest.param(
            "delete-secret-recovery-window.json",
            7,
            False,
            "Nov 27, 2026, 11:00:00 AM",
            id="recovery-window",
        ),
        pytest.param(
            "delete-secret-force.json", None, True, "Nov 20, 2026, 11:30:12 AM", id="force"
        ),
    ],
)
def test_delete_secret_fields(name: str, window: int | None, force: bool, date: str) -> None:
    result = classify(load(name))
    assert result.kind is EventKind.DELETION_SCHEDULED
    assert result.recovery_window_days == window
    assert result.force_delete is force
    assert result.deletion_date == date


@pytest.mark.parametrize(
    ("params", "window", "force"),
    [
        pytest.param({"recoveryWindowInDays": "14"}, 14, False, id="window-as-text"),
        pytest.param({}, 30, False, id="default-window-30"),
        pytest.param({"forceDeleteWithoutRecovery": "true"}, None, True, id="force-as-text"),
        pytest.param({"forceDeleteWithoutRecovery": False}, 30, False, id="force-false"),
    ],
)
def test_delete_secret_parameters(params: dict[str, Any], window: int | None, force: bool) -> None:
    event = load("delete-secret-recovery-window.json")
    event["detail"]["requestParameters"] = {"secretId": "prod/legacy-token", **params}
    result = classify(event)
    assert result.kind is EventKind.DELETION_SCHEDULED
    assert (result.recovery_window_days, result.force_delete) == (window, force)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            "You can't perform this operation on the secret because it was marked for deletion.",
            id="ascii-apostrophe",
        ),
        pytest.param(
            "You can\u2019t perform this operation on the secret because it was marked for "
            "deletion.",
            id="u2019-apostrophe",
        ),
        pytest.param(
            "You cant perform this operation on the secret because it was marked for deletion.",
            id="no-apostrophe",
        ),
        pytest.param(
            "You can't perform this operation on the secret because it was deleted.",
            id="older-text-deleted",
        ),
        pytest.param(
            "You can\u2019t perform this operation on the secret because it was deleted.",
            id="older-text-u2019",
        ),
    ],
)
@pytest.mark.parametrize(
    "name",
    [
        "get-secret-value-marked-for-deletion-by-name.json",
        "batch-get-secret-value-marked-for-deletion.json",
    ],
)
def test_pending_deletion_messages(name: str, message: str) -> None:
    event = load(name)
    event["detail"]["errorMessage"] = message
    result = classify(event)
    assert result.kind is EventKind.PENDING_DELETION_ACCESS
    assert result.error_code == "InvalidRequestException"
    assert result.error_message == message


def test_the_u2019_sample_is_pending_deletion_access() -> None:
    event = load("get-secret-value-marked-for-deletion.json")
    assert "\u2019" in event["detail"]["errorMessage"]
    assert classify(event).kind is EventKind.PENDING_DELETION_ACCESS


def test_the_older_text_sample_is_pending_deletion_access() -> None:
    event = load("get-secret-value-marked-for-deletion-partial-arn.json")
    assert event["detail"]["errorMessage"].endswith("because it was deleted.")
    assert classify(event).kind is EventKind.PENDING_DELETION_ACCESS


def test_rotation_failed_with_error_message_is_rotation_failed() -> None:
    event = load("rotation-failed.json")
    message = event["detail"]["errorMessage"]
    assert message
    result = classify(event)
    assert result.kind is EventKind.ROTATION_FAILED
    assert result.error_message == message
    assert message in result.reason


@pytest.mark.parametrize(
    ("sample", "key", "value", "kind"),
    [
        pytest.param(
            "get-secret-value-marked-for-deletion-by-name.json",
            "errorMessage",
            "You provided an invalid value for the VersionStage parameter.",
            EventKind.IGNORE,
            id="other-invalid-request-errors-are-ignored",
        ),
        pytest.param(
            "rotation-failed.json",
            "errorCode",
            "InternalFailure",
            EventKind.ROTATION_FAILED,
            id="rotation-failed-with-error-code-is-still-rotation-failed",
        ),
        pytest.param(
            "rotation-failed.json",
            "errorMessage",
            "You can't perform this operation on the secret because it was marked for deletion.",
            EventKind.ROTATION_FAILED,
            id="rotation-failed-mentioning-deletion-is-still-rotation-failed",
        ),
    ],
)
def test_the_error_in_the_detail_decides_the_kind(
    sample: str, key: str, value: str, kind: EventKind
) -> None:
    event = load(sample)
    event["detail"][key] = value
    assert classify(event).kind is kind


@pytest.mark.parametrize(
    ("stages", "kind"),
    [
        pytest.param(None, EventKind.SECRET_VALUE_CHANGED, id="no-stages"),
        pytest.param(["AWSCURRENT"], EventKind.SECRET_VALUE_CHANGED, id="awscurrent"),
        pytest.param(
            ["AWSCURRENT", "blue"], EventKind.SECRET_VALUE_CHANGED, id="awscurrent-and-custom"
        ),
        pytest.param(["AWSPENDING"], EventKind.IGNORE, id="awspending"),
        pytest.param(["blue"], EventKind.IGNORE, id="custom-stage"),
        pytest.param(["AWSPREVIOUS"], EventKind.IGNORE, id="awsprevious"),
    ],
)
def test_put_secret_value_stages(stages: list[str] | None, kind: EventKind) -> None:
    event = load("put-secret-value-awscurrent.json")
    request = event["detail"]["requestParameters"]
    request.pop("versionStages", None)
    if stages is not None:
        request["versionStages"] = stages
    result = classify(event)
    assert result.kind is kind
    assert result.secret == DB_ADMIN


def test_put_secret_value_awscurrent_carries_version() -> None:
    result = classify(load("put-secret-value-awscurrent.json"))
    assert result.version_id == "3faa8703-fc40-4055-a73e-674b58f53263"


def test_update_secret_without_version_id_is_ignored() -> None:
    event = load("update-secret-metadata-only.json")
    assert "versionId" not in event["detail"]["responseElements"]
    result = classify(event)
    assert result.kind is EventKind.IGNORE
    assert result.version_id is None


@pytest.mark.parametrize(
    "name",
    [
        "put-secret-value-awscurrent.json",
        "update-secret-new-value.json",
        "delete-secret-recovery-window.json",
    ],
)
def test_failed_writes_are_ignored(name: str) -> None:
    event = load(name)
    event["detail"]["errorCode"] = "AccessDeniedException"
    event["detail"]["errorMessage"] = "User is not authorized to perform this operation"
    event["detail"]["responseElements"] = None
    result = classify(event)
    assert result.kind is EventKind.IGNORE
    assert result.error_code == "AccessDeniedException"


def test_access_denied_read_is_ignored() -> None:
    result = classify(load("get-secret-value-access-denied.json"))
    assert result.kind is EventKind.IGNORE
    assert result.error_code == "AccessDenied"


def test_successful_read_is_ignored() -> None:
    result = classify(load("get-secret-value-success.json"))
    assert result.kind is EventKind.IGNORE
    assert result.error_code is None


def test_s3_event_is_ignored() -> None:
    result = classify(load("s3-object-created.json"))
    assert result.kind is EventKind.IGNORE
    assert result.secret is None
    assert result.secrets == ()


@pytest.mark.parametrize(
    ("name", "event_name", "deployment"),
    [
        pytest.param(
            "ecs-deployment-completed.json",
            "SERVICE_DEPLOYMENT_COMPLETED",
            "ecs-svc/4127809365512873401",
            id="completed",
        ),
        pytest.param(
            "ecs-deployment-failed.json",
            "SERVICE_DEPLOYMENT_FAILED",
            "ecs-svc/8830215647719038652",
            id="failed",
        ),
    ],
)
def test_ecs_deployment_events(name: str, event_name: str, deployment: str) -> None:
    result = classify(load(name))
    assert result.kind is EventKind.DEPLOYMENT_STATE
    assert result.service_arn == API_SERVICE
    assert result.event_name == event_name
    assert result.deployment_id == deployment


def test_ecs_event_of_another_detail_type_is_ignored() -> None:
    event = load("ecs-deployment-completed.json")
    event["detail-type"] = "ECS Service Action"
    assert classify(event).kind is EventKind.IGNORE


# --- malformed events ---------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def mutate(event: dict[str, Any]) -> None:
        target = event
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _delete(*paths: str) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        for path in paths:
            *parents, last = path.split(".")
            target = event
            for key in parents:
                target = target[key]
            del target[last]

    return mutate


def _no_secret_anywhere(event: dict[str, Any]) -> None:
    detail = event["detail"]
    for key in ("additionalEventData", "requestID"):
        detail.pop(key, None)
    detail["requestParameters"] = None
    detail["responseElements"] = None
    event["resources"] = []


def _no_label_secret(event: dict[str, Any]) -> None:
    event["resources"] = []
    del event["detail"]["name"]


INVALID_MUTATIONS = [
    ("missing-detail", "rotation-succeeded.json", _delete("detail"), "detail"),
    ("detail-is-a-string", "rotation-succeeded.json", _set("detail", "oops"), "detail"),
    ("detail-is-null", "secret-label-updated-awscurrent.json", _set("detail", None), "detail"),
    ("missing-source", "rotation-succeeded.json", _delete("source"), "source"),
    ("missing-detail-type", "rotation-succeeded.json", _delete("detail-type"), "detail-type"),
    ("missing-account", "s3-object-created.json", _delete("account"), "account"),
    ("bad-time", "rotation-succeeded.json", _set("time", "yesterday"), "time"),
    ("bad-event-time", "rotation-succeeded.json", _set("detail.eventTime", "soon"), "eventTime"),
    ("resources-not-a-list", "rotation-succeeded.json", _set("resources", "arn"), "resources"),
    ("rotation-no-secret", "rotation-succeeded.json", _no_secret_anywhere, "names no secret"),
    ("rotation-failed-no-secret", "rotation-failed.json", _no_secret_anywhere, "names no secret"),
    (
        "deletion-no-secret",
        "delete-secret-recovery-window.json",
        _no_secret_anywhere,
        "names no secret",
    ),
    ("missing-event-name", "rotation-succeeded.json", _delete("detail.eventName"), "eventName"),
    (
        "version-stages-not-a-list",
        "put-secret-value-awspending.json",
        _set("detail.requestParameters.versionStages", "AWSPENDING"),
        "versionStages",
    ),
    (
        "version-stages-not-strings",
        "put-secret-value-awspending.json",
        _set("detail.requestParameters.versionStages", [1]),
        "versionStages",
    ),
    (
        "recovery-window-abc",
        "delete-secret-recovery-window.json",
        _set("detail.requestParameters.recoveryWindowInDays", "abc"),
        "recoveryWindowInDays",
    ),
    (
        "recovery-window-list",
        "delete-secret-recovery-window.json",
        _set("detail.requestParameters.recoveryWindowInDays", [7]),
        "recoveryWindowInDays",
    ),
    (
        "secret-id-list-not-a-list",
        "batch-get-secret-value-marked-for-deletion.json",
        _set("detail.requestParameters.secretIdList", "prod/legacy-token"),
        "secretIdList",
    ),
    (
        "response-arn-not-text",
        "update-secret-metadata-only.json",
        _set("detail.responseElements.arn", 42),
        "arn",
    ),
    (
        "request-parameters-not-an-object",
        "update-secret-metadata-only.json",
        _set("detail.requestParameters", ["prod/db"]),
        "requestParameters",
    ),
    (
        "label-missing",
        "secret-label-updated-awscurrent.json",
        _delete("detail.labelUpdated"),
        "labelUpdated",
    ),
    (
        "label-updated-no-secret",
        "secret-label-updated-awscurrent.json",
        _no_label_secret,
        "names no secret",
    ),
    (
        "ecs-no-event-name",
        "ecs-deployment-failed.json",
        _delete("detail.eventName"),
        "eventName",
    ),
]


@pytest.mark.parametrize(
    ("name", "mutate", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID_MUTATIONS],
)
def test_malformed_events_raise_naming_the_problem(
    name: str, mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    event = copy.deepcopy(load(name))
    mutate(event)
    with pytest.raises(InvalidEventError) as caught:
        classify(event)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("not json", "not JSON", id="not-json-text"),
        pytest.param("", "not JSON", id="empty-text"),
        pytest.param(b"\xff\xfe\xfa", "not JSON", id="not-utf8-bytes"),
        pytest.param("[1, 2]", "not list", id="json-list"),
        pytest.param("42", "not int", id="json-number"),
        pytest.param('"event"', "not str", id="json-string"),
        pytest.param("null", "not NoneType", id="json-null"),
        pytest.param([{"source": "aws.s3"}], "not list", id="python-list"),
        pytest.param(42, "not int", id="python-number"),
        pytest.param(None, "not NoneType", id="python-none"),
        pytest.param({}, "Field required", id="empty-object"),
    ],
)
def test_not_an_event(value: Any, message: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        classify(value)
    assert message in str(caught.value)


# --- bugs: these inputs let a non-rotor exception escape classify() ----------------------


@pytest.mark.parametrize(
    ("name", "path", "moment"),
    [
        pytest.param("s3-object-created.json", "time", "0001-01-01T00:00:00+01:00", id="time-min"),
        pytest.param("s3-object-created.json", "time", "9999-12-31T23:30:00-05:00", id="time-max"),
        pytest.param(
            "rotation-succeeded.json",
            "detail.eventTime",
            "0001-01-01T00:30:00+01:00",
            id="event-time-min",
        ),
    ],
)
def test_timestamp_outside_utc_range_is_invalid_event(name: str, path: str, moment: str) -> None:
    """A well-formed ISO timestamp whose UTC value falls outside datetime's range.

    ``_utc`` calls ``astimezone(UTC)`` which raises OverflowError; classify must report the
    event as invalid (InvalidEventError) so handlers drop it instead of crashing.
    """
    event = load(name)
    _set(path, moment)(event)
    with pytest.raises(InvalidEventError):
        classify(event)


def test_deeply_nested_json_text_is_invalid_event() -> None:
    """json.loads raises RecursionError on deep nesting; classify must turn it into
    InvalidEventError like any other text that is not an event."""
    with pytest.raises(InvalidEventError):
        classify("[" * 100_000 + "]" * 100_000)


# --- partitions: every region botocore knows, not only the commercial one -----------------


def _moved(path: Path, partition: str, region: str) -> dict[str, Any]:
    """The sample as it reads in ``region`` (of ``partition``): every ARN and region moved."""
    text = path.read_text().replace("arn:aws:", f"arn:{partition}:")
    value: dict[str, Any] = json.loads(text.replace("us-east-1", region))
    return value


@pytest.mark.parametrize(
    ("partition", "region"),
    [
        ("aws-eusc", "eusc-de-east-1"),
        ("aws-cn", "cn-north-1"),
        ("aws-us-gov", "us-gov-west-1"),
        ("aws-iso", "us-iso-east-1"),
        ("aws-iso-b", "us-isob-east-1"),
        ("aws-iso-e", "eu-isoe-west-1"),
        ("aws-iso-f", "us-isof-south-1"),
    ],
)
@pytest.mark.parametrize("path", SAMPLE_EVENTS, ids=sample_id)
def test_sample_events_of_every_partition_classify_as_in_aws(
    path: Path, partition: str, region: str
) -> None:
    result = classify(_moved(path, partition, region))
    assert result.kind is EXPECTED_KINDS[path.name]
    assert result.region == region
    expected = EXPECTED_SECRETS[path.name]
    if expected is not None:
        moved = expected.replace("arn:aws:", f"arn:{partition}:").replace("us-east-1", region)
        assert result.secret == moved
        identity = result.secret_identity()
        assert identity is not None
        assert (identity.partition, identity.region) == (partition, region)


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in SAMPLE_EVENTS
        if EXPECTED_KINDS[p.name] is not EventKind.IGNORE and EXPECTED_SECRETS[p.name]
    ],
    ids=sample_id,
)
def test_an_event_from_a_made_up_region_is_invalid(path: Path) -> None:
    with pytest.raises(InvalidEventError, match="region"):
        classify(_moved(path, "aws", "moon-base-1"))


def test_an_arn_whose_partition_is_not_its_regions_is_invalid() -> None:
    label = next(p for p in SAMPLE_EVENTS if p.name == "secret-label-updated-awscurrent.json")
    event = _moved(label, "aws", "cn-north-1")
    with pytest.raises(InvalidEventError, match="partition"):
        classify(event)


# --- found by mutation testing: what no test pinned ---------------------------------------


def test_a_bare_name_in_an_event_is_a_secret_of_the_events_account_and_region() -> None:
    event = load("put-secret-value-awscurrent.json")
    event["detail"]["requestParameters"]["secretId"] = "prod/db"
    event["detail"]["responseElements"] = None
    result = classify(event)
    assert result.secret == "prod/db"
    assert result.secret_written_by_aws is False
    assert result.secret_identity() == SecretIdentity("aws", "us-east-1", ACCOUNT, "prod/db")


def test_a_call_that_failed_with_a_code_and_no_message_changed_nothing() -> None:
    event = load("put-secret-value-awscurrent.json")
    event["detail"]["errorCode"] = "AccessDenied"
    event["detail"].pop("errorMessage", None)
    result = classify(event)
    assert result.kind is EventKind.IGNORE
    assert result.reason == "PutSecretValue failed (AccessDenied); nothing changed"


def test_a_deployment_event_names_the_service_not_the_cluster() -> None:
    event = load("ecs-deployment-completed.json")
    service = event["resources"][0]
    event["resources"] = [f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/prod", service]
    assert classify(event).service_arn == service


@pytest.mark.parametrize("key", ["SecretId", "secretId"])
def test_rotation_secret_read_from_additional_event_data_alone(key: str) -> None:
    event = load("rotation-succeeded.json")
    event["detail"]["additionalEventData"] = {key: DB}
    event["detail"]["requestID"] = "not-a-rotation-request-id"
    event["resources"] = []
    result = classify(event)
    assert result.secret == DB
    assert result.secret_written_by_aws is True


def test_the_caller_of_an_assumed_role_session() -> None:
    result = classify(load("get-secret-value-marked-for-deletion.json"))
    caller = result.caller
    assert caller is not None
    assert caller.type == "AssumedRole"
    assert caller.principal_id == "AROAR7KQ2M4XN5B6C3D2E:5f0c2a9e8b7d4c3fa1e6d2b9c8a7f4e1"
    assert caller.role_arn == f"arn:aws:iam::{ACCOUNT}:role/api-task-role"
    assert caller.session_name == "5f0c2a9e8b7d4c3fa1e6d2b9c8a7f4e1"
    assert caller.principal == caller.role_arn
    assert caller.describe().startswith(
        f"arn:aws:iam::{ACCOUNT}:role/api-task-role (session 5f0c2a9e8b7d4c3fa1e6d2b9c8a7f4e1)"
        " from 10.0.12.34 via Boto3/"
    )


def test_a_federated_users_issuer_is_not_a_role() -> None:
    event = load("get-secret-value-marked-for-deletion.json")
    identity = event["detail"]["userIdentity"]
    identity["type"] = "FederatedUser"
    identity["arn"] = f"arn:aws:sts::{ACCOUNT}:federated-user/alice"
    identity["sessionContext"]["sessionIssuer"] = {
        "type": "IAMUser",
        "arn": f"arn:aws:iam::{ACCOUNT}:user/broker",
    }
    caller = classify(event).caller
    assert caller is not None
    assert caller.role_arn is None
    assert caller.session_name is None
    assert caller.principal == f"arn:aws:sts::{ACCOUNT}:federated-user/alice"
    assert caller.describe().startswith(f"arn:aws:sts::{ACCOUNT}:federated-user/alice from ")


def test_a_service_caller_is_named_by_principal_id_when_it_has_nothing_else() -> None:
    event = load("get-secret-value-marked-for-deletion.json")
    event["detail"]["userIdentity"] = {"type": "AWSService", "principalId": "AIDAEXAMPLE"}
    caller = classify(event).caller
    assert caller is not None
    assert (caller.arn, caller.role_arn, caller.principal) == (None, None, "AIDAEXAMPLE")


def test_a_caller_is_described_by_what_is_known() -> None:
    from orchestration.events.classification import Caller

    role = f"arn:aws:iam::{ACCOUNT}:role/api-task-role"
    assert Caller(role_arn=role).describe() == role
    assert Caller(role_arn=role, session_name="s1").describe() == f"{role} (session s1)"
    assert Caller(arn="a", session_name="s1").describe() == "a"


# --- ECS calls that change a service (the consumer index) ----------------------------------

BILLING = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/billing"
PROD = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/prod"


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ("ecs-create-service.json", EventKind.SERVICE_CHANGED),
        ("ecs-update-service.json", EventKind.SERVICE_CHANGED),
        ("ecs-delete-service.json", EventKind.SERVICE_DELETED),
    ],
)
def test_an_ecs_service_change_names_the_service_and_cluster_aws_wrote(
    sample: str, kind: EventKind
) -> None:
    found = classify(load_event(sample))

    assert (found.kind, found.service_arn, found.cluster) == (kind, BILLING, PROD)
    assert found.caller is not None and found.caller.role_arn.endswith("role/deploy-pipeline")


def test_a_task_set_names_its_service_from_the_task_set() -> None:
    found = classify(load_event("ecs-create-task-set.json"))

    assert found.kind is EventKind.SERVICE_CHANGED
    assert found.service_arn == f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/checkout"


def test_an_ecs_call_without_a_response_names_the_service_in_the_callers_words() -> None:
    event = load_event("ecs-create-service.json")
    event["detail"]["responseElements"] = None
    event["detail"]["requestParameters"].pop("cluster")

    found = classify(event)

    assert (found.kind, found.service_arn, found.cluster) == (
        EventKind.SERVICE_CHANGED,
        "billing",
        "default",  # ECS's default cluster when the call names none
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.update(errorCode="InvalidParameterException"), "failed"),
        (lambda d: d["requestParameters"].pop("taskDefinition"), "without a task definition"),
        (lambda d: d.update(eventName="TagResource"), "changes no service"),
    ],
    ids=["failed", "scaling-or-force", "other-call"],
)
def test_ecs_calls_that_change_no_task_definition_are_ignored(
    change: Callable[[dict[str, Any]], Any], why: str
) -> None:
    event = load_event("ecs-update-service.json")
    change(event["detail"])

    found = classify(event)

    assert found.kind is EventKind.IGNORE
    assert why in found.reason


def test_an_ecs_change_that_names_no_service_is_invalid() -> None:
    event = load_event("ecs-create-service.json")
    event["detail"]["responseElements"] = None
    event["detail"]["requestParameters"].pop("serviceName")

    with pytest.raises(InvalidEventError, match="names no service"):
        classify(event)
