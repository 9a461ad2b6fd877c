"""The EventBridge pattern matcher behind ``rotor replay`` and ``rotor demo`` (which rule, which
function): the operators as EventBridge documents them, beyond what the template uses today.
Found by mutation testing: these survived every other test."""

from __future__ import annotations

from typing import Any

import pytest

from orchestration.events.routing import matches


def event(**detail: Any) -> dict[str, Any]:
    return {"source": "aws.secretsmanager", "detail": detail}


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        # Booleans match booleans only; numbers match numbers whatever their type.
        ([True], True, True),
        ([True], "true", False),
        ([True], 1, False),
        ([1], True, False),
        ([5], 5.0, True),
        (["5"], 5, False),
        # prefix / suffix / equals-ignore-case, also through anything-but.
        ([{"prefix": "prod/"}], "prod/db", True),
        ([{"prefix": {"equals-ignore-case": "PROD/"}}], "prod/db", True),
        ([{"suffix": "-db"}], "prod/db", False),
        ([{"equals-ignore-case": "PutSecretValue"}], "putsecretvalue", True),
        ([{"anything-but": {"prefix": "prod/"}}], "prod/db", False),
        ([{"anything-but": {"prefix": "prod/"}}], "dev/db", True),
        ([{"anything-but": ["a", "b"]}], "b", False),
        ([{"anything-but": "a"}], "c", True),
        ([{"wildcard": "prod/*-db"}], "prod/api-db", True),
        ([{"wildcard": ["x*", "prod/*"]}], "prod/db", True),
        ([{"numeric": [">", 0, "<=", 5]}], 5, True),
        ([{"numeric": [">", 0, "<=", 5]}], True, False),
        # A list value matches when any element does.
        (["b"], ["a", "b"], True),
    ],
)
def test_an_operator_matches_as_eventbridge_does(pattern, value, expected) -> None:
    assert matches({"detail": {"field": pattern}}, event(field=value)) is expected


def test_a_nested_pattern_needs_an_object_there() -> None:
    pattern = {"detail": {"outer": {"inner": ["x"]}}}
    assert matches(pattern, event(outer={"inner": "x"}))
    assert not matches(pattern, event(outer="x"))
    assert not matches(pattern, event())


def test_or_matches_when_one_branch_does() -> None:
    pattern = {"detail": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}
    assert matches(pattern, event(b="2"))
    assert not matches(pattern, event(a="2"))
