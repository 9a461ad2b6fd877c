"""``rotor demo``: start the embedded world, replay the sample events, show what happened.

Everything runs in-process against moto: the same classification, discovery, freshness rule,
UpdateService calls and SNS notifications as in Lambda. Notifications are read back from an SQS
queue subscribed to the topic, as an operator's e-mail would receive them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.cli.world import EVENTS_DIR, WORLD_FILE, load_world, seed_world
from orchestration.ecs.shapes import primary_created_at
from orchestration.errors import RotorError
from orchestration.events.classification import classify, parse_event_text
from orchestration.events.routing import route, unrouted_note
from orchestration.outcome import EventOutcome
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from orchestration.times import iso_or_none


@dataclass(frozen=True)
class Step:
    file: str
    caption: str
    repeat: int = 1


STORY = (
    Step("secret-label-updated-awscurrent.json", "prod/db rotated: the native label event"),
    Step("rotation-succeeded.json", "the same rotation again, via CloudTrail (RotationSucceeded)"),
    Step("rotation-succeeded-api-call-detail-type.json", "prod/api-signer rotated"),
    Step("put-secret-value-awspending.json", "a rotation in progress (AWSPENDING): no action"),
    Step("put-secret-value-awscurrent.json", "prod/db-admin changed by hand (PutSecretValue)"),
    Step("rotation-failed.json", "a rotation that failed"),
    Step("delete-secret-recovery-window.json", "DeleteSecret of prod/legacy-token, still in use"),
    Step(
        "get-secret-value-marked-for-deletion.json",
        "an ECS task reads prod/legacy-token, now scheduled for deletion: a storm of 200 reads",
        repeat=200,
    ),
    Step("get-secret-value-marked-for-deletion-by-name.json", "a person reads it by name"),
    Step("get-secret-value-success.json", "an ordinary read: no action"),
)


class EmbeddedWorld:
    """Context manager: an in-process moto account seeded from a world file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or WORLD_FILE
        self._mock: Any = None

    def __enter__(self) -> AwsClients:
        try:
            from moto import mock_aws
        except ImportError:  # pragma: no cover - depends on the install
            raise RotorError("the embedded world needs moto: pip install 'rotor[demo]'") from None
        world = load_world(self.path)
        self._mock = mock_aws()
        self._mock.start()
        # The world's own clients: no rate limiting needed against an in-process moto.
        clients = AwsClients(region=world["region"])
        try:
            seed_world(clients, world)
        except Exception:
            self._mock.stop()
            raise
        return clients

    def __exit__(self, *exc: object) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock = None


def run_demo(events_dir: Path | None, out: TextIO) -> int:
    events_dir = events_dir or EVENTS_DIR
    if not events_dir.is_dir():
        raise RotorError(f"no sample events at {events_dir}")
    with EmbeddedWorld(events_dir / "world.json") as clients:
        topic_arn, queue_url = _topic_with_inbox(clients)
        settings = Settings(topic_arn=topic_arn)
        runtime = Runtime.build(clients, settings, retry=RetryPolicy())
        before = _deployments(clients)
        print("rotor demo: an embedded AWS account (moto, in-process), us-east-1", file=out)
        print(f"  world: {events_dir / 'world.json'}", file=out)
        print(f"  {len(before)} ECS services; notifications go to SNS {topic_arn}\n", file=out)
        totals = {"events": 0, "redeployed": 0, "failed": 0}
        for number, step in enumerate(STORY, 1):
            path = events_dir / step.file
            raw = parse_event_text(path.read_bytes())
            event = classify(raw)
            routes = route(raw)  # the deployed rules decide whether a function runs at all
            outcomes = [
                _process(event, runtime) if routes else EventOutcome(event, notes=[unrouted_note()])
                for _ in range(step.repeat)
            ]
            totals["events"] += step.repeat
            print(f"[{number}] {step.caption}", file=out)
            for r in routes:
                print(f"    route: {r.describe()}", file=out)
            _show(path, outcomes, out)
            for outcome in outcomes:
                totals["redeployed"] += len(outcome.redeployed)
                totals["failed"] += len(outcome.failed)
        after = _deployments(clients)
        print("Deployments (PRIMARY createdAt), before -> after:", file=out)
        for name in sorted(before):
            changed = "  <- redeployed" if after[name] != before[name] else ""
            print(f"  {name:22} {before[name]} -> {after[name]}{changed}", file=out)
        messages = _drain(clients, queue_url)
        print(f"\nNotifications received from SNS ({len(messages)}):", file=out)
        for message in messages:
            print(f"\n--- {message['Subject']}", file=out)
            print(message["Message"].rstrip(), file=out)
        redeployed_services = sum(1 for n in before if after[n] != before[n])
        print(
            f"\nSummary: {totals['events']} events replayed, {totals['redeployed']} redeploys "
            f"({redeployed_services} services, each once), {len(messages)} notifications, "
            f"{totals['failed']} failures.",
            file=out,
        )
    return 0 if totals["failed"] == 0 else 1


def _process(event: Any, runtime: Runtime) -> EventOutcome:
    from orchestration.dispatch import process

    return process(event, runtime)


def _show(path: Path, outcomes: list[EventOutcome], out: TextIO) -> None:
    first = outcomes[0]
    c = first.classification
    print(f"    {path.name}: {c.kind.value} - {c.reason}", file=out)
    if first.secret or c.secret:
        print(f"    secret: {first.secret or c.secret}", file=out)
    for arn in first.redeployed:
        print(f"    redeployed  {arn.split(':service/', 1)[-1]}", file=out)
    for item in first.skipped:
        print(f"    skipped     {item.service.split(':service/', 1)[-1]}: {item.reason}", file=out)
    for manual in first.manual:
        print(
            f"    by hand     {manual.service.split(':service/', 1)[-1]}: {manual.reason}", file=out
        )
    for failure in first.failed:
        print(f"    FAILED      {failure.subject}: {failure.error}", file=out)
    for note in first.notes:
        print(f"    note: {note}", file=out)
    sent = sum(len(o.notifications) for o in outcomes)
    suppressed = sum(o.notifications_suppressed for o in outcomes)
    counted = {k: sum(o.metrics.get(k, 0) for o in outcomes) for o in outcomes for k in o.metrics}
    if sent or suppressed:
        print(f"    notifications: {sent} sent, {suppressed} suppressed by the window", file=out)
    if counted:
        print(
            "    metrics: " + ", ".join(f"{k}={v:g}" for k, v in sorted(counted.items())), file=out
        )
    print(file=out)


def _topic_with_inbox(clients: AwsClients) -> tuple[str, str]:
    sqs = clients.session.client("sqs", region_name=clients.region)
    topic_arn = clients.sns.create_topic(Name="rotor-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="rotor-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    clients.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


def _drain(clients: AwsClients, queue_url: str) -> list[dict[str, Any]]:
    sqs = clients.session.client("sqs", region_name=clients.region)
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return messages
        messages.extend(json.loads(m["Body"]) for m in batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


def _deployments(clients: AwsClients) -> dict[str, str]:
    ecs = clients.ecs
    result = {}
    for cluster in ecs.list_clusters()["clusterArns"]:
        arns = ecs.list_services(cluster=cluster)["serviceArns"]
        for start in range(0, len(arns), 10):
            for service in ecs.describe_services(
                cluster=cluster, services=arns[start : start + 10]
            )["services"]:
                created = primary_created_at(service)
                name = f"{cluster.rsplit('/', 1)[-1]}/{service['serviceName']}"
                result[name] = iso_or_none(created) or "?"
    return result
