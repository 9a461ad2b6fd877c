"""Notifications people read: built as text here, published to SNS by ``SnsNotifier``.

A notification says what happened, to which secret, who did it, what will break, and what to
do. It never carries a secret value (rotor never reads one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestration.aws.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 100  # SNS: ASCII, no line breaks, at most 100 characters


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str
    subject: str
    body: str
    secret: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sns_subject(self) -> str:
        ascii_only = self.subject.encode("ascii", "replace").decode("ascii")
        flat = " ".join(ascii_only.split())
        return flat if len(flat) <= SUBJECT_LIMIT else flat[: SUBJECT_LIMIT - 3] + "..."

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "secret": self.secret,
            "body": self.body,
            **self.data,
        }


class Notifier(Protocol):
    def publish(self, notification: Notification) -> str | None:
        """Send it; return the message id when there is one."""
        ...

    def with_retry(self, retry: RetryPolicy) -> Notifier:
        """The same notifier, its calls made through ``retry`` (an invocation's deadline)."""
        ...


class SnsNotifier:
    def __init__(self, client: SNSClient, topic_arn: str, retry: RetryPolicy) -> None:
        self._client = client
        self._topic_arn = topic_arn
        self._retry = retry

    def publish(self, notification: Notification) -> str | None:
        answer = self._retry.call(
            "Publish",
            self._client.publish,
            TopicArn=self._topic_arn,
            Subject=notification.sns_subject,
            Message=notification.body,
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": notification.kind},
                "secret": {"DataType": "String", "StringValue": notification.secret},
            },
        )
        return answer.get("MessageId")

    def with_retry(self, retry: RetryPolicy) -> SnsNotifier:
        return SnsNotifier(self._client, self._topic_arn, retry)


class LogOnlyNotifier:
    """Used when no topic is configured: the notification is logged, not sent."""

    def publish(self, notification: Notification) -> str | None:
        log.warning("no ROTOR_TOPIC_ARN set; notification not sent: %s", notification.subject)
        return None

    def with_retry(self, retry: RetryPolicy) -> LogOnlyNotifier:
        return self  # makes no AWS call


def render(title: str, rows: list[tuple[str, str]], sections: list[tuple[str, list[str]]]) -> str:
    """Plain text for e-mail and chat: a title, aligned key/value rows, titled sections."""
    width = max((len(k) for k, _ in rows), default=0) + 1
    lines = [title, ""]
    lines += [f"{(key + ':').ljust(width)} {value}" for key, value in rows]
    for heading, items in sections:
        lines += ["", heading]
        lines += [f"  {item}" for item in items] or ["  (none)"]
    return "\n".join(lines) + "\n"
