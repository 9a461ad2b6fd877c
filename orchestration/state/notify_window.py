"""At most one notification per key (secret, caller) per window.

A fleet reading a deleted secret a thousand times a minute must not send a thousand e-mails.
A window is a claim in the state store (``orchestration.state.store``) whose lease is the
window: in DynamoDB when ``ROTOR_STATE_TABLE`` is set (shared by every concurrent Lambda), in
memory otherwise. The DynamoDB claim is one conditional write: atomic, so two concurrent
invocations cannot both win. A window given back (the notification could not be sent) is
released with an owner check: a window another invocation opened since is never undone.
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Self

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import AwsCallError
from orchestration.state import keys
from orchestration.state.store import (
    DynamoDbStateStore,
    MemoryStateStore,
    Record,
    StateStore,
    Won,
)
from orchestration.times import utc

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)


class NotifyWindow:
    def __init__(self, store: StateStore, window: timedelta) -> None:
        self._store = store
        self._window = window
        self._mine: dict[str, Record] = {}  # windows this object opened, by key
        self._lock = threading.Lock()

    def claim(self, key: str, now: datetime) -> bool:
        """True when no notification for ``key`` was sent within the window before ``now``."""
        until = now + self._window
        # The window is measured in event time (``now``), but the record must outlive it in
        # wall-clock time too: a backlog processed after the window's end would otherwise
        # write a record DynamoDB's TTL may sweep at once, and the next late event of the same
        # window would notify again.
        keep_until = max(utc(until), datetime.now(UTC) + self._window)
        answer = self._store.claim(
            keys.notify(key), uuid.uuid4().hex, now=now, lease_until=until, expires_at=keep_until
        )
        with self._lock:
            for old in [k for k, r in self._mine.items() if utc(r.lease_until) <= utc(now)]:
                del self._mine[old]
            if isinstance(answer, Won):
                self._mine[key] = answer.record
                return True
        return False

    @property
    def store(self) -> StateStore:
        """The state store the windows live in (per-event items of the alarms, too)."""
        return self._store

    def with_retry(self, retry: RetryPolicy) -> Self:
        """This window's store reached through ``retry`` (an invocation's deadline)."""
        clone = copy.copy(self)
        clone._store = self._store.with_retry(retry)
        clone._mine = {}
        clone._lock = threading.Lock()
        return clone

    def release(self, key: str) -> None:
        """Give this object's claim on ``key`` back (the notification could not be sent): the
        next read may try. A window someone else holds stays."""
        with self._lock:
            record = self._mine.pop(key, None)
        if record is not None:
            self._store.release(record)

    @contextmanager
    def released_on_failure(self, key: str) -> Iterator[None]:
        """Give ``key`` back when the block raises (the notification was not sent, so the
        retried event notifies), then raise the block's error. A failure to give the window
        back is logged, so the original error is the one raised."""
        try:
            yield
        except Exception:
            try:
                self.release(key)
            except AwsCallError as exc:
                log.error("could not release the notify window for %s: %s", key, exc)
            raise


class MemoryNotifyWindow(NotifyWindow):
    def __init__(self, window: timedelta, store: StateStore | None = None) -> None:
        super().__init__(store if store is not None else MemoryStateStore(), window)


class DynamoDbNotifyWindow(NotifyWindow):
    def __init__(
        self, client: DynamoDBClient, table: str, window: timedelta, retry: RetryPolicy
    ) -> None:
        super().__init__(DynamoDbStateStore(client, table, retry), window)
