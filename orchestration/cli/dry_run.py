"""``rotor replay --dry-run``: plan and print, write nothing.

One seam, at the clients: every AWS call that is not a read (``Describe*``, ``List*``, ``Get*``,
``BatchGet*``, ``Query``, ``Scan``, CloudTrail's ``LookupEvents``) is answered here instead of
being sent, and recorded: ``UpdateService``, ``Publish``, ``RestoreSecret``, the state table's
``PutItem``/``UpdateItem``/``DeleteItem``, and whatever write a later version adds. The use
cases run unchanged, so the plan is the real one (reads are real); what they would have written
is listed instead.
A write answered here always "succeeds": the ledger grants every claim and the window lets
every notification through, so the dry run shows what a first delivery would do.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

from orchestration import AwsClients

READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "Query", "Scan", "LookupEvents")


@dataclass(frozen=True, slots=True)
class WouldCall:
    """A write the dry run did not send."""

    service: str
    operation: str
    target: str

    def to_dict(self) -> dict[str, str]:
        return {"service": self.service, "operation": self.operation, "target": self.target}

    def describe(self) -> str:
        return f"{self.operation} {self.target}".rstrip()


class DryRun:
    """Lets reads through; answers and records every other call."""

    def __init__(self) -> None:
        self._calls: list[WouldCall] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[WouldCall]:
        with self._lock:
            return list(self._calls)

    def attach(self, clients: AwsClients) -> AwsClients:
        """Guard every client of ``clients``: those made from now on (the session's events are
        copied into each new client) and those already made."""
        hook: Any = self._before_call  # answers the call: botocore's hooks may return a response
        emitters = [clients.session.events]
        # Clients are cached properties: those made already sit in the instance's __dict__.
        emitters += [c.meta.events for c in vars(clients).values() if hasattr(c, "meta")]
        for events in emitters:
            events.register("before-parameter-build", _keep_params)
            events.register("before-call", hook)
        return clients

    def _before_call(
        self, model: Any, context: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        operation: str = model.name
        if operation.startswith(READ_PREFIXES):
            return None
        service: str = model.service_model.service_name
        call = WouldCall(service, operation, _target(context.get(_PARAMS, {})))
        with self._lock:
            if call not in self._calls:  # a retried claim or notification is one write
                self._calls.append(call)
        answer = {
            **_answer(operation, context.get(_PARAMS, {})),
            "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "dry-run"},
        }
        return AWSResponse("dry-run://", 200, HTTPHeaders(), None), answer


_PARAMS = "rotor_dry_run_params"


def _answer(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """What rotor's code reads from the answer of a write; the rest is left empty."""
    if operation in ("Publish", "SendMessage"):
        return {"MessageId": "dry-run"}
    if operation == "SendMessageBatch":  # every entry "sent"
        return {
            "Successful": [
                {"Id": entry["Id"], "MessageId": f"dry-run-{entry['Id']}"}
                for entry in params.get("Entries", [])
            ],
            "Failed": [],
        }
    return {}


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """The call's own parameters, for the record (``before-call`` sees the serialised request)."""
    context[_PARAMS] = dict(params)


def _target(params: dict[str, Any]) -> str:
    """What a write acts on, in a few words (never a message body or a secret value)."""
    if "service" in params:  # ECS
        return str(params["service"])
    if "SecretId" in params:
        return str(params["SecretId"])
    if "TopicArn" in params:
        subject = params.get("Subject")
        return f"{params['TopicArn']}" + (f": {subject}" if subject else "")
    if "QueueUrl" in params:
        return str(params["QueueUrl"])
    if "TableName" in params:
        key = params.get("Key") or {k: v for k, v in params.get("Item", {}).items() if k == "pk"}
        words = " ".join(str(v.get("S", v)) for v in key.values()) if key else ""
        return f"{params['TableName']} {words}".rstrip()
    return ""
