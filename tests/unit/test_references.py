"""Secret references in task definitions: every form ECS accepts, and the matching traps."""

from __future__ import annotations

import pytest

from orchestration.errors import InvalidReferenceError
from orchestration.secrets.references import (
    ReferenceField,
    ReferenceKind,
    SecretIdentity,
    SecretReference,
    parse_reference,
    partition_of,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
SM = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:"
SSM = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
PASS = "/aws/reference/secretsmanager/"
RDS_NAME = "rds!db-3f1c0e9a-6b2d-4c8e-9a71-2d5e8f4b1c07"

SECRETS = ReferenceField.SECRETS
REPO = ReferenceField.REPOSITORY_CREDENTIALS
LOGS = ReferenceField.SECRET_OPTIONS


def secret(name: str, suffix: str | None, **where: str) -> SecretIdentity:
    location = {"partition": "aws", "region": REGION, "account": ACCOUNT, **where}
    return SecretIdentity(name=name, suffix=suffix, **location)


PROD_DB = secret("prod/db", "Ab12Cd")
PROD_DB_BY_NAME = secret("prod/db", None)
DB_ADMIN = secret("prod/db-admin", "Xy98Zw")
# A secret whose own NAME ends in "-" plus six characters, like a suffix would.
DB_ADMIN1 = secret("prod/db-Admin1", "Zz99Yy")
API = secret("prod/api", "Pq12Rs")
API_SIGNER = secret("prod/api-signer", "Qw34Er")
RDS = secret(RDS_NAME, "Mn78Op")
OTHER_RDS = secret("rds!db-00000000-1111-2222-3333-444444444444", "Mn78Op")


def parse(
    value: str,
    field: ReferenceField = SECRETS,
    *,
    partition: str = "aws",
    region: str = REGION,
    account: str = ACCOUNT,
) -> SecretReference:
    return parse_reference(value, field, partition=partition, region=region, account=account)


# --- parsing every form ------------------------------------------------------------------

# id, value, field, kind, (partition, region, account), name_part, json_key, stage, version, pinned
PARSE_CASES = [
    (
        "full-arn",
        f"{SM}prod/db-Ab12Cd",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        None,
        None,
        None,
        False,
    ),
    (
        "full-arn-json-key-trailing-colons",
        f"{SM}prod/db-Ab12Cd:password::",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        "password",
        None,
        None,
        False,
    ),
    (
        "full-arn-empty-selectors",
        f"{SM}prod/db-Ab12Cd:::",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        None,
        None,
        None,
        False,
    ),
    (
        "stage-awscurrent-unpinned",
        f"{SM}prod/db-Ab12Cd:password:AWSCURRENT:",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        "password",
        "AWSCURRENT",
        None,
        False,
    ),
    (
        "stage-awsprevious-pinned",
        f"{SM}prod/db-Ab12Cd:password:AWSPREVIOUS:",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        "password",
        "AWSPREVIOUS",
        None,
        True,
    ),
    (
        "custom-stage-pinned",
        f"{SM}prod/db-Ab12Cd::blue:",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        None,
        "blue",
        None,
        True,
    ),
    (
        "version-id-pinned",
        f"{SM}prod/db-Ab12Cd:password::88ce1149-cf2c-4804-b1d9-2d213dd5ba3b",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        "password",
        None,
        "88ce1149-cf2c-4804-b1d9-2d213dd5ba3b",
        True,
    ),
    (
        "awscurrent-plus-version-id-pinned",
        f"{SM}prod/db-Ab12Cd::AWSCURRENT:88ce1149-cf2c-4804-b1d9-2d213dd5ba3b",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db-Ab12Cd",
        None,
        "AWSCURRENT",
        "88ce1149-cf2c-4804-b1d9-2d213dd5ba3b",
        True,
    ),
    (
        "partial-arn",
        f"{SM}prod/db",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db",
        None,
        None,
        None,
        False,
    ),
    (
        "partial-arn-json-key",
        f"{SM}prod/db:password::",
        LOGS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/db",
        "password",
        None,
        None,
        False,
    ),
    (
        "cross-account-full-arn",
        f"arn:aws:secretsmanager:eu-west-1:{OTHER_ACCOUNT}:secret:shared/key-Ab12Cd:k::",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", "eu-west-1", OTHER_ACCOUNT),
        "shared/key-Ab12Cd",
        "k",
        None,
        None,
        False,
    ),
    (
        "gov-cloud-arn",
        f"arn:aws-us-gov:secretsmanager:us-gov-west-1:{ACCOUNT}:secret:prod/db-Ab12Cd",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws-us-gov", "us-gov-west-1", ACCOUNT),
        "prod/db-Ab12Cd",
        None,
        None,
        None,
        False,
    ),
    (
        "rds-managed-name",
        f"{SM}{RDS_NAME}-Mn78Op:password::",
        SECRETS,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        f"{RDS_NAME}-Mn78Op",
        "password",
        None,
        None,
        False,
    ),
    (
        "ssm-name-with-slash",
        "/prod/x",
        SECRETS,
        ReferenceKind.SSM_PARAMETER,
        ("aws", REGION, ACCOUNT),
        "/prod/x",
        None,
        None,
        None,
        False,
    ),
    (
        "ssm-name-plain",
        "x",
        SECRETS,
        ReferenceKind.SSM_PARAMETER,
        ("aws", REGION, ACCOUNT),
        "x",
        None,
        None,
        None,
        False,
    ),
    (
        "ssm-name-in-secret-options",
        "/prod/splunk-token",
        LOGS,
        ReferenceKind.SSM_PARAMETER,
        ("aws", REGION, ACCOUNT),
        "/prod/splunk-token",
        None,
        None,
        None,
        False,
    ),
    (
        "ssm-name-that-looks-like-a-secret-name",
        "prod/db",
        SECRETS,
        ReferenceKind.SSM_PARAMETER,
        ("aws", REGION, ACCOUNT),
        "prod/db",
        None,
        None,
        None,
        False,
    ),
    (
        "ssm-arn",
        f"{SSM}/prod/x",
        SECRETS,
        ReferenceKind.SSM_PARAMETER,
        ("aws", REGION, ACCOUNT),
        "/prod/x",
        None,
        None,
        None,
        False,
    ),
    (
        "ssm-passthrough-name",
        f"{PASS}prod/db",
        SECRETS,
        ReferenceKind.SSM_PASSTHROUGH,
        ("aws", REGION, ACCOUNT),
        "prod/db",
        None,
        None,
        None,
        False,
    ),
    (
        "ssm-passthrough-arn",
        f"{SSM}{PASS}prod/db",
        LOGS,
        ReferenceKind.SSM_PASSTHROUGH,
        ("aws", REGION, ACCOUNT),
        "prod/db",
        None,
        None,
        None,
        False,
    ),
    (
        "ssm-passthrough-arn-other-account",
        f"arn:aws:ssm:{REGION}:{OTHER_ACCOUNT}:parameter{PASS}prod/db",
        SECRETS,
        ReferenceKind.SSM_PASSTHROUGH,
        ("aws", REGION, OTHER_ACCOUNT),
        "prod/db",
        None,
        None,
        None,
        False,
    ),
    (
        "repository-credentials-bare-name",
        "prod/api-signer",
        REPO,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/api-signer",
        None,
        None,
        None,
        False,
    ),
    (
        "repository-credentials-arn",
        f"{SM}prod/api-signer-Qw34Er",
        REPO,
        ReferenceKind.SECRET,
        ("aws", REGION, ACCOUNT),
        "prod/api-signer-Qw34Er",
        None,
        None,
        None,
        False,
    ),
]


@pytest.mark.parametrize(
    ("value", "field", "kind", "location", "name_part", "json_key", "stage", "version", "pinned"),
    [pytest.param(*case[1:], id=case[0]) for case in PARSE_CASES],
)
def test_parse_reference_forms(
    value: str,
    field: ReferenceField,
    kind: ReferenceKind,
    location: tuple[str, str, str],
    name_part: str,
    json_key: str | None,
    stage: str | None,
    version: str | None,
    pinned: bool,
) -> None:
    ref = parse(value, field)
    assert ref.raw == value
    assert ref.field is field
    assert ref.kind is kind
    assert (ref.partition, ref.region, ref.account) == location
    assert ref.name_part == name_part
    assert (ref.json_key, ref.version_stage, ref.version_id) == (json_key, stage, version)
    assert ref.pinned is pinned


def test_repository_credentials_bare_name_takes_the_task_definitions_account_and_region() -> None:
    ref = parse("prod/api-signer", REPO, partition="aws-cn", region="cn-north-1", account="1" * 12)
    assert (ref.partition, ref.region, ref.account) == ("aws-cn", "cn-north-1", "1" * 12)
    assert ref.points_at(
        secret(
            "prod/api-signer", "Qw34Er", partition="aws-cn", region="cn-north-1", account="1" * 12
        )
    )
    assert not ref.points_at(API_SIGNER)


# --- points_at: what matches and the traps -----------------------------------------------

POINTS_AT_CASES = [
    # the plain forms
    ("full-arn", f"{SM}prod/db-Ab12Cd", SECRETS, PROD_DB, True),
    ("full-arn-json-key", f"{SM}prod/db-Ab12Cd:password::", SECRETS, PROD_DB, True),
    ("pinned-still-points-at", f"{SM}prod/db-Ab12Cd:password:AWSPREVIOUS:", SECRETS, PROD_DB, True),
    ("partial-arn-vs-full-identity", f"{SM}prod/db", SECRETS, PROD_DB, True),
    ("partial-arn-json-key-vs-full-identity", f"{SM}prod/db:password::", LOGS, PROD_DB, True),
    ("partial-arn-vs-name-only-identity", f"{SM}prod/db", SECRETS, PROD_DB_BY_NAME, True),
    ("passthrough", f"{PASS}prod/db", SECRETS, PROD_DB, True),
    ("passthrough-ssm-arn", f"{SSM}{PASS}prod/db", SECRETS, PROD_DB, True),
    ("repo-creds-bare-name", "prod/db", REPO, PROD_DB, True),
    ("repo-creds-arn", f"{SM}prod/db-Ab12Cd", REPO, PROD_DB, True),
    # SSM parameters never point at a secret, whatever their name
    ("ssm-name-same-as-secret", "prod/db", SECRETS, PROD_DB, False),
    ("ssm-name-same-as-secret-in-logs", "prod/db", LOGS, PROD_DB_BY_NAME, False),
    ("ssm-slash-name", "/prod/db", SECRETS, PROD_DB, False),
    ("ssm-arn", f"{SSM}/prod/db", SECRETS, PROD_DB, False),
    ("ssm-arn-no-slash", f"{SSM}/prod-db-Ab12Cd", SECRETS, PROD_DB, False),
    # prod/db vs prod/db-admin, both ways, every form
    ("db-partial-vs-db-admin", f"{SM}prod/db", SECRETS, DB_ADMIN, False),
    ("db-full-vs-db-admin", f"{SM}prod/db-Ab12Cd", SECRETS, DB_ADMIN, False),
    ("db-passthrough-vs-db-admin", f"{PASS}prod/db", SECRETS, DB_ADMIN, False),
    ("db-bare-vs-db-admin", "prod/db", REPO, DB_ADMIN, False),
    ("db-admin-partial-vs-db", f"{SM}prod/db-admin", SECRETS, PROD_DB, False),
    ("db-admin-full-vs-db", f"{SM}prod/db-admin-Xy98Zw", SECRETS, PROD_DB, False),
    ("db-admin-passthrough-vs-db", f"{PASS}prod/db-admin", SECRETS, PROD_DB, False),
    ("db-admin-bare-vs-db", "prod/db-admin", REPO, PROD_DB, False),
    ("db-admin-partial-vs-db-name-only", f"{SM}prod/db-admin", SECRETS, PROD_DB_BY_NAME, False),
    # prod/api-signer vs prod/api, both ways
    ("api-signer-partial-vs-api", f"{SM}prod/api-signer", SECRETS, API, False),
    ("api-signer-full-vs-api", f"{SM}prod/api-signer-Qw34Er", SECRETS, API, False),
    ("api-signer-bare-vs-api", "prod/api-signer", REPO, API, False),
    ("api-partial-vs-api-signer", f"{SM}prod/api", SECRETS, API_SIGNER, False),
    ("api-full-vs-api-signer", f"{SM}prod/api-Pq12Rs", SECRETS, API_SIGNER, False),
    ("api-passthrough-vs-api-signer", f"{PASS}prod/api", SECRETS, API_SIGNER, False),
    # a secret whose NAME ends in "-XXXXXX": prod/db-Admin1 (its own suffix Zz99Yy)
    ("db-admin1-partial-vs-db", f"{SM}prod/db-Admin1", SECRETS, PROD_DB, False),
    ("db-admin1-full-vs-db", f"{SM}prod/db-Admin1-Zz99Yy", SECRETS, PROD_DB, False),
    ("db-admin1-partial-vs-db-name-only", f"{SM}prod/db-Admin1", SECRETS, PROD_DB_BY_NAME, False),
    (
        "db-admin1-full-vs-db-name-only",
        f"{SM}prod/db-Admin1-Zz99Yy",
        SECRETS,
        PROD_DB_BY_NAME,
        False,
    ),
    ("db-admin1-passthrough-vs-db", f"{PASS}prod/db-Admin1", SECRETS, PROD_DB, False),
    ("db-partial-vs-db-admin1", f"{SM}prod/db", SECRETS, DB_ADMIN1, False),
    ("db-full-vs-db-admin1", f"{SM}prod/db-Ab12Cd", SECRETS, DB_ADMIN1, False),
    ("db-admin1-partial-vs-itself", f"{SM}prod/db-Admin1", SECRETS, DB_ADMIN1, True),
    ("db-admin1-full-vs-itself", f"{SM}prod/db-Admin1-Zz99Yy:k::", SECRETS, DB_ADMIN1, True),
    # a deleted-and-recreated secret has a new suffix: the old full ARN is another secret
    ("full-arn-other-suffix", f"{SM}prod/db-Zz00Yy", SECRETS, PROD_DB, False),
    ("full-arn-other-suffix-json-key", f"{SM}prod/db-Zz00Yy:password::", SECRETS, PROD_DB, False),
    # same name elsewhere never matches
    (
        "other-account-full",
        f"arn:aws:secretsmanager:{REGION}:{OTHER_ACCOUNT}:secret:prod/db-Ab12Cd",
        SECRETS,
        PROD_DB,
        False,
    ),
    (
        "other-account-partial",
        f"arn:aws:secretsmanager:{REGION}:{OTHER_ACCOUNT}:secret:prod/db",
        SECRETS,
        PROD_DB,
        False,
    ),
    (
        "other-account-passthrough-arn",
        f"arn:aws:ssm:{REGION}:{OTHER_ACCOUNT}:parameter{PASS}prod/db",
        SECRETS,
        PROD_DB,
        False,
    ),
    (
        "other-region-full",
        f"arn:aws:secretsmanager:us-west-2:{ACCOUNT}:secret:prod/db-Ab12Cd",
        SECRETS,
        PROD_DB,
        False,
    ),
    (
        "other-region-partial",
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:prod/db",
        SECRETS,
        PROD_DB,
        False,
    ),
    (
        "partition-aws-cn",
        f"arn:aws-cn:secretsmanager:cn-north-1:{ACCOUNT}:secret:prod/db-Ab12Cd",
        SECRETS,
        PROD_DB,
        False,
    ),
    (
        "partition-aws-us-gov",
        f"arn:aws-us-gov:secretsmanager:us-gov-west-1:{ACCOUNT}:secret:prod/db-Ab12Cd",
        SECRETS,
        PROD_DB,
        False,
    ),
    (
        "aws-arn-vs-aws-cn-secret",
        f"{SM}prod/db-Ab12Cd",
        SECRETS,
        secret("prod/db", "Ab12Cd", partition="aws-cn"),
        False,
    ),
    (
        "aws-arn-vs-gov-secret",
        f"{SM}prod/db",
        SECRETS,
        secret("prod/db", "Ab12Cd", partition="aws-us-gov"),
        False,
    ),
    # managed rds!… names
    ("rds-full", f"{SM}{RDS_NAME}-Mn78Op", SECRETS, RDS, True),
    ("rds-full-json-key", f"{SM}{RDS_NAME}-Mn78Op:password::", SECRETS, RDS, True),
    ("rds-partial", f"{SM}{RDS_NAME}", SECRETS, RDS, True),
    ("rds-passthrough", f"{PASS}{RDS_NAME}", SECRETS, RDS, True),
    ("rds-other-instance", f"{SM}{RDS_NAME}-Mn78Op", SECRETS, OTHER_RDS, False),
    ("rds-partial-other-instance", f"{SM}{RDS_NAME}", SECRETS, OTHER_RDS, False),
]


@pytest.mark.parametrize(
    ("value", "field", "target", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in POINTS_AT_CASES],
)
def test_points_at(
    value: str, field: ReferenceField, target: SecretIdentity, expected: bool
) -> None:
    assert parse(value, field).points_at(target) is expected


@pytest.mark.parametrize(
    ("context_account", "context_region", "expected"),
    [
        pytest.param(ACCOUNT, REGION, True, id="same-account-and-region"),
        pytest.param(OTHER_ACCOUNT, REGION, False, id="task-definition-in-other-account"),
        pytest.param(ACCOUNT, "eu-west-1", False, id="task-definition-in-other-region"),
    ],
)
@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param(f"{PASS}prod/db", SECRETS, id="passthrough"),
        pytest.param("prod/db", REPO, id="repo-creds-bare-name"),
    ],
)
def test_names_resolve_in_the_task_definitions_own_account_and_region(
    value: str, field: ReferenceField, context_account: str, context_region: str, expected: bool
) -> None:
    ref = parse(value, field, account=context_account, region=context_region)
    assert ref.points_at(PROD_DB) is expected


