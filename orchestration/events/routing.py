"""Which deployed function an event reaches: the template's own EventBridge rules, evaluated.

The SAM template (``infra/template.yaml``, shipped inside the package as
``orchestration/events/template.yaml``) is the one routing table. ``rotor replay`` and
``rotor demo`` route an event the way the deployed rules would by evaluating those same
patterns; there is no second list here. ``matches`` implements the EventBridge pattern
operators the templates use (exact values, ``prefix``, ``suffix``, ``equals-ignore-case``,
``anything-but``, ``exists``, ``wildcard``, ``numeric``, ``$or``); a contract test checks it
against moto's ``EventPattern`` on every sample event.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, auto
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from orchestration.errors import ConfigurationError

TEMPLATE_RESOURCE = "template.yaml"


class _Absent(Enum):
    """A field the event does not have (unlike a field whose value is null)."""

    MISSING = auto()


_MISSING = _Absent.MISSING


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``AWS::Events::Rule`` of the template and the functions it invokes."""

    name: str  # the rule's logical id
    pattern: Mapping[str, Any]
    state: str
    functions: tuple[str, ...]  # logical ids of the target functions
    handlers: tuple[str, ...]  # their Handler, e.g. handlers.rotation.lambda_handler

    def matches(self, event: Mapping[str, Any]) -> bool:
        return matches(self.pattern, event)


@dataclass(frozen=True, slots=True)
class Route:
    rule: str
    function: str
    handler: str

    def describe(self) -> str:
        return f"rule {self.rule} -> {self.function} ({self.handler})"

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "function": self.function, "handler": self.handler}


def unrouted_note() -> str:
    return "no rule of infra/template.yaml matches this event: the deployed stack never sees it"


