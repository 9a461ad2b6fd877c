"""The pure parts of ``rotor doctor``: trail selectors, bus policies, lowering reservations."""

from __future__ import annotations

import json

import pytest

from orchestration.events.routing import load_template
from orchestration.prerequisites import (
    lower_to_fit,
    management_coverage,
    put_events_principals,
    reserved_concurrency_parameters,
)

ALL = {"ReadWriteType": "All", "IncludeManagementEvents": True}


def both(selectors: dict, **kwargs) -> tuple[bool, bool]:
    coverage = management_coverage(selectors, **kwargs)
    return coverage.reads, coverage.writes


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        ({"EventSelectors": [ALL]}, (True, True)),
        ({"EventSelectors": [{**ALL, "ReadWriteType": "ReadOnly"}]}, (True, False)),
        ({"EventSelectors": [{**ALL, "ReadWriteType": "WriteOnly"}]}, (False, True)),
        (
            {
                "EventSelectors": [
                    {**ALL, "ReadWriteType": "ReadOnly"},
                    {**ALL, "ReadWriteType": "WriteOnly"},
                ]
            },
            (True, True),
        ),
        # Data events only: no management events at all.
        (
            {
                "EventSelectors": [
                    {
                        "ReadWriteType": "All",
                        "IncludeManagementEvents": False,
                        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}],
                    }
                ]
            },
            (False, False),
        ),
        # Excluding KMS events leaves Secrets Manager's alone.
        (
            {"EventSelectors": [{**ALL, "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]},
            (True, True),
        ),
        (
            {
                "EventSelectors": [
                    {**ALL, "ExcludeManagementEventSources": ["secretsmanager.amazonaws.com"]}
                ]
            },
            (False, False),
        ),
    ],
)
def test_basic_selectors(selectors, expected):
    assert both(selectors) == expected


def advanced(*fields: dict) -> dict:
    return {"AdvancedEventSelectors": [{"Name": "s", "FieldSelectors": list(fields)}]}


MANAGEMENT = {"Field": "eventCategory", "Equals": ["Management"]}


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        (advanced(MANAGEMENT), (True, True)),
        (advanced(MANAGEMENT, {"Field": "readOnly", "Equals": ["true"]}), (True, False)),
        (advanced(MANAGEMENT, {"Field": "readOnly", "Equals": ["false"]}), (False, True)),
        (advanced({"Field": "eventCategory", "Equals": ["Data"]}), (False, False)),
        (
            advanced(MANAGEMENT, {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}),
            (True, True),
        ),
        (
            advanced(
                MANAGEMENT, {"Field": "eventSource", "NotEquals": ["secretsmanager.amazonaws.com"]}
            ),
            (False, False),
        ),
        (
            advanced(MANAGEMENT, {"Field": "eventSource", "StartsWith": ["secretsmanager."]}),
            (True, True),
        ),
    ],
)
def test_advanced_selectors(selectors, expected):
    assert both(selectors) == expected


def test_a_field_rotor_cannot_evaluate_is_named():
    coverage = management_coverage(
        advanced(MANAGEMENT, {"Field": "userIdentity.arn", "NotStartsWith": ["arn:aws:sts::1"]})
    )
    assert (coverage.reads, coverage.writes) == (True, True)
    assert coverage.unchecked == ("userIdentity.arn",)


def test_no_selectors_is_cloudtrails_default_all_management_events():
    assert both({"EventSelectors": [], "AdvancedEventSelectors": []}) == (True, True)
    assert both({}, custom=True) == (False, False)


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_bus_policy_principals():
    allowed = put_events_principals(
        policy(
            {
                "Sid": "a",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
                "Action": "events:PutEvents",
                "Resource": "*",
            },
            {
                "Sid": "b",
                "Effect": "Allow",
                "Principal": {"AWS": ["222222222222"]},
                "Action": ["events:PutEvents"],
                "Resource": "*",
            },
            {
                "Sid": "c",
                "Effect": "Deny",
                "Principal": {"AWS": "333333333333"},
                "Action": "events:PutEvents",
                "Resource": "*",
            },
            {
                "Sid": "d",
                "Effect": "Allow",
                "Principal": {"AWS": "444444444444"},
                "Action": "events:DescribeRule",
                "Resource": "*",
            },
        )
    )
    assert allowed == {"111111111111", "222222222222"}
    assert put_events_principals(None) == set()
    assert put_events_principals("not json") == set()
    everyone = policy(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "events:PutEvents",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}},
        }
    )
    assert put_events_principals(everyone) == {"*"}


def test_the_template_reserves_concurrency_from_its_parameters():
    reservations = reserved_concurrency_parameters(load_template())
    assert reservations == {
        "RotationFunction": "RotationConcurrency",
        "AlarmsFunction": "AlarmsConcurrency",
        "WorkerFunction": "WorkerConcurrency",
        "TrackerFunction": "TrackerConcurrency",
    }


def test_lowering_takes_the_furthest_above_its_minimum_first():
    values = {"A": 2, "B": 5, "C": 2}
    minimums = {"A": 1, "B": 1, "C": 2}
    uses = {"A": 1, "B": 1, "C": 1}

    assert lower_to_fit(values, minimums, uses, 3) == {"B": 2}
    assert lower_to_fit(values, minimums, uses, 5) == {"A": 1, "B": 1}
    assert lower_to_fit(values, minimums, uses, 0) == {}


def test_the_default_stack_is_the_one_samconfig_deploys():
    import tomllib
    from pathlib import Path

    from orchestration.prerequisites import DEFAULT_STACK

    samconfig = Path(__file__).resolve().parents[2] / "infra" / "samconfig.toml"
    stack = tomllib.loads(samconfig.read_text())["default"]["global"]["parameters"]["stack_name"]
    assert stack == DEFAULT_STACK
