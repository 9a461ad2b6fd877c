"""What the command line is doing, on one status line of stderr when stderr is a terminal.

It says where rotor is connecting, when an attempt failed and is tried again, and how far a
discovery has got (clusters, services, task definitions). The line is rewritten in place and
erased when the command is done, so output and error messages stay as they are. Nothing is
shown when stderr is a file or a pipe.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, TextIO

from orchestration import (
    AwsClients,
)

_MIN_INTERVAL_SECONDS = 0.1
_COUNTED = {
    "ListClusters": "cluster pages",
    "ListServices": "service pages",
    "DescribeServices": "service batches",
    "DescribeTaskDefinition": "task definitions",
}


class Progress:
    def __init__(self, stream: TextIO, where: str) -> None:
        self._stream = stream
        self._where = where
        self._calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._last = 0.0
        self._shown = False
        self._phase = ""
        self._show(f"connecting to {where}…", force=True)

    @classmethod
    def on_terminal(cls, stream: TextIO, where: str) -> Progress | None:
        try:
            interactive = stream.isatty()
        except (AttributeError, ValueError):
            interactive = False
        return cls(stream, where) if interactive else None

    def attach(self, clients: AwsClients) -> None:
        """Watch every call of every client made from ``clients``' session."""
        clients.session.events.register("after-call", self._after_call)
        clients.session.events.register("after-call-error", self._after_error)
        for made in ("ecs", "secretsmanager", "sns", "dynamodb"):
            client = clients.__dict__.get(made)
            if client is not None:
                client.meta.events.register("after-call", self._after_call)
                client.meta.events.register("after-call-error", self._after_error)

    def _after_call(self, model: Any, **_: Any) -> None:
        try:
            self._count(model.name)
        except Exception:  # pragma: no cover - a status line never stops a command
            return

    def _count(self, operation: str) -> None:
        with self._lock:
            self._calls[operation] += 1
            counts = [f"{self._calls[op]} {label}" for op, label in _COUNTED.items()]
            scanned = any(self._calls[op] for op in _COUNTED)
        if scanned:
            self._show("scanning ECS: " + ", ".join(counts) + "…", phase="scan")
        else:
            self._show(f"{operation} answered by {self._where}…", phase="call")

    def _after_error(
        self, event_name: str = "", exception: BaseException | None = None, **_: Any
    ) -> None:
        operation = event_name.rsplit(".", 1)[-1] or "a call"  # after-call-error.SERVICE.OP
        reason = type(exception).__name__ if exception else "error"
        self._show(f"{operation} to {self._where} failed ({reason})…", force=True)

    def _show(self, text: str, *, force: bool = False, phase: str = "") -> None:
        """Rewrite the line; at most every ``_MIN_INTERVAL_SECONDS`` within one phase."""
        now = time.monotonic()
        with self._lock:
            new_phase = phase != self._phase
            if not (force or new_phase) and now - self._last < _MIN_INTERVAL_SECONDS:
                return
            self._last, self._phase = now, phase
            self._shown = True
            self._stream.write(f"\r\033[Krotor: {text}")
            self._stream.flush()

    def done(self) -> None:
        with self._lock:
            if self._shown:
                self._stream.write("\r\033[K")
                self._stream.flush()
                self._shown = False
