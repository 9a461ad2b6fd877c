"""Notifications people read: built as text here, published to SNS by ``SnsNotifier``.

A notification says what happened, to which secret, who did it, what will break, and what to
do. It never carries a secret value (rotor never reads one).

Every notification is bounded here, whatever built it: SNS refuses a message whose body and
attributes pass 256 KiB, and a refused warning is a lost one. ``render`` lists at most
``SECTION_ENTRIES`` entries per section and counts the rest, saying how to list them all
(``rotor discover SECRET``); every value and line is shown with its control characters
escaped (a caller's user agent cannot fake lines or colour a terminal) and cut at
``LINE_LIMIT`` characters; and ``Notification.sns_request`` cuts whatever still does not fit.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from orchestration.aws.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 99  # SNS: ASCII, no line breaks or control characters, less than 100 long
#: SNS: a message and its attributes (names, data types and values) together, in UTF-8 bytes
#: (a topic's default MaximumMessageSize, 256 KiB).
MESSAGE_LIMIT = 262_144
#: At most this many entries (a service, with its command) are listed per section.
SECTION_ENTRIES = 50
#: A value or a line longer than this many characters is cut (after escaping).
LINE_LIMIT = 1_000
#: Characters that are shown escaped: control characters (ANSI escapes, newlines), format
#: characters (bidirectional overrides, zero-width), line and paragraph separators, and lone
#: surrogates (not UTF-8 at all).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str
    subject: str
    body: str
    secret: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def sns_subject(self) -> str:
        """ASCII, one line, no control characters, under 100 characters: as SNS requires."""
        ascii_only = self.subject.encode("ascii", "replace").decode("ascii")
        visible = "".join(c if c.isprintable() else " " for c in ascii_only)
        flat = " ".join(visible.split()) or "rotor notification"
        return flat if len(flat) <= SUBJECT_LIMIT else flat[: SUBJECT_LIMIT - 3] + "..."

    def sns_request(self, limit: int = MESSAGE_LIMIT) -> dict[str, Any]:
        """Subject, Message and MessageAttributes of the SNS ``Publish``, the message cut at a
        line so that it and the attributes stay within ``limit`` bytes of UTF-8."""
        attributes = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (("kind", self.kind), ("secret", self.secret))
            if value  # SNS refuses an empty attribute value
        }
        taken = sum(
            _size(name) + _size(a["DataType"]) + _size(a["StringValue"])
            for name, a in attributes.items()
        )
        return {
            "Subject": self.sns_subject,
            "Message": _fit(self.body, limit - taken, self.secret),
            "MessageAttributes": attributes,
        }

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
            **notification.sns_request(),
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


def render(
    title: str,
    rows: list[tuple[str, str]],
    sections: list[tuple[str, Sequence[str]]],
    *,
    rest: str | None = None,
) -> str:
    """Plain text for e-mail and chat: a title, aligned key/value rows, titled sections.

    A section lists its first ``SECTION_ENTRIES`` entries and counts the others; ``rest`` says
    how to list them all (a command). An item that starts with a space continues the entry
    above it (a service's command under the service). Every title, value and item is shown
    with its control characters escaped and cut at ``LINE_LIMIT`` characters.
    """
    width = max((len(k) for k, _ in rows), default=0) + 1
    lines = [printable(title), ""]
    lines += [f"{(key + ':').ljust(width)} {printable(value)}" for key, value in rows]
    for heading, items in sections:
        lines += ["", printable(heading)]
        entries: list[list[str]] = []
        for item in items:
            if entries and item[:1].isspace():
                entries[-1].append(item)
            else:
                entries.append([item])
        for entry in entries[:SECTION_ENTRIES]:
            lines += [f"  {printable(item)}" for item in entry]
        left_out = len(entries) - SECTION_ENTRIES
        if left_out > 0:
            how = f"; to list them all: {printable(rest)}" if rest else ""
            lines.append(f"  ... and {left_out:,} more, not listed here{how}")
        if not entries:
            lines.append("  (none)")
    return "\n".join(lines) + "\n"


def printable(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` on one line, as it can be shown: control and format characters escaped
    (``\\x1b``, ``\\n``, ``\\u202e``), and cut at ``limit`` characters, saying how much was cut."""
    shown = "".join(
        c.encode("unicode_escape").decode("ascii") if unicodedata.category(c) in _HIDDEN else c
        for c in text
    )
    if len(shown) <= limit:
        return shown
    return f"{shown[:limit]}... ({len(shown) - limit:,} more characters not shown)"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _fit(body: str, limit: int, secret: str) -> str:
    """``body``, or as many of its first lines as fit in ``limit`` bytes with a last line
    saying the rest was cut and how to see it."""
    if _size(body) <= limit:
        return body
    lines = body.splitlines()
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = _size(line) + 1
        if used + cost > limit - 1_000:  # room for the closing line
            break
        kept.append(line)
        used += cost
    left = len(lines) - len(kept)
    kept.append(
        f"... {left:,} more line(s) cut: the message passed SNS's limit"
        f" of {MESSAGE_LIMIT:,} bytes."
        f" To list every service that references the secret: rotor discover {secret[:500]}"
    )
    return "\n".join(kept) + "\n"
