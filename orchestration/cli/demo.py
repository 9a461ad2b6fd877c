"""``rotor demo``: start the embedded world, replay the sample events, show what happened.

Everything runs in-process against moto: the same classification, discovery, freshness rule,
UpdateService calls and SNS notifications as in Lambda. The story is told in the order of the
events' times, and the world's clock stands at each event's time while rotor handles it, so
every date the demo prints (deployments, deletion dates) belongs to the sample events' day,
whatever the machine's clock says. Notifications are read back from an SQS queue subscribed to
the topic, as an operator's e-mail would receive them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from orchestration import (
    HANDLER_KINDS,
    AwsClients,
    Classification,
    ConfigurationError,
    EventOutcome,
    InvalidEventError,
    RetryPolicy,
    Route,
    Runtime,
    Settings,
    classify,
    handle,
    iso,
    iso_or_none,
    parse_event_text,
    primary_created_at,
    route,
    unrouted_note,
)
from orchestration.cli import world as embedded
from orchestration.cli.show import print_outcome, service_name
from orchestration.cli.world import EmbeddedWorld, Inbox


@dataclass(frozen=True)
class Step:
    file: str
    caption: str
    repeat: int = 1


#: In the order of the events' times.
STORY = (
    Step(
        "put-secret-value-awspending.json", "a rotation of prod/db starts (AWSPENDING): no action"
    ),
    Step("secret-label-updated-awscurrent.json", "prod/db rotated: the native label event"),
    Step("rotation-succeeded.json", "the same rotation again, via CloudTrail (RotationSucceeded)"),
    Step("get-secret-value-success.json", "an ordinary read: no action"),
    Step("put-secret-value-awscurrent.json", "prod/db-admin changed by hand (PutSecretValue)"),
    Step("rotation-succeeded-api-call-detail-type.json", "prod/api-signer rotated"),
    Step("rotation-failed.json", "a rotation that failed"),
    Step("delete-secret-recovery-window.json", "DeleteSecret of prod/legacy-token, still in use"),
    Step(
        "get-secret-value-marked-for-deletion.json",
        "an ECS task reads prod/legacy-token, now scheduled for deletion: a storm of 200 reads",
        repeat=200,
    ),
    Step("get-secret-value-marked-for-deletion-by-name.json", "a person reads it by name"),
)


def run_demo(folder: Path | None, out: TextIO) -> int:
    events_dir = folder or embedded.events_dir()
    if not (events_dir / "world.json").is_file():
        raise ConfigurationError(f"no sample events and world.json at {events_dir}")
    story = [(step, *_load(events_dir / step.file)) for step in STORY]
    world = EmbeddedWorld(events_dir / "world.json", stay_at_seeding=True)
    with world as clients:
        inbox = Inbox.subscribe(clients, "rotor-notifications")
        settings = Settings(topic_arn=inbox.topic_arn)
        runtime = Runtime.build(clients, settings, retry=RetryPolicy())
        before = _deployments(clients)
        first, last = story[0][2].event_time, story[-1][2].event_time
        print(f"rotor demo: an embedded AWS account (moto, in-process), {clients.region}", file=out)
        print(f"  world: {events_dir / 'world.json'}", file=out)
        print(f"  {len(before)} ECS services; notifications go to SNS {inbox.topic_arn}", file=out)
        print(f"  the world's clock follows the events, {iso(first)} to {iso(last)}\n", file=out)
        redeploys: Counter[str] = Counter()
        events = failures = 0
        for number, (step, raw, event) in enumerate(story, 1):
            if event.event_time > datetime.now(UTC):
                world.move_clock_to(event.event_time)
            routes = route(raw)  # the deployed rules decide whether a function runs at all
            outcomes = [_run(raw, event, routes, runtime, world) for _ in range(step.repeat)]
            events += step.repeat
            times = f" ({step.repeat} times)" if step.repeat > 1 else ""
            print_outcome(
                f"[{number}] {iso(event.event_time)}  {step.caption}\n    {step.file}{times}",
                outcomes,
                out,
                routes=routes,
            )
            print(file=out)
            for outcome in outcomes:
                redeploys.update(outcome.redeployed)
                failures += len(outcome.failed)
        after = _deployments(clients)
        print("Deployments (PRIMARY createdAt), before -> after:", file=out)
        for name in sorted(before):
            changed = "  <- redeployed" if after[name] != before[name] else ""
            print(f"  {name:22} {before[name]} -> {after[name]}{changed}", file=out)
        messages = inbox.drain()
        print(f"\nNotifications received from SNS ({len(messages)}):", file=out)
        for message in messages:
            print(f"\n--- {message['Subject']}", file=out)
            print(message["Message"].rstrip(), file=out)
        print(
            f"\nSummary: {events} events replayed, {sum(redeploys.values())} redeploys "
            f"({_how_often(redeploys)}), {len(messages)} notifications, {failures} failures.",
            file=out,
        )
    return 0 if failures == 0 else 1


def _run(
    raw: Any, event: Classification, routes: list[Route], runtime: Runtime, world: EmbeddedWorld
) -> EventOutcome:
    """What the routed function does with the event, as ``rotor replay`` runs it (the trust
    check, the function's kinds, the use case), in the world's account."""
    if not routes:
        return EventOutcome(event, notes=[unrouted_note()])
    handled = handle(
        raw,
        HANDLER_KINDS.get(routes[0].handler, frozenset()),
        lambda: runtime,
        lambda: world.account,
    )
    return handled.as_outcome() or EventOutcome(event)


def _load(path: Path) -> tuple[Any, Classification]:
    try:
        raw = parse_event_text(path.read_bytes())
        return raw, classify(raw)
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror or exc}") from None
    except InvalidEventError as exc:
        raise InvalidEventError(f"{path}: {exc}") from None


def _how_often(redeploys: Counter[str]) -> str:
    """'4 services, each once', or which services were redeployed more than once."""
    services = len(redeploys)
    again = sorted((service_name(arn), count) for arn, count in redeploys.items() if count > 1)
    if not again:
        return f"{services} services, each once" if services else "no service"
    return f"{services} services; more than once: " + ", ".join(
        f"{name} {count} times" for name, count in again
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