# --- the template -------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (``!Ref``, ``!GetAtt``, ``!Sub``…)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(text: str | None = None) -> dict[str, Any]:
    """The SAM template as plain data (intrinsics as their long form)."""
    if text is None:
        try:
            text = resources.files(__package__).joinpath(TEMPLATE_RESOURCE).read_text("utf-8")
        except OSError as exc:
            raise ConfigurationError(f"the SAM template is not installed: {exc}") from None
    try:
        data = yaml.load(text, Loader=_TemplateLoader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"the SAM template is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise ConfigurationError("the SAM template has no Resources")
    return data


def rules_of(template: Mapping[str, Any]) -> tuple[Rule, ...]:
    """Every EventBridge rule of the template that targets one of its functions."""
    resources_: Mapping[str, Any] = template["Resources"]
    found = []
    for name, resource in resources_.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Events::Rule":
            continue
        props = resource.get("Properties") or {}
        pattern = props.get("EventPattern")
        if not isinstance(pattern, dict):
            continue
        functions = []
        handlers = []
        for target in props.get("Targets") or []:
            arn = target.get("Arn") if isinstance(target, dict) else None
            ref = arn.get("Fn::GetAtt") if isinstance(arn, dict) else None
            if not (isinstance(ref, list) and ref and ref[0] in resources_):
                continue
            function = resources_[ref[0]]
            if function.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
                continue
            functions.append(str(ref[0]))
            handlers.append(str((function.get("Properties") or {}).get("Handler", "?")))
        found.append(
            Rule(
                name=str(name),
                pattern=pattern,
                state=str(props.get("State", "ENABLED")),
                functions=tuple(functions),
                handlers=tuple(handlers),
            )
        )
    return tuple(found)


@lru_cache(maxsize=1)
def deployed_rules() -> tuple[Rule, ...]:
    """The rules of the template shipped with this package."""
    return rules_of(load_template())


def route(event: Mapping[str, Any], rules: Iterable[Rule] | None = None) -> list[Route]:
    """Every (rule, function) the deployed stack would invoke for ``event``; empty if none."""
    chosen = deployed_rules() if rules is None else rules
    return [
        Route(rule.name, function, handler)
        for rule in chosen
        if rule.state.startswith("ENABLED") and rule.matches(event)
        for function, handler in zip(rule.functions, rule.handlers, strict=True)
    ]


# --- the matcher --------------------------------------------------------------------------


def matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """True when ``event`` matches the EventBridge ``pattern``."""
    return _match_object(pattern, event)


def _match_object(pattern: Mapping[str, Any], node: Any) -> bool:
    for key, expected in pattern.items():
        if key == "$or":
            if not any(_match_object(branch, node) for branch in expected):
                return False
            continue
        value = node.get(key, _MISSING) if isinstance(node, Mapping) else _MISSING
        if isinstance(expected, Mapping):
            if not _match_object(expected, value if isinstance(value, Mapping) else {}):
                return False
        elif isinstance(expected, Sequence) and not isinstance(expected, str):
            if not _match_values(expected, value):
                return False
        else:
            raise ConfigurationError(f"pattern field {key!r} is neither an object nor a list")
    return True


def _match_values(filters: Sequence[Any], value: Any) -> bool:
    """A field matches when any filter matches it (or, for an array, any of its elements)."""
    for condition in filters:
        if isinstance(condition, Mapping):
            if _match_operator(condition, value):
                return True
        elif value is not _MISSING and any(_equal(condition, v) for v in _values(value)):
            return True
    return False


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _equal(expected: Any, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    if isinstance(expected, int | float) and isinstance(value, int | float):
        return expected == value
    return type(expected) is type(value) and bool(expected == value)


def _match_operator(condition: Mapping[str, Any], value: Any) -> bool:
    if len(condition) != 1:
        raise ConfigurationError(f"a pattern operator has one key: {dict(condition)}")
    name, argument = next(iter(condition.items()))
    if name == "exists":
        present = value is not _MISSING and not (isinstance(value, list) and not value)
        return present is bool(argument)
    if value is _MISSING:
        return False
    test = _operator(name, argument)
    return any(test(v) for v in _values(value))


def _operator(name: str, argument: Any) -> Callable[[Any], bool]:
    if name == "prefix":
        return _text_test(argument, str.startswith)
    if name == "suffix":
        return _text_test(argument, str.endswith)
    if name == "equals-ignore-case":
        return _text_test(argument, lambda v, a: v == a, fold=True)
    if name == "wildcard":
        globs = argument if isinstance(argument, list) else [argument]
        regexes = [re.compile(_wildcard_regex(g), re.DOTALL) for g in globs]
        return lambda v: isinstance(v, str) and any(r.fullmatch(v) for r in regexes)
    if name == "anything-but":
        if isinstance(argument, Mapping):
            inner = _operator(*next(iter(argument.items())))
            return lambda v: not inner(v)
        excluded = argument if isinstance(argument, list) else [argument]
        return lambda v: not any(_equal(e, v) for e in excluded)
    if name == "numeric":
        return _numeric_test(argument)
    raise ConfigurationError(f"rotor's pattern matcher does not know the {name!r} operator")


def _text_test(
    argument: Any, test: Callable[[str, str], bool], *, fold: bool = False
) -> Callable[[Any], bool]:
    if isinstance(argument, Mapping) and "equals-ignore-case" in argument:
        argument, fold = argument["equals-ignore-case"], True
    options = [str(a) for a in (argument if isinstance(argument, list) else [argument])]
    if fold:
        options = [o.casefold() for o in options]

    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        text = value.casefold() if fold else value
        return any(test(text, option) for option in options)

    return check


def _wildcard_regex(glob: str) -> str:
    parts = []
    escaped = False
    for char in glob:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            parts.append(".*")
        else:
            parts.append(re.escape(char))
    return "".join(parts)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    ">=": operator.ge,
    ">": operator.gt,
}


def _numeric_test(argument: Sequence[Any]) -> Callable[[Any], bool]:
    pairs = list(zip(argument[::2], argument[1::2], strict=True))

    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return all(_COMPARE[op](value, bound) for op, bound in pairs)

    return check


__all__ = [
    "Route",
    "Rule",
    "deployed_rules",
    "load_template",
    "matches",
    "route",
    "rules_of",
    "unrouted_note",
]
