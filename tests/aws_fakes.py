"""Make moto behave like AWS where rotor depends on it, and record what rotor asked.

moto does not paginate ECS ListServices/ListClusters, does not enforce DescribeServices'
limit of ten services, and accepts ``UpdateService(forceNewDeployment)`` for services on the
CODE_DEPLOY and EXTERNAL deployment controllers, which AWS refuses (InvalidParameterException,
"... Use AWS CodeDeploy to trigger a new deployment."); ``enforce_ecs_limits`` adds all three
through botocore's event hooks, so tests prove rotor against AWS's behaviour, not moto's.
``ErrorInjector`` answers a share of calls with an error (ThrottlingException by default)
before they reach moto; ``LoseFirstAnswer`` lets a call land and then loses its answer.
``ApiCalls`` counts every call a client makes, by operation. ``queue_with_dead_letters`` and
``sqs_lambda_event`` stand in for the redeploy queue and Lambda's SQS event source.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

DEFAULT_PAGE = {"ListServices": 10, "ListClusters": 100}
MAX_PAGE = {"ListServices": 100, "ListClusters": 100}
LIST_KEYS = {"ListServices": "serviceArns", "ListClusters": "clusterArns"}


def _error_response(status: int, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse("https://fake.invalid/", status, {}, None)
    return http, {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }


class ApiCalls:
    """Counts the calls a client makes (each attempt that is sent counts once)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def attach(self, client: Any) -> ApiCalls:
        prefix = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_first(f"before-parameter-build.{prefix}", self._record)
        return self

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        with self._lock:
            self.counts[model.name] += 1
            self.calls.append((model.name, dict(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


def _deployment_controller(region: str, cluster: str, service: str) -> str | None:
    """The deployment controller moto holds for a service (None when moto has no such service)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[DEFAULT_ACCOUNT_ID][region]
    found = backend.services.get(f"{cluster.rsplit('/', 1)[-1]}:{service.rsplit('/', 1)[-1]}")
    return None if found is None else str(found.deployment_controller.get("type", "ECS"))


def enforce_ecs_limits(client: Any) -> None:
    """Page ECS list calls as AWS does (default 10, max 100, nextToken), refuse
    DescribeServices with more than ten services, and refuse a forced deployment of a service
    on the CODE_DEPLOY or EXTERNAL deployment controller."""
    region = client.meta.region_name

    def inspect(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # API parameters are only visible here (before-call sees the serialised request).
        name = model.name
        if name == "DescribeServices" and len(params.get("services", [])) > 10:
            context["fake_error"] = "services can have at most 10 items."
        if name == "UpdateService" and params.get("forceNewDeployment"):
            cluster = str(params.get("cluster", "default"))
            controller = _deployment_controller(region, cluster, str(params["service"]))
            if controller == "CODE_DEPLOY":
                context["fake_error"] = (
                    "Unable to update network parameters on services with a CODE_DEPLOY "
                    "deployment controller. Use AWS CodeDeploy to trigger a new deployment."
                )
            elif controller == "EXTERNAL":
                context["fake_error"] = (
                    "Unable to force a new deployment on services with an EXTERNAL deployment "
                    "controller. Create a new task set instead."
                )
        if name in LIST_KEYS:
            size = params.get("maxResults", DEFAULT_PAGE[name])
            if not 1 <= size <= MAX_PAGE[name]:
                context["fake_error"] = f"maxResults must be 1..{MAX_PAGE[name]}"
            token = params.pop("nextToken", None)
            context["fake_page"] = (int(token) if token else 0, size)

    def before(context: dict[str, Any], **_: Any) -> Any:
        if "fake_error" in context:
            return _error_response(400, "InvalidParameterException", context["fake_error"])
        return None

    def after(model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if model.name in LIST_KEYS and "fake_page" in context:
            start, size = context["fake_page"]
            items = parsed.get(LIST_KEYS[model.name], [])
            parsed[LIST_KEYS[model.name]] = items[start : start + size]
            parsed.pop("nextToken", None)
            if start + size < len(items):
                parsed["nextToken"] = str(start + size)

    client.meta.events.register("before-parameter-build.ecs", inspect)
    client.meta.events.register("before-call.ecs", before)
    client.meta.events.register("after-call.ecs", after)


class ErrorInjector:
    """Answers a share of calls with an error before they reach moto (seeded, repeatable)."""

    def __init__(
        self,
        rate: float,
        *,
        code: str = "ThrottlingException",
        status: int = 400,
        operations: Iterable[str] | None = None,
        seed: int = 7,
    ) -> None:
        self.rate = rate
        self.code = code
        self.status = status
        self.operations = set(operations) if operations is not None else None
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def attach(self, client: Any) -> ErrorInjector:
        prefix = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{prefix}", self._maybe_fail)
        return self

    def _maybe_fail(self, model: Any, **_: Any) -> Any:
        if self.operations is not None and model.name not in self.operations:
            return None
        with self._lock:
            fail = self._random.random() < self.rate
            if fail:
                self.injected[model.name] += 1
        if fail:
            return _error_response(self.status, self.code, f"injected {self.code}")
        return None


class FailFor:
    """Fails every call of ``operation`` whose params match ``when`` with ``code``."""

    def __init__(self, operation: str, code: str, **when: Any) -> None:
        self.operation = operation
        self.code = code
        self.when = when
        self.hits = 0

    def attach(self, client: Any) -> FailFor:
        prefix = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(
            f"before-parameter-build.{prefix}.{self.operation}", self._match
        )
        client.meta.events.register(f"before-call.{prefix}.{self.operation}", self._fail)
        return self

    def detach(self, client: Any) -> None:
        prefix = client.meta.service_model.service_id.hyphenize()
        client.meta.events.unregister(
            f"before-parameter-build.{prefix}.{self.operation}", self._match
        )
        client.meta.events.unregister(f"before-call.{prefix}.{self.operation}", self._fail)

    def _match(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if all(params.get(k) == v for k, v in self.when.items()):
            context["fail_for"] = True

    def _fail(self, context: dict[str, Any], **_: Any) -> Any:
        if context.get("fail_for"):
            self.hits += 1
            return _error_response(400, self.code, f"injected {self.code}")
        return None


class LoseFirstAnswer:
    """The first ``operation`` call lands in moto, then its answer is lost (a read timeout):
    what a retry meets when a write succeeded but the caller never heard."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.lost = False

    def attach(self, client: Any) -> LoseFirstAnswer:
        prefix = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"after-call.{prefix}.{self.operation}", self._lose)
        return self

    def _lose(self, **_: Any) -> None:
        if not self.lost:
            self.lost = True
            raise ReadTimeoutError(endpoint_url="https://aws.invalid/")


def queue_with_dead_letters(
    sqs: Any, name: str, *, visibility_timeout: int, max_receives: int
) -> tuple[str, str, str]:
    """A queue that moves a message to ``<name>-dlq`` after ``max_receives`` receives, as the
    stack's redeploy queue does: (queue URL, queue ARN, dead-letter queue URL)."""
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": _queue_arn(sqs, dlq), "maxReceiveCount": str(max_receives)}
            ),
        },
    )["QueueUrl"]
    return url, _queue_arn(sqs, url), dlq