# --- invalid references ------------------------------------------------------------------

INVALID_CASES = [
    ("empty", "", SECRETS, "empty or padded"),
    ("whitespace-only", "   ", SECRETS, "empty or padded"),
    ("leading-space", f" {SM}prod/db-Ab12Cd", SECRETS, "empty or padded"),
    ("trailing-space", f"{SM}prod/db-Ab12Cd ", SECRETS, "empty or padded"),
    ("trailing-newline", "/prod/x\n", SECRETS, "empty or padded"),
    ("padded-repo-name", " prod/db", REPO, "empty or padded"),
    ("s3-arn", "arn:aws:s3:::bucket", SECRETS, "not s3"),
    ("arn-too-short", "arn:aws", SECRETS, "not nothing"),
    ("lambda-arn", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f", SECRETS, "not lambda"),
    ("too-many-fields", f"{SM}prod/db-Ab12Cd:k:AWSCURRENT:v1:extra", SECRETS, "too many"),
    ("bad-region", f"arn:aws:secretsmanager:useast1:{ACCOUNT}:secret:prod/db", SECRETS, "region"),
    ("upper-region", f"arn:aws:secretsmanager:US-EAST-1:{ACCOUNT}:secret:x", SECRETS, "region"),
    ("empty-region", f"arn:aws:secretsmanager::{ACCOUNT}:secret:prod/db", SECRETS, "region"),
    ("short-account", f"arn:aws:secretsmanager:{REGION}:12345:secret:prod/db", SECRETS, "account"),
    (
        "letter-account",
        f"arn:aws:secretsmanager:{REGION}:12345678901a:secret:x",
        SECRETS,
        "account",
    ),
    (
        "bad-partition",
        f"arn:amazon:secretsmanager:{REGION}:{ACCOUNT}:secret:x",
        SECRETS,
        "partition",
    ),
    # An ARN's partition is its region's: botocore's partitions.json decides which that is.
    (
        "aws-cn-partition-in-an-aws-region",
        f"arn:aws-cn:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-Ab12Cd",
        SECRETS,
        "partition",
    ),
    (
        "aws-partition-in-the-eusc-region",
        f"arn:aws:secretsmanager:eusc-de-east-1:{ACCOUNT}:secret:prod/db-Ab12Cd",
        SECRETS,
        "partition",
    ),
    (
        "gov-region-under-aws-partition",
        f"arn:aws:ssm:us-gov-west-1:{ACCOUNT}:parameter/x",
        SECRETS,
        "partition",
    ),
    ("made-up-region", f"arn:aws:secretsmanager:moon-base-1:{ACCOUNT}:secret:x", SECRETS, "region"),
    (
        "made-up-eusc-region",
        f"arn:aws-eusc:secretsmanager:eusc-xx-east-1:{ACCOUNT}:secret:x",
        SECRETS,
        "region",
    ),
    (
        "not-secret-type",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:rule:prod/db",
        SECRETS,
        "not for a secret",
    ),
    (
        "missing-resource",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret",
        SECRETS,
        "not a Secrets Manager ARN",
    ),
    ("empty-name", f"{SM}", SECRETS, "bad secret name"),
    ("empty-name-with-key", f"{SM}:password::", SECRETS, "bad secret name"),
    ("space-in-name", f"{SM}prod db", SECRETS, "bad secret name"),
    ("bad-stage", f"{SM}prod/db-Ab12Cd:k:AWS CURRENT:", SECRETS, "version stage"),
    ("bad-version-id", f"{SM}prod/db-Ab12Cd:k::v_1", SECRETS, "version id"),
    ("ssm-name-bad-chars", "prod db", SECRETS, "not a secret ARN nor an SSM"),
    ("ssm-name-bad-chars-logs", "tok$en", LOGS, "not a secret ARN nor an SSM"),
    (
        "ssm-arn-not-parameter",
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/x",
        SECRETS,
        "malformed SSM",
    ),
    ("ssm-arn-no-name", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter", SECRETS, "without a name"),
    ("ssm-arn-bad-account", f"arn:aws:ssm:{REGION}:1234:parameter/x", SECRETS, "account"),
    ("passthrough-no-name", PASS, SECRETS, "bad secret name"),
    ("passthrough-bad-name", f"{PASS}prod db", SECRETS, "bad secret name"),
    ("repo-creds-ssm-arn", f"{SSM}/prod/x", REPO, "cannot use SSM"),
    ("repo-creds-passthrough", f"{PASS}prod/db", REPO, "cannot use SSM"),
    ("repo-creds-passthrough-arn", f"{SSM}{PASS}prod/db", REPO, "cannot use SSM"),
    ("repo-creds-json-key", f"{SM}prod/db-Ab12Cd:password::", REPO, "whole secret"),
    ("repo-creds-bad-name", "prod db", REPO, "bad secret name"),
]


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID_CASES],
)
def test_invalid_references_raise(value: str, field: ReferenceField, message: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse(value, field)
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [None, 42, b"prod/db"], ids=["none", "int", "bytes"])
def test_non_string_reference_raises(value: object) -> None:
    with pytest.raises(InvalidReferenceError):
        parse(value, SECRETS)  # type: ignore[arg-type]


