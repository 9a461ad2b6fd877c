"""Task definition summaries: a memory cache, and the state table behind it (outlives a container).

Revisions are immutable, so a summary never goes stale: a cold container reads the summaries
other containers already made from the state table (items ``taskdef#<ARN>``, kept 30 days after
they were written) and calls ``DescribeTaskDefinition`` only for revisions nobody has seen. The
warm container's memory cache stays in front. The table is an optimisation: when it cannot be
read or written, rotor logs it and asks ECS, as without a table.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import AwsCallError
from orchestration.models import TaskDefinitionSummary, UnreadableReference
from orchestration.secrets.references import ReferenceField, ReferenceKind, SecretReference
from orchestration.state import codec, keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

KEEP_FOR = keys.TASK_DEFINITION_KEEP
FORMAT = 1  # bump when the stored shape changes: older items are then ignored


def summary_to_json(summary: TaskDefinitionSummary) -> str:
    return json.dumps(
        {
            "format": FORMAT,
            "arn": summary.arn,
            "references": [
                {
                    "container": container,
                    "raw": ref.raw,
                    "field": ref.field.value,
                    "kind": ref.kind.value,
                    "partition": ref.partition,
                    "region": ref.region,
                    "account": ref.account,
                    "name_part": ref.name_part,
                    "json_key": ref.json_key,
                    "version_stage": ref.version_stage,
                    "version_id": ref.version_id,
                }
                for container, ref in summary.references
            ],
            "unreadable": [
                {
                    "task_definition": bad.task_definition,
                    "container": bad.container,
                    "value": bad.value,
                    "error": bad.error,
                }
                for bad in summary.unreadable
            ],
            "task_role_arn": summary.task_role_arn,
            "execution_role_arn": summary.execution_role_arn,
        },
        separators=(",", ":"),
    )


def summary_from_json(text: str) -> TaskDefinitionSummary | None:
    """The summary, or None for an item of another format (or not one at all)."""
    try:
        data: dict[str, Any] = json.loads(text)
        if data.get("format") != FORMAT:
            return None
        references = tuple(
            (
                str(r["container"]),
                SecretReference(
                    raw=r["raw"],
                    field=ReferenceField(r["field"]),
                    kind=ReferenceKind(r["kind"]),
                    partition=r["partition"],
                    region=r["region"],
                    account=r["account"],
                    name_part=r["name_part"],
                    json_key=r.get("json_key"),
                    version_stage=r.get("version_stage"),
                    version_id=r.get("version_id"),
                ),
            )
            for r in data["references"]
        )
        unreadable = tuple(
            UnreadableReference(u["task_definition"], u["container"], u["value"], u["error"])
            for u in data["unreadable"]
        )
        return TaskDefinitionSummary(
            arn=str(data["arn"]),
            references=references,
            unreadable=unreadable,
            task_role_arn=data.get("task_role_arn"),
            execution_role_arn=data.get("execution_role_arn"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignored a stored task definition summary rotor cannot read: %r", exc)
        return None


class TaskDefinitionCache:
    """Task definition summaries by ARN. Revisions never change, so entries never expire."""

    def __init__(self) -> None:
        self._entries: dict[str, TaskDefinitionSummary] = {}
        self._lock = threading.Lock()

    def get(self, arn: str) -> TaskDefinitionSummary | None:
        with self._lock:
            return self._entries.get(arn)

    def put(self, summary: TaskDefinitionSummary) -> None:
        with self._lock:
            self._entries[summary.arn] = summary

    def __len__(self) -> int:
        return len(self._entries)

    def with_retry(self, retry: RetryPolicy) -> Self:
        """The same entries; a cache that reads AWS reaches it through ``retry``."""
        return self


class StoredTaskDefinitionCache(TaskDefinitionCache):
    """The memory cache, backed by the state table."""

    def __init__(self, client: DynamoDBClient, table: str, retry: RetryPolicy) -> None:
        super().__init__()
        self._client = client
        self._table = table
        self._retry = retry

    def with_retry(self, retry: RetryPolicy) -> Self:
        clone = copy.copy(self)  # the same entries and lock: the warm cache stays shared
        clone._retry = retry
        return clone

    def get(self, arn: str) -> TaskDefinitionSummary | None:
        found = super().get(arn)
        if found is not None:
            return found
        try:
            answer = self._retry.call(
                "GetItem",
                self._client.get_item,
                TableName=self._table,
                Key=codec.key(keys.task_definition(arn)),
                ProjectionExpression="summary",
            )
        except AwsCallError as exc:
            log.warning("could not read the stored summary of %s: %s", arn, exc)
            return None
        text = codec.text_of(answer.get("Item", {}).get("summary"))
        summary = summary_from_json(text) if text else None
        if summary is not None and summary.arn == arn:
            super().put(summary)
            return summary
        return None

    def put(self, summary: TaskDefinitionSummary) -> None:
        super().put(summary)
        try:
            self._retry.call(
                "PutItem",
                self._client.put_item,
                TableName=self._table,
                Item={
                    **codec.key(keys.task_definition(summary.arn)),
                    "summary": codec.text(summary_to_json(summary)),
                    **codec.expires(datetime.now(UTC) + KEEP_FOR),
                },
            )
        except AwsCallError as exc:
            log.warning("could not store the summary of %s: %s", summary.arn, exc)
