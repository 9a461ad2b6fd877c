"""The routing contract: which rule of infra/template.yaml each sample event reaches.

The template's patterns are the one routing table; this file holds the expected result for every
sample in events/, so a pattern edit that changes routing must change this table too. Our own
matcher (used by `rotor replay` and the demo, without moto) is checked against moto's
EventPattern on every (rule, sample) pair.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern

from orchestration.events.routing import deployed_rules, matches, route, rules_of
from tests.conftest import EVENTS, SAMPLE_EVENTS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

VALUE = "ValueChangesRule"
FAILURES = "RotationFailuresRule"
DELETION = "DeletionRule"
READS = "PendingDeletionReadsRule"
DEPLOYMENTS = "DeploymentStatesRule"
SERVICES = "ServiceChangesRule"

EXPECTED: dict[str, set[str]] = {
    "batch-get-secret-value-marked-for-deletion.json": {READS},
    "delete-secret-force.json": {DELETION},
    "delete-secret-recovery-window.json": {DELETION},
    "ecs-deployment-completed.json": {DEPLOYMENTS},
    "ecs-deployment-failed.json": {DEPLOYMENTS},
    "ecs-create-service.json": {SERVICES},
    "ecs-create-task-set.json": {SERVICES},
    "ecs-delete-service.json": {SERVICES},
    "ecs-update-service.json": {SERVICES},
    "ecs-update-service-force-new-deployment.json": set(),  # rotor's own: costs no read
    "get-secret-value-access-denied.json": set(),
    "get-secret-value-marked-for-deletion-by-name.json": {READS},
    "get-secret-value-marked-for-deletion-cross-account.json": {READS},
    "get-secret-value-marked-for-deletion-partial-arn.json": {READS},
    "get-secret-value-marked-for-deletion.json": {READS},
    "get-secret-value-success.json": set(),
    "put-secret-value-awscurrent.json": {VALUE},
    "put-secret-value-awspending.json": set(),
    "rotation-abandoned.json": {FAILURES},
    "rotation-failed.json": {FAILURES},
    "rotation-started.json": set(),
    "rotation-succeeded-api-call-detail-type.json": {VALUE},
    "rotation-succeeded.json": {VALUE},
    "s3-object-created.json": set(),
    "secret-label-updated-awscurrent.json": {VALUE},
    "secret-label-updated-custom-label.json": set(),
    "update-secret-metadata-only.json": set(),
    "update-secret-new-value.json": {VALUE},
}

FUNCTION_OF_RULE = {
    VALUE: "RotationFunction",
    FAILURES: "AlarmsFunction",
    DELETION: "AlarmsFunction",
    READS: "AlarmsFunction",
    DEPLOYMENTS: "TrackerFunction",
    SERVICES: "RotationFunction",
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _variants() -> list[tuple[str, dict[str, Any]]]:
    """Edge cases beside the samples: failed writes, AWSCURRENT among several stages, …"""
    put = _load(EVENTS / "put-secret-value-awscurrent.json")
    failed_put = copy.deepcopy(put)
    failed_put["detail"]["errorCode"] = "AccessDeniedException"
    several_stages = copy.deepcopy(put)
    several_stages["detail"]["requestParameters"]["versionStages"] = ["blue", "AWSCURRENT"]
    no_response = copy.deepcopy(put)  # the caller's words only: no responseElements
    no_response["detail"]["responseElements"] = None
    delete = _load(EVENTS / "delete-secret-recovery-window.json")
    failed_delete = copy.deepcopy(delete)
    failed_delete["detail"]["errorCode"] = "InvalidRequestException"
    failed_delete["detail"]["errorMessage"] = "not authorized"
    other_source = _load(EVENTS / "rotation-succeeded.json")
    other_source["source"] = "custom.secretsmanager"
    failed_create = _load(EVENTS / "ecs-create-service.json")
    failed_create["detail"]["errorCode"] = "InvalidParameterException"
    failed_create["detail"]["responseElements"] = None
    primary_task_set = _load(EVENTS / "ecs-create-task-set.json")
    primary_task_set["detail"]["eventName"] = "UpdateServicePrimaryTaskSet"
    deleted_task_set = _load(EVENTS / "ecs-create-task-set.json")
    deleted_task_set["detail"]["eventName"] = "DeleteTaskSet"
    scaled = _load(EVENTS / "ecs-update-service.json")
    del scaled["detail"]["requestParameters"]["taskDefinition"]
    scaled["detail"]["requestParameters"]["desiredCount"] = 4
    return [
        ("failed PutSecretValue", failed_put),
        ("AWSCURRENT among stages", several_stages),
        ("PutSecretValue without response", no_response),
        ("failed DeleteSecret", failed_delete),
        ("not from Secrets Manager", other_source),
        ("failed CreateService", failed_create),
        ("UpdateServicePrimaryTaskSet", primary_task_set),
        ("DeleteTaskSet", deleted_task_set),
        ("UpdateService scaling only", scaled),
    ]


VARIANT_EXPECTED = {
    "failed PutSecretValue": set(),
    "AWSCURRENT among stages": {VALUE},
    "PutSecretValue without response": {VALUE},
    "failed DeleteSecret": set(),
    "not from Secrets Manager": set(),
    "failed CreateService": set(),
    "UpdateServicePrimaryTaskSet": {SERVICES},
    "DeleteTaskSet": {SERVICES},
    "UpdateService scaling only": set(),
}


def test_the_table_covers_every_sample() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in SAMPLE_EVENTS)


def test_the_template_has_the_rules_of_the_table() -> None:
    rules = {rule.name: rule.functions for rule in deployed_rules()}
    assert rules == {name: (function,) for name, function in FUNCTION_OF_RULE.items()}


@pytest.mark.parametrize("path", SAMPLE_EVENTS, ids=lambda p: p.name)
def test_each_sample_reaches_the_expected_rules(path: Path) -> None:
    routes = route(_load(path))
    assert {r.rule for r in routes} == EXPECTED[path.name]
    assert all(r.function == FUNCTION_OF_RULE[r.rule] for r in routes)


@pytest.mark.parametrize(("label", "event"), _variants(), ids=lambda v: str(v)[:30])
def test_variants_reach_the_expected_rules(label: str, event: dict[str, Any]) -> None:
    assert {r.rule for r in route(event)} == VARIANT_EXPECTED[label]


CASES = [(p.name, _load(p)) for p in SAMPLE_EVENTS] + _variants()


@pytest.mark.parametrize("rule", deployed_rules(), ids=lambda r: r.name)
@pytest.mark.parametrize(("label", "event"), CASES, ids=lambda v: str(v)[:40])
def test_our_matcher_agrees_with_moto(rule: Any, label: str, event: dict[str, Any]) -> None:
    moto_pattern = EventPattern.load(json.dumps(rule.pattern))
    assert matches(rule.pattern, event) is moto_pattern.matches_event(event), label


OPERATOR_CASES = [
    ({"a": [{"prefix": "ab"}]}, {"a": "abc"}, True),
    ({"a": [{"prefix": "ab"}]}, {"a": "xabc"}, False),
    ({"a": [{"suffix": ".png"}]}, {"a": "x.png"}, True),
    ({"a": [{"anything-but": ["x", "y"]}]}, {"a": "z"}, True),
    ({"a": [{"anything-but": ["x", "y"]}]}, {"a": "x"}, False),
    ({"a": [{"anything-but": {"prefix": "x"}}]}, {"a": "xa"}, False),
    ({"a": [{"exists": False}]}, {"b": 1}, True),
    ({"a": [{"exists": False}]}, {"a": "v"}, False),
    ({"a": [{"exists": True}]}, {"a": "v"}, True),
    ({"a": {"b": [{"exists": True}]}}, {"a": {"b": "v"}}, True),
    ({"a": {"b": [{"exists": True}]}}, {"a": "flat"}, False),
    ({"a": [{"equals-ignore-case": "AbC"}]}, {"a": "aBc"}, True),
    ({"a": [{"wildcard": "*x*y"}]}, {"a": "1x2y"}, True),
    ({"a": [{"wildcard": "*x*y"}]}, {"a": "1x2y3"}, False),
    ({"a": [{"numeric": [">", 1, "<=", 5]}]}, {"a": 5}, True),
    ({"a": [{"numeric": [">", 1, "<=", 5]}]}, {"a": 6}, False),
    ({"a": ["v"]}, {"a": ["u", "v"]}, True),
    ({"a": ["v"]}, {"a": ["u"]}, False),
    ({"a": [7]}, {"a": 7}, True),
    ({"a": ["7"]}, {"a": 7}, False),
    ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"b": "2"}, True),
    ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"b": "3"}, False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), OPERATOR_CASES)
def test_operators_against_moto(pattern: dict[str, Any], event: dict[str, Any], expected: bool):
    assert matches(pattern, event) is expected
    assert EventPattern.load(json.dumps(pattern)).matches_event(event) is expected


def test_an_event_no_rule_matches_routes_nowhere() -> None:
    assert route(_load(EVENTS / "s3-object-created.json")) == []


def test_a_disabled_rule_routes_nothing(stack: dict[str, Any]) -> None:
    edited = copy.deepcopy(stack)
    edited["Resources"]["DeletionRule"]["Properties"]["State"] = "DISABLED"
    event = _load(EVENTS / "delete-secret-force.json")
    assert route(event, rules_of(edited)) == []
    assert [r.rule for r in route(event, rules_of(stack))] == [DELETION]


def test_replay_says_which_rule_and_function_an_event_reaches(capsys) -> None:
    from orchestration.cli.main import main

    status = main(["replay", str(EVENTS / "rotation-failed.json"), "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = json.loads(captured.out)
    assert data["routes"] == [
        {
            "rule": FAILURES,
            "function": "AlarmsFunction",
            "handler": "handlers.alarms.lambda_handler",
        }
    ]
    assert data["metrics"]["RotationFailures"] == 1


def test_replay_of_an_event_no_rule_matches_says_so_and_does_nothing(capsys) -> None:
    from orchestration.cli.main import main

    status = main(["replay", str(EVENTS / "rotation-started.json"), "--world"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "note: no rule of infra/template.yaml matches this event" in captured.out
    assert "route:" not in captured.out