# --- SecretIdentity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        pytest.param(f"{SM}prod/db-Ab12Cd", PROD_DB, id="prod-db"),
        pytest.param(f"{SM}prod/db-admin-Xy98Zw", DB_ADMIN, id="prod-db-admin"),
        pytest.param(f"{SM}prod/db-Admin1-Zz99Yy", DB_ADMIN1, id="name-ending-like-a-suffix"),
        pytest.param(f"{SM}{RDS_NAME}-Mn78Op", RDS, id="rds-managed"),
        pytest.param(
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:prod/db-Ab12Cd",
            secret("prod/db", "Ab12Cd", partition="aws-cn", region="cn-north-1"),
            id="aws-cn",
        ),
        pytest.param(
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:a-b-c-Ab12Cd",
            secret("a-b-c", "Ab12Cd", partition="aws-us-gov", region="us-gov-west-1"),
            id="aws-us-gov",
        ),
        pytest.param(
            "arn:aws-eusc:secretsmanager:eusc-de-east-1:123456789012:secret:prod/db-Ab12Cd",
            secret("prod/db", "Ab12Cd", partition="aws-eusc", region="eusc-de-east-1"),
            id="aws-eusc",
        ),
        pytest.param(
            "arn:aws-iso:secretsmanager:us-iso-east-1:123456789012:secret:prod/db-Ab12Cd",
            secret("prod/db", "Ab12Cd", partition="aws-iso", region="us-iso-east-1"),
            id="aws-iso",
        ),
        pytest.param(
            "arn:aws-iso-b:secretsmanager:us-isob-east-1:123456789012:secret:prod/db-Ab12Cd",
            secret("prod/db", "Ab12Cd", partition="aws-iso-b", region="us-isob-east-1"),
            id="aws-iso-b",
        ),
        pytest.param(
            "arn:aws-iso-e:secretsmanager:eu-isoe-west-1:123456789012:secret:prod/db-Ab12Cd",
            secret("prod/db", "Ab12Cd", partition="aws-iso-e", region="eu-isoe-west-1"),
            id="aws-iso-e",
        ),
        pytest.param(
            "arn:aws-iso-f:secretsmanager:us-isof-south-1:123456789012:secret:prod/db-Ab12Cd",
            secret("prod/db", "Ab12Cd", partition="aws-iso-f", region="us-isof-south-1"),
            id="aws-iso-f",
        ),
    ],
)
def test_identity_from_full_arn_round_trips(arn: str, expected: SecretIdentity) -> None:
    identity = SecretIdentity.from_full_arn(arn)
    assert identity == expected
    assert identity.is_full
    assert identity.arn == arn
    assert SecretIdentity.from_full_arn(identity.arn) == identity
    # the identity's own ARN, used as a reference, points back at it
    assert parse(identity.arn).points_at(identity)