def _queue_arn(sqs: Any, url: str) -> str:
    answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(answer["Attributes"]["QueueArn"])


def sqs_lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source hands a function for ``messages`` (as received with
    ``AttributeNames=["All"]``)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                    "SentTimestamp": m["Attributes"]["SentTimestamp"],
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": m["Attributes"].get(
                        "ApproximateFirstReceiveTimestamp", "0"
                    ),
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class SnsPublishLimits:
    """Refuse a ``Publish`` as AWS does and moto does not: a message whose body and attributes
    (names, data types and values) pass 262,144 bytes of UTF-8 (moto counts characters of the
    body only), or a subject that is not ASCII, holds a line break or control character, or
    is not under 100 characters. Records the size of every publish that reached moto."""

    LIMIT = 262_144

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.refused: list[str] = []

    def attach(self, client: Any) -> SnsPublishLimits:
        client.meta.events.register("before-parameter-build.sns.Publish", self._inspect)
        client.meta.events.register("before-call.sns.Publish", self._refuse)
        return self

    @staticmethod
    def size(params: dict[str, Any]) -> int:
        total = len(str(params.get("Message", "")).encode("utf-8"))
        for name, value in (params.get("MessageAttributes") or {}).items():
            total += len(name.encode("utf-8")) + len(str(value["DataType"]).encode("utf-8"))
            total += len(str(value.get("StringValue", "")).encode("utf-8"))
        return total

    def _inspect(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        size = self.size(params)
        subject = params.get("Subject")
        problem = None
        if size > self.LIMIT:
            problem = f"Invalid parameter: Message too long ({size} bytes)"
        elif subject is not None and (
            not subject.isascii()
            or not subject.isprintable()
            or len(subject) >= 100
            or not subject[:1].strip()
        ):
            problem = f"Invalid parameter: Subject {subject!r}"
        if problem:
            context["sns_refused"] = problem
        else:
            self.sizes.append(size)

    def _refuse(self, context: dict[str, Any], **_: Any) -> Any:
        problem = context.get("sns_refused")
        if problem:
            self.refused.append(problem)
            return _error_response(400, "InvalidParameter", problem)
        return None


class CloudTrailHistory:
    """CloudTrail's ``LookupEvents``, which moto does not implement, answered at
    ``before-send`` (so botocore parses the answer as AWS's) from the records given, with the
    API reference's rules: at most one lookup attribute, ``MaxResults`` 1 to 50, events newest
    first, ``StartTime`` and ``EndTime`` inclusive, ``Events[].CloudTrailEvent`` the record as
    a JSON string, ``NextToken`` while more match. Each request's parameters are kept, as
    sent (``requests``).

    ``patched()`` attaches it to every CloudTrail client made while it is active, those the
    command line makes too."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, event_name: str, at: Any, **fields: Any) -> dict[str, Any]:
        """A Secrets Manager management event ``event_name`` at ``at`` (a UTC datetime)."""
        record = {
            "eventVersion": "1.09",
            "eventTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event_name,
            "awsRegion": "us-east-1",
            "eventID": f"event-{len(self.records)}",
            "readOnly": False,
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "eventCategory": "Management",
            **fields,
        }
        self.records.append(record)
        return record

    def attach(self, client: Any) -> CloudTrailHistory:
        client.meta.events.register_first("before-send.cloudtrail.LookupEvents", self._answer)
        return self

    def patched(self) -> Any:
        import botocore.session
        import pytest

        real = botocore.session.Session.create_client
        history = self

        def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
            client = real(self, *args, **kwargs)
            if client.meta.service_model.endpoint_prefix == "cloudtrail":
                history.attach(client)
            return client

        patch = pytest.MonkeyPatch()
        patch.setattr(botocore.session.Session, "create_client", create_client)
        return _Undo(patch)

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        url = request.url
        # botocore asks every before-send handler, and uses the first answer; moto's, asked
        # after this one, raises for an action it lacks unless the URL is none of AWS's.
        request.url = "https://lookup-events.answered.invalid/"
        body = json.loads(request.body or b"{}")
        with self._lock:
            self.requests.append(body)
        attributes = body.get("LookupAttributes") or []
        if len(attributes) > 1:
            return _json_response(
                url,
                400,
                {"__type": "InvalidLookupAttributesException", "message": "one attribute"},
            )
        size = int(body.get("MaxResults", 50))
        if not 1 <= size <= 50:
            return _json_response(
                url, 400, {"__type": "InvalidMaxResultsException", "message": "1-50"}
            )
        from datetime import UTC, datetime

        start, end = body.get("StartTime"), body.get("EndTime")
        if start is not None and end is not None and float(start) > float(end):
            return _json_response(
                url, 400, {"__type": "InvalidTimeRangeException", "message": "start > end"}
            )
        found = []
        for record in self.records:
            when = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
            if start is not None and when.timestamp() < float(start):
                continue
            if end is not None and when.timestamp() > float(end):  # both inclusive
                continue
            if attributes:
                key, value = attributes[0]["AttributeKey"], attributes[0]["AttributeValue"]
                assert key == "EventName", f"the fake answers EventName lookups only, not {key}"
                if record["eventName"] != value:
                    continue
            found.append((when, record))
        found.sort(key=lambda pair: pair[0], reverse=True)  # newest first
        offset = int(body.get("NextToken") or 0)
        page = found[offset : offset + size]
        answer: dict[str, Any] = {
            "Events": [
                {
                    "EventId": record["eventID"],
                    "EventName": record["eventName"],
                    "ReadOnly": "false",
                    "EventTime": when.astimezone(UTC).timestamp(),
                    "EventSource": record["eventSource"],
                    "Resources": [],
                    "CloudTrailEvent": json.dumps(record),
                }
                for when, record in page
            ]
        }
        if offset + size < len(found):
            answer["NextToken"] = str(offset + size)
        return _json_response(url, 200, answer)


class _Undo:
    def __init__(self, patch: Any) -> None:
        self._patch = patch

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: Any) -> None:
        self._patch.undo()


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def _json_response(url: str, status: int, data: dict[str, Any]) -> AWSResponse:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    return AWSResponse(url, status, headers, _Body(json.dumps(data).encode()))  # type: ignore[arg-type]


def versions_listed_as_aws_lists_them(monkeypatch: Any) -> None:
    """moto's ListSecretVersionIds stamps every version with the time of the call, names the
    secret's ARN by its name, lists deprecated versions (no staging label) unasked and never
    pages; AWS gives each version's CreatedDate and the ARN, leaves deprecated versions out
    unless ``IncludeDeprecated`` is true, and pages at ``MaxResults`` (1 to 100)."""
    from moto.secretsmanager.responses import SecretsManagerResponse

    def list_secret_version_ids(self: Any) -> str:
        secret = self.backend.secrets[self._get_param("SecretId", if_none="")]
        deprecated_too = bool(self._get_param("IncludeDeprecated", if_none=False))
        size = int(self._get_param("MaxResults", if_none=100))
        if not 1 <= size <= 100:
            raise ValueError(f"MaxResults {size}: AWS takes 1 to 100")
        versions = [
            {
                "VersionId": version_id,
                "VersionStages": version["version_stages"],
                "CreatedDate": version["createdate"],
            }
            for version_id, version in secret.versions.items()
            if deprecated_too or version["version_stages"]
        ]
        offset = int(self._get_param("NextToken", if_none="0") or 0)
        answer: dict[str, Any] = {
            "ARN": secret.arn,
            "Name": secret.name,
            "Versions": versions[offset : offset + size],
        }
        if offset + size < len(versions):
            answer["NextToken"] = str(offset + size)
        return json.dumps(answer)

    monkeypatch.setattr(SecretsManagerResponse, "list_secret_version_ids", list_secret_version_ids)


def backdate_secret_version(secret: str, version: str, when: Any) -> None:
    """Pretend ``version`` of ``secret`` was created at ``when`` (moto stamps 'now')."""
    from moto.secretsmanager.models import secretsmanager_backends

    from tests.conftest import ACCOUNT, REGION

    backend = secretsmanager_backends[ACCOUNT][REGION]
    backend.secrets[secret].versions[version]["createdate"] = int(when.timestamp())
