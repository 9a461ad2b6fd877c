"""Re-drive what failed: the event inside a dead-letter queue's message or an on-failure
destination's record.

What an operator finds after a failure is seldom the bare event:

- an asynchronous invocation record, which Lambda sends to a function's on-failure destination
  (and rotor's functions send to their dead-letter queue) once the retries are spent:
  ``{"version": "1.0", "requestContext": {...}, "requestPayload": EVENT, ...}``;
- an SQS message holding one of those, or the event itself (EventBridge's dead-letter queue):
  ``{"MessageId": ..., "Body": "..."}`` as ``aws sqs receive-message`` prints it (or the whole
  answer, with one message), ``{"messageId": ..., "body": "..."}`` as Lambda's SQS source has it.

``unwrap`` takes each layer off and says what it took off, so ``rotor replay`` runs the event
the function failed on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from orchestration import InvalidEventError

_MAX_LAYERS = 4


def unwrap(raw: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
    """The event inside ``raw`` and what was taken off to reach it (empty for an event)."""
    taken: list[str] = []
    current: Any = raw
    for _ in range(_MAX_LAYERS):
        inner, what = _layer(current)
        if inner is None:
            break
        if not isinstance(inner, dict):
            raise InvalidEventError(f"{what} does not hold a JSON object")
        taken.append(what)
        current = inner
    return current, taken


def _layer(value: Mapping[str, Any]) -> tuple[Any, str]:
    if "requestPayload" in value and "requestContext" in value:
        context = value.get("requestContext")
        context = context if isinstance(context, dict) else {}
        function = str(context.get("functionArn") or "a function").rsplit(":$", 1)[0]
        why = ", ".join(
            part
            for part in (
                str(context["condition"]) if context.get("condition") else "",
                f"{context['approximateInvokeCount']} attempt(s)"
                if context.get("approximateInvokeCount")
                else "",
            )
            if part
        )
        what = f"an invocation record of {function}" + (f" ({why})" if why else "")
        return value["requestPayload"], what
    messages = value.get("Messages")
    if isinstance(messages, list) and set(value) <= {"Messages", "ResponseMetadata"}:
        if len(messages) != 1:
            raise InvalidEventError(
                f"an SQS receive-message answer with {len(messages)} messages: save one of them"
            )
        return messages[0], "an SQS receive-message answer"
    for body_key, id_key in (("Body", "MessageId"), ("body", "messageId")):
        body = value.get(body_key)
        if isinstance(body, str) and id_key in value:
            try:
                inner = json.loads(body)
            except json.JSONDecodeError as exc:
                raise InvalidEventError(
                    f"SQS message {value[id_key]}: body is not JSON: {exc}"
                ) from None
            return inner, f"SQS message {value[id_key]}"
    return None, ""