def test_identity_from_full_arn_ignores_selectors() -> None:
    identity = SecretIdentity.from_full_arn(f"{SM}prod/db-Ab12Cd:password:AWSPREVIOUS:")
    assert identity == PROD_DB
    assert identity.arn == f"{SM}prod/db-Ab12Cd"


@pytest.mark.parametrize(
    "arn",
    [
        pytest.param(f"{SM}prod/db", id="partial-arn"),
        pytest.param(f"{SM}-Ab12Cd", id="suffix-only"),
        pytest.param(f"{SM}prod/db-Ab12C", id="five-char-suffix"),
        pytest.param(f"{SM}prod/db-Ab1_Cd", id="non-alnum-suffix"),
        pytest.param(f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/prod/db-Ab12Cd", id="ssm-arn"),
        pytest.param("prod/db-Ab12Cd", id="bare-name"),
        pytest.param(f"arn:aws:secretsmanager:{REGION}:1:secret:prod/db-Ab12Cd", id="bad-account"),
    ],
)
def test_identity_from_full_arn_rejects_anything_else(arn: str) -> None:
    with pytest.raises(InvalidReferenceError):
        SecretIdentity.from_full_arn(arn)


def test_identity_from_name_is_not_full() -> None:
    identity = SecretIdentity.from_name("prod/db", partition="aws", region=REGION, account=ACCOUNT)
    assert identity == PROD_DB_BY_NAME
    assert not identity.is_full
    assert identity.arn == f"{SM}prod/db"
    with pytest.raises(InvalidReferenceError):
        SecretIdentity.from_name("prod db", partition="aws", region=REGION, account=ACCOUNT)


@pytest.mark.parametrize(
    ("trust_suffix", "name", "suffix"),
    [(False, "prod/api-signer", None), (True, "prod/api", "signer")],
    ids=["callers-words-kept-whole", "arn-aws-wrote"],
)
def test_event_words_split_a_suffix_only_when_aws_wrote_the_arn(trust_suffix, name, suffix):
    words = "arn:aws:secretsmanager:us-east-1:999999999999:secret:prod/api-signer"

    identity = SecretIdentity.from_event_words(
        words, account="123456789012", region="us-east-1", trust_suffix=trust_suffix
    )

    assert (identity.name, identity.suffix, identity.account) == (name, suffix, "999999999999")
    look_alike = parse_reference(
        "arn:aws:secretsmanager:us-east-1:999999999999:secret:prod/api",
        ReferenceField.SECRETS,
        partition="aws",
        region="us-east-1",
        account="123456789012",
    )
    # Kept whole, the caller's partial ARN never matches the look-alike prod/api.
    assert look_alike.points_at(identity) is trust_suffix


# --- partitions and regions: botocore's data, not a pattern of rotor's own -----------------


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("eu-west-1", "aws"),
        ("il-central-1", "aws"),
        ("mx-central-1", "aws"),
        ("cn-north-1", "aws-cn"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("eusc-de-east-1", "aws-eusc"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
        ("eu-isoe-west-1", "aws-iso-e"),
        ("us-isof-south-1", "aws-iso-f"),
    ],
)
def test_every_region_botocore_knows_has_its_partition(region: str, partition: str) -> None:
    assert partition_of(region) == partition
    identity = SecretIdentity.from_event_words("prod/db", account=ACCOUNT, region=region)
    assert identity.partition == partition
    assert identity.arn == f"arn:{partition}:secretsmanager:{region}:{ACCOUNT}:secret:prod/db"
    ref = parse(f"{PASS}prod/db", SECRETS, partition=partition, region=region)
    assert ref.points_at(secret("prod/db", "Ab12Cd", partition=partition, region=region))


def test_every_region_in_botocores_partitions_data_is_accepted() -> None:
    """Not a hand-written list: whatever botocore ships (aws-global and friends aside)."""
    from botocore.loaders import create_loader

    for part in create_loader().load_data("partitions")["partitions"]:
        for region in part["regions"]:
            if not region.endswith("-global"):
                assert partition_of(region) == part["id"], region
                arn = f"arn:{part['id']}:secretsmanager:{region}:{ACCOUNT}:secret:x-Ab12Cd"
                assert SecretIdentity.from_full_arn(arn).region == region


@pytest.mark.parametrize(
    "region",
    [
        "",
        "useast1",
        "US-EAST-1",
        "moon-base-1",
        "eusc-xx-east-1",
        "us-east-1\n",
        "us-éast-1",
        "aws-global",
    ],
)
def test_a_nonsense_region_is_no_region(region: str) -> None:
    assert partition_of(region) is None
    with pytest.raises(InvalidReferenceError, match="region"):
        SecretIdentity.from_event_words("prod/db", account=ACCOUNT, region=region)


# --- the grammar's edges: selectors and lengths -------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "/prod/worker/queue-url:3",  # a parameter version
        "queue-url:prod",  # a parameter label
        "/prod/x:release_2.1-b",
        "/prod/x:" + "L" * 100,  # labels are at most 100 characters
    ],
)
@pytest.mark.parametrize("field", [SECRETS, LOGS])
def test_an_ssm_parameter_name_may_carry_a_version_or_label_selector(
    value: str, field: ReferenceField
) -> None:
    ref = parse(value, field)
    assert ref.kind is ReferenceKind.SSM_PARAMETER
    assert ref.name_part == value
    assert not ref.points_at(PROD_DB)


