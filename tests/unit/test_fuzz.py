"""Property tests: classify() and parse_reference() fail only with rotor's own errors."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.errors import InvalidEventError, InvalidReferenceError
from orchestration.events.classification import Classification, EventKind, classify
from orchestration.secrets.references import ReferenceField, SecretIdentity, parse_reference
from tests.conftest import SAMPLE_EVENTS

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SAMPLES: dict[str, dict[str, Any]] = {p.name: json.loads(p.read_text()) for p in SAMPLE_EVENTS}
PROD_DB = SecretIdentity("aws", "us-east-1", "123456789012", "prod/db", "Ab12Cd")

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)

# Values that look like the real thing, so mutations reach deep into classify.
plausible_strings = st.sampled_from(
    [
        "",
        "aws.secretsmanager",
        "aws.ecs",
        "AWS API Call via CloudTrail",
        "AWS Service Event via CloudTrail",
        "Secret Label Updated",
        "ECS Deployment State Change",
        "RotationSucceeded",
        "RotationFailed",
        "PutSecretValue",
        "UpdateSecret",
        "DeleteSecret",
        "GetSecretValue",
        "AWSCURRENT",
        "AWSPENDING",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:-",
        "arn:aws:secretsmanager",
        "Rotation-arn:aws:secretsmanager:x:secret:y-00000000-0000-0000-0000-000000000000",
        "prod/db",
        "2026-11-20T10:00:05Z",
        "because it was marked for deletion",
        "true",
        "7",
    ]
)
mutation_values = json_values | plausible_strings


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value (dict keys and list indexes)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return found
    for key, child in items:
        path = (*prefix, key)
        found.append(path)
        found.extend(_paths(child, path))
    return found


def _parent(event: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        event = event[key]
    return event


def _classify_or_invalid(event: Any) -> None:
    """classify must return a Classification or raise InvalidEventError; nothing else."""
    try:
        result = classify(event)
    except InvalidEventError as exc:
        assert str(exc)
        return
    assert isinstance(result, Classification)
    assert isinstance(result.kind, EventKind)
    json.dumps(result.to_dict())


@FUZZ
@given(value=json_values)
def test_random_json_values(value: Any) -> None:
    _classify_or_invalid(value)
    _classify_or_invalid(json.dumps(value))


@FUZZ
@given(text=st.text() | st.binary())
def test_random_text(text: str | bytes) -> None:
    _classify_or_invalid(text)


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(SAMPLES)))
def test_sample_with_a_key_deleted(data: st.DataObject, name: str) -> None:
    event = copy.deepcopy(SAMPLES[name])
    path = data.draw(st.sampled_from(_paths(event)), label="path")
    del _parent(event, path)[path[-1]]
    _classify_or_invalid(event)


@FUZZ
@given(data=st.data(), name=st.sampled_from(sorted(SAMPLES)), value=mutation_values)
def test_sample_with_a_value_replaced(data: st.DataObject, name: str, value: Any) -> None:
    event = copy.deepcopy(SAMPLES[name])
    path = data.draw(st.sampled_from(_paths(event)), label="path")
    _parent(event, path)[path[-1]] = value
    _classify_or_invalid(event)


@FUZZ
@given(
    data=st.data(),
    name=st.sampled_from(sorted(SAMPLES)),
    edits=st.lists(st.tuples(st.integers(min_value=0), mutation_values), min_size=2, max_size=5),
)
def test_sample_with_several_values_replaced(
    data: st.DataObject, name: str, edits: list[tuple[int, Any]]
) -> None:
    event = copy.deepcopy(SAMPLES[name])
    for index, value in edits:
        paths = _paths(event)
        if not paths:
            break
        path = paths[index % len(paths)]
        _parent(event, path)[path[-1]] = value
    _classify_or_invalid(event)


CLOUDTRAIL_SAMPLES = sorted(n for n, e in SAMPLES.items() if "eventName" in e["detail"])


@FUZZ
@given(
    name=st.sampled_from(CLOUDTRAIL_SAMPLES),
    key=st.sampled_from(["errorMessage", "eventName", "secretId", "errorCode", "requestID"]),
    text=st.text() | plausible_strings,
)
def test_sample_with_random_text_in_key_fields(name: str, key: str, text: str) -> None:
    event = copy.deepcopy(SAMPLES[name])
    detail = event["detail"]
    if key == "secretId":
        detail["requestParameters"] = {**(detail.get("requestParameters") or {}), key: text}
    else:
        detail[key] = text
    _classify_or_invalid(event)


# --- parse_reference -----------------------------------------------------------------------

arn_pieces = st.sampled_from(
    [
        "",
        "arn",
        "aws",
        "aws-cn",
        "aws-us-gov",
        "secretsmanager",
        "ssm",
        "s3",
        "us-east-1",
        "cn-north-1",
        "123456789012",
        "secret",
        "parameter",
        "parameter/aws/reference/secretsmanager/prod/db",
        "/aws/reference/secretsmanager/",
        "prod/db",
        "prod/db-Ab12Cd",
        "rds!db-3f1c0e9a-6b2d-4c8e-9a71-2d5e8f4b1c07-Mn78Op",
        "password",
        "AWSCURRENT",
        "AWSPREVIOUS",
        "88ce1149-cf2c-4804-b1d9-2d213dd5ba3b",
        " ",
        "-",
        ":",
    ]
)
arn_like = st.lists(arn_pieces | st.text(max_size=8), min_size=1, max_size=10).map(":".join)
prefixed = st.tuples(
    st.sampled_from(
        [
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:",
            "arn:aws:ssm:us-east-1:123456789012:parameter",
            "/aws/reference/secretsmanager/",
            "arn:aws:ssm:us-east-1:123456789012:parameter/aws/reference/secretsmanager/",
        ]
    ),
    st.text(max_size=40) | arn_like,
).map("".join)
VALID_REFERENCES = [
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd:password::",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd:password:AWSPREVIOUS:",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db::AWSCURRENT:v-1",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
    "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:prod/db-Ab12Cd",
    "arn:aws:ssm:us-east-1:123456789012:parameter/prod/x",
    "arn:aws:ssm:us-east-1:123456789012:parameter/aws/reference/secretsmanager/prod/db",
    "/aws/reference/secretsmanager/prod/db",
    "/prod/x",
    "prod/db",
    "rds!db-3f1c0e9a-6b2d-4c8e-9a71-2d5e8f4b1c07",
]
name_pieces = st.lists(
    st.sampled_from(["prod", "db", "Ab12Cd", "admin", "rds!db", "-", "/", ":", ".", ""]),
    min_size=1,
    max_size=6,
).map("".join)


def _splice(parts: tuple[str, int, int, str]) -> str:
    value, start, length, insert = parts
    start %= len(value) + 1
    return value[:start] + insert + value[start + length :]


# A valid reference with a few characters replaced, inserted or removed.
mutated_valid = st.tuples(
    st.sampled_from(VALID_REFERENCES),
    st.integers(min_value=0, max_value=120),
    st.integers(min_value=0, max_value=4),
    st.text(max_size=3) | st.sampled_from([":", "-", "/", "::", "arn:"]),
).map(_splice)
references = (
    st.text()
    | arn_like
    | prefixed
    | st.sampled_from(VALID_REFERENCES)
    | mutated_valid
    | st.tuples(
        st.sampled_from(
            [
                "",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:",
                "/aws/reference/secretsmanager/",
            ]
        ),
        name_pieces,
    ).map("".join)
)


@FUZZ
@given(value=references, field=st.sampled_from(list(ReferenceField)))
def test_parse_reference_only_raises_invalid_reference(value: str, field: ReferenceField) -> None:
    try:
        ref = parse_reference(
            value, field, partition="aws", region="us-east-1", account="123456789012"
        )
    except InvalidReferenceError as exc:
        assert str(exc)
        return
    assert ref.raw == value
    assert ref.field is field
    assert isinstance(ref.points_at(PROD_DB), bool)
    assert isinstance(ref.pinned, bool)
    if ref.points_at(PROD_DB):
        assert (ref.partition, ref.region, ref.account) == ("aws", "us-east-1", "123456789012")
        assert ref.name_part in ("prod/db", "prod/db-Ab12Cd")


@FUZZ
@given(value=references)
def test_from_full_arn_only_raises_invalid_reference(value: str) -> None:
    try:
        identity = SecretIdentity.from_full_arn(value)
    except InvalidReferenceError:
        return
    assert identity.is_full
    assert SecretIdentity.from_full_arn(identity.arn) == identity
