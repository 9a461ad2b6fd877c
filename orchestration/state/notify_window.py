"""At most one notification per key (secret, caller) per window.

A fleet reading a deleted secret a thousand times a minute must not send a thousand e-mails.
The window lives in DynamoDB when ``ROTOR_STATE_TABLE`` is set (shared by every concurrent
Lambda), in memory otherwise. The DynamoDB claim is one conditional write: atomic, so two
concurrent invocations cannot both win.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from orchestration.aws.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_ATTRIBUTE = "pk"
EXPIRES_ATTRIBUTE = "expires_at"  # epoch seconds; also the table's TTL attribute


class NotifyWindow(Protocol):
    def claim(self, key: str, now: datetime) -> bool:
        """True when no notification for ``key`` was sent within the window before ``now``."""
        ...

    def release(self, key: str) -> None:
        """Give a claim back (the notification could not be sent): the next read may try."""
        ...


class MemoryNotifyWindow:
    def __init__(self, window: timedelta) -> None:
        self._window = window
        self._until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, now: datetime) -> bool:
        with self._lock:
            until = self._until.get(key)
            if until is not None and now < until:
                return False
            self._until[key] = now + self._window
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._until.pop(key, None)


class DynamoDbNotifyWindow:
    def __init__(
        self, client: DynamoDBClient, table: str, window: timedelta, retry: RetryPolicy
    ) -> None:
        self._client = client
        self._table = table
        self._window = window
        self._retry = retry

    def claim(self, key: str, now: datetime) -> bool:
        now_epoch = int(now.timestamp())
        expires = int((now + self._window).timestamp())
        token = uuid.uuid4().hex  # the same across retries of this one claim

        def put() -> bool:
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item={
                        KEY_ATTRIBUTE: {"S": f"notify#{key}"},
                        EXPIRES_ATTRIBUTE: {"N": str(expires)},
                        "owner": {"S": token},
                    },
                    ConditionExpression=f"attribute_not_exists({KEY_ATTRIBUTE}) "
                    f"OR {EXPIRES_ATTRIBUTE} <= :now",
                    ExpressionAttributeValues={":now": {"N": str(now_epoch)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    # Ours after all when an earlier attempt landed and its answer was lost.
                    old: dict[str, Any] = exc.response.get("Item") or {}  # type: ignore[assignment]
                    return bool(old.get("owner", {}).get("S") == token)
                raise
            return True

        return self._retry.call("PutItem", put)

    def release(self, key: str) -> None:
        self._retry.call(
            "DeleteItem",
            self._client.delete_item,
            TableName=self._table,
            Key={KEY_ATTRIBUTE: {"S": f"notify#{key}"}},
        )
