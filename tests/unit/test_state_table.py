"""The state table has one codec (``state/codec.py``) and one key/TTL module (``state/keys.py``):
no other module of orchestration/ builds a DynamoDB attribute value, and no other module of the
state layer (the only one that writes the table) spells a kind of key."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration.state import codec, keys

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATION = sorted((ROOT / "orchestration").rglob("*.py"))
STATE = ROOT / "orchestration" / "state"
ATTRIBUTE_TYPES = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
KEY_KIND = re.compile(r"^[a-z][a-z-]*#")


def _attribute_values(source: str) -> list[str]:
    """Dict literals shaped like a DynamoDB attribute value: ``{"S": ...}``, ``{"N": ...}``."""
    return [
        ast.unparse(node)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Dict)
        and len(node.keys) == 1
        and isinstance(node.keys[0], ast.Constant)
        and node.keys[0].value in ATTRIBUTE_TYPES
    ]


def _key_kinds(source: str) -> list[str]:
    """Text that starts like a key of the table (``kind#...``), in a literal or an f-string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and KEY_KIND.match(str(first.value)):
                found.append(ast.unparse(node))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and KEY_KIND.match(node.value)
        ):
            found.append(node.value)
    return found


@pytest.mark.parametrize("path", ORCHESTRATION, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_codec_builds_attribute_values(path: Path) -> None:
    if path == STATE / "codec.py":
        return
    assert _attribute_values(path.read_text()) == [], path.name


@pytest.mark.parametrize("path", sorted(STATE.glob("*.py")), ids=lambda p: p.name)
def test_only_the_keys_module_spells_a_kind_of_key(path: Path) -> None:
    if path == STATE / "keys.py":
        return
    assert _key_kinds(path.read_text()) == [], path.name


@pytest.mark.parametrize(
    ("check", "source"),
    [
        (_attribute_values, 'Key={"pk": {"S": f"taskdef#{arn}"}}'),
        (_attribute_values, 'x = {":v": {"N": str(1)}}'),
        (_key_kinds, 'key = f"taskdef#{arn}"'),
        (_key_kinds, 'store.get("latest-deployment#" + arn)'),
    ],
)
def test_the_checks_catch_every_form(check, source: str) -> None:
    assert check(source) != []


def test_expression_names_are_not_keys() -> None:
    assert _key_kinds('names = {"#owner": "owner"}; c = "#owner = :owner"') == []


def test_no_kind_of_key_is_the_start_of_another() -> None:
    """A key is read back by its prefix (``rotation_id``): no prefix may hide another's keys."""
    for a in keys.PREFIXES:
        for b in keys.PREFIXES:
            assert a == b or not b.startswith(a), (a, b)
    assert keys.rotation_id(keys.rotation("arn@v1")) == "arn@v1"


def test_an_item_is_kept_until_the_second_at_or_after_the_moment_asked_for() -> None:
    moment = datetime(2026, 11, 20, 10, 0, 5, 123456, tzinfo=UTC)
    [(name, attribute)] = codec.expires(moment).items()

    assert name == "expires_at"
    assert int(attribute["N"]) == int(moment.timestamp()) + 1
    whole = moment.replace(microsecond=0)
    assert codec.expires(whole)["expires_at"] == {"N": str(int(whole.timestamp()))}


def test_claim_values_and_plain_values_survive_the_codec() -> None:
    moment = datetime(2026, 11, 20, 10, 0, 5, 123456, tzinfo=UTC)
    assert codec.value(codec.attribute(moment)) == moment
    assert codec.value(codec.attribute("text")) == "text"
    plain = {"kind": "flap", "times": [1, 2], "held": {"a": 3}, "on": True, "none": None}
    assert codec.decode(codec.encode(plain)) == plain
    assert codec.from_micros(codec.micros(moment + timedelta(microseconds=1))) > moment
