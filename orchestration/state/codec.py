"""The state table's one codec: how rotor's values become DynamoDB attribute values and back.

Nothing else in rotor builds or reads an attribute value (``{"S": ...}``, ``{"N": ...}``). The
table holds three shapes of item, each made of these functions:

* a claim (``store.StateStore.claim``): ``owner`` and ``state`` as text, ``claimed_at`` and
  ``lease_until`` in epoch microseconds, the claimant's data as top-level attributes (text as
  text, times as epoch microseconds: ``attribute`` and ``value``);
* an ``update`` item (the rollout store's): plain values, text, numbers, lists and maps
  (``encode`` and ``decode``);
* a task-definition summary: its JSON text in ``summary`` (``text``).

Every item has the key ``pk`` (``key``) and the TTL ``expires_at`` in whole epoch seconds,
never before the moment asked for (``expires``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from orchestration.times import utc

KEY_ATTRIBUTE = "pk"
EXPIRES_ATTRIBUTE = "expires_at"  # epoch seconds; also the table's TTL attribute

Value = str | datetime
Attribute = dict[str, Any]

_SERIALIZE = TypeSerializer().serialize
_DESERIALIZE = TypeDeserializer().deserialize


# --- single attributes -------------------------------------------------------------------


def text(value: str) -> Attribute:
    return {"S": value}


def number(value: int) -> Attribute:
    return {"N": str(value)}


def text_of(attribute: Mapping[str, Any] | None) -> str | None:
    """The text of a string attribute; ``None`` when it is missing or not text."""
    value = (attribute or {}).get("S")
    return str(value) if value is not None else None


def number_of(attribute: Mapping[str, Any] | None, default: int = 0) -> int:
    value = (attribute or {}).get("N")
    return int(value) if value is not None else default


def key(pk: str) -> dict[str, Attribute]:
    """The key of the item ``pk``."""
    return {KEY_ATTRIBUTE: text(pk)}


def expires(moment: datetime) -> dict[str, Attribute]:
    """The TTL attribute of an item kept until ``moment``."""
    return {EXPIRES_ATTRIBUTE: number(seconds(expiry(moment)))}


# --- a claim's data: text, and times in epoch microseconds ---------------------------------


def attribute(value: Value) -> Attribute:
    if isinstance(value, datetime):
        return number(micros(value))
    return text(value)


def value(attribute: Mapping[str, Any]) -> Value | None:
    """A claim's data value (``None``: an attribute of a type claims never write)."""
    if "S" in attribute:
        return str(attribute["S"])
    if "N" in attribute:
        return from_micros(int(attribute["N"]))
    return None


# --- ``update`` items: plain values --------------------------------------------------------


def encode(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _SERIALIZE(v) for name, v in values.items()}


def decode(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(_DESERIALIZE(v)) for name, v in item.items()}


def _plain(found: Any) -> Any:
    """DynamoDB numbers come back as Decimal: whole ones as int."""
    if isinstance(found, Decimal):
        return int(found) if found == int(found) else float(found)
    if isinstance(found, dict):
        return {k: _plain(v) for k, v in found.items()}
    if isinstance(found, list):
        return [_plain(v) for v in found]
    return found


# --- times ---------------------------------------------------------------------------------


def micros(moment: datetime) -> int:
    """Epoch microseconds, exactly (no float rounding)."""
    delta = utc(moment) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(count: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=count)


def seconds(moment: datetime) -> int:
    return int(utc(moment).timestamp())


def expiry(moment: datetime) -> datetime:
    """Expiry is kept in whole seconds (DynamoDB's TTL): never before the moment asked for."""
    moment = utc(moment)
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)