@pytest.mark.parametrize(
    "value", ["/prod/x:" + "L" * 101, "/prod/x:", "/prod/x:1:2", "/prod/x:la bel"]
)
def test_a_malformed_ssm_selector_is_not_a_reference(value: str) -> None:
    with pytest.raises(InvalidReferenceError, match="not a secret ARN nor an SSM"):
        parse(value, SECRETS)


# Secrets Manager version ids (ClientRequestToken) are 32 to 64 characters; UUIDs are 36.
LONG_VERSION = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE-0123456789abcdef-ABCDEFGH"


def test_a_version_id_longer_than_a_uuid_pins_the_reference() -> None:
    version = LONG_VERSION + "X" * (64 - len(LONG_VERSION))
    assert len(version) == 64
    ref = parse(f"{SM}prod/db-Ab12Cd:password::{version}", SECRETS)
    assert ref.version_id == version
    assert ref.pinned is True
    assert ref.points_at(PROD_DB)


def test_a_version_id_longer_than_64_characters_is_invalid() -> None:
    version = LONG_VERSION + "X" * (65 - len(LONG_VERSION))
    with pytest.raises(InvalidReferenceError, match="version id"):
        parse(f"{SM}prod/db-Ab12Cd:password::{version}", SECRETS)


# --- found by mutation testing: forms and defaults no other test pinned -------------------


@pytest.mark.parametrize(
    "value",
    [f"{PASS}{SM}prod/db-Ab12Cd", f"{PASS}{SM}prod/db", f"{SSM}{PASS}{SM}prod/db-Ab12Cd"],
    ids=["passthrough-full-arn", "passthrough-partial-arn", "ssm-arn-of-passthrough-arn"],
)
def test_a_passthrough_may_name_the_secret_by_arn(value: str) -> None:
    """``/aws/reference/secretsmanager/`` takes a secret's ARN too (a shared secret needs it)."""
    ref = parse(value, SECRETS)
    assert ref.kind is ReferenceKind.SSM_PASSTHROUGH
    assert ref.raw == value
    assert ref.points_at(PROD_DB)
    assert not ref.points_at(DB_ADMIN)
    assert not ref.pinned


def test_a_passthrough_to_another_accounts_arn_points_there() -> None:
    other = secret("prod/db", "Ab12Cd", account=OTHER_ACCOUNT)
    ref = parse(f"{PASS}arn:aws:secretsmanager:{REGION}:{OTHER_ACCOUNT}:secret:prod/db-Ab12Cd")
    assert (ref.partition, ref.region, ref.account) == ("aws", REGION, OTHER_ACCOUNT)
    assert ref.points_at(other)
    assert not ref.points_at(PROD_DB)


def test_a_one_character_secret_name_has_a_full_arn() -> None:
    identity = SecretIdentity.from_full_arn(f"{SM}a-Ab12Cd")
    assert (identity.name, identity.suffix) == ("a", "Ab12Cd")


def test_a_full_arn_of_another_service_is_not_a_secret() -> None:
    with pytest.raises(InvalidReferenceError, match="not a Secrets Manager ARN"):
        SecretIdentity.from_full_arn(f"arn:aws:ssm:{REGION}:{ACCOUNT}:secret:prod/db-Ab12Cd")
    with pytest.raises(InvalidReferenceError, match="no -XXXXXX suffix"):
        SecretIdentity.from_full_arn(f"{SM}prod/db")


def test_event_words_default_to_the_aws_partition_and_the_events_place() -> None:
    """A bare name (or a partial ARN) in an event lives in the event's account and region."""
    by_name = SecretIdentity.from_event_words("prod/db", account=ACCOUNT, region=REGION)
    assert by_name == PROD_DB_BY_NAME
    assert parse(f"{SM}prod/db").points_at(by_name)
    # Without trust_suffix, an ARN's tail is the caller's words: all of it is the name.
    partial_arn = SecretIdentity.from_event_words(
        f"{SM}prod/api-signer", account=OTHER_ACCOUNT, region="eu-west-1"
    )
    assert partial_arn == secret("prod/api-signer", None)


def test_event_words_with_a_selector_are_not_a_secret_id() -> None:
    with pytest.raises(InvalidReferenceError, match="no ':' after the name"):
        SecretIdentity.from_event_words(
            f"{SM}prod/db-Ab12Cd:password", account=ACCOUNT, region=REGION
        )


def test_secret_names_are_up_to_512_characters() -> None:
    longest = "n" * 512
    assert SecretIdentity.from_full_arn(f"{SM}{longest}-Ab12Cd").name == longest
    assert parse(f"{SM}{longest}").name_part == longest
    with pytest.raises(InvalidReferenceError, match="bad secret name"):
        parse(f"{SM}{longest}n")


@pytest.mark.parametrize("account", ["12345678901", "1234567890123", "12345678901a"])
def test_an_account_is_twelve_digits(account: str) -> None:
    with pytest.raises(InvalidReferenceError, match="bad account"):
        parse(f"arn:aws:secretsmanager:{REGION}:{account}:secret:prod/db-Ab12Cd")
