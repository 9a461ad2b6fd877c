"""Rollout tracking: the state table records each rotation and each consumer's status; the
tracker follows rotor's own deployments (ECS Deployment State Change) to their end."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from orchestration.cli.main import main
from orchestration.fanout.queue import DEFER_SECONDS
from tests.conftest import load_event
from tests.integration.conftest import MAX_RECEIVES, iso, rotation_event
from tests.integration.test_handler_rotation import emf_lines, emf_values
from tests.integration.workers import FakeLambdaContext, drain, stale_world

pytestmark = pytest.mark.integration


def deployment_event(service_arn: str, deployment_id: str, *, failed: bool = False):
    name = "ecs-deployment-failed.json" if failed else "ecs-deployment-completed.json"
    event = copy.deepcopy(load_event(name))
    now = datetime.now(UTC).replace(microsecond=0)
    event["time"] = iso(now)
    event["resources"] = [service_arn]
    event["detail"]["deploymentId"] = deployment_id
    event["detail"]["updatedAt"] = iso(now)
    return event


def rotation_item(clients, table: str, rotation_id: str) -> dict[str, Any]:
    """The rotation's item as DynamoDB holds it, statuses by service name."""
    from boto3.dynamodb.types import TypeDeserializer

    def plain(item: dict[str, Any]) -> dict[str, Any]:
        return {k: TypeDeserializer().deserialize(v) for k, v in item.items()}

    rotation = plain(
        clients.dynamodb.get_item(
            TableName=table, Key={"pk": {"S": f"rotation#{rotation_id}"}}, ConsistentRead=True
        )["Item"]
    )
    # Each consumer's status is an item of its own (a rotation's item stays small).
    statuses = [
        plain(item)
        for item in clients.dynamodb.scan(TableName=table)["Items"]
        if item["pk"]["S"].startswith(f"status#{rotation_id}#")
    ]
    rotation["by_name"] = {s["service"].rsplit("/", 1)[-1]: s["status"] for s in statuses}
    return rotation


def test_the_state_table_follows_a_rotation_from_planned_to_fresh_or_rolled_back(
    clients, ecs_world, redeploy_queue, queued_runtime, state_table, inbox, capsys
):
    db = stale_world(ecs_world, {"prod": 2})
    stack = queued_runtime(state_table=state_table, topic_arn=inbox.topic_arn)
    rotated_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    event = rotation_event(db, at=rotated_at)

    result = stack.rotation(event, FakeLambdaContext())
    (rotation_id,) = {json.loads(m["Body"])["rotation_id"] for m in redeploy_queue.receive()}
    redeploy_queue.sqs.purge_queue(QueueUrl=redeploy_queue.url)
    queued = rotation_item(clients, state_table, rotation_id)
    stack.rotation(event, FakeLambdaContext())  # the same rotation again: one item
    drain(redeploy_queue, stack.worker)
    deploying = rotation_item(clients, state_table, rotation_id)

    assert len(result["queued"]) == 2
    assert queued["secret"] == db
    assert queued["by_name"] == {
        "prod-stale-0": "queued",
        "prod-stale-1": "queued",
        "prod-fresh-0": "skipped",
    }
    assert deploying["by_name"] == {
        "prod-stale-0": "deploying",
        "prod-stale-1": "deploying",
        "prod-fresh-0": "skipped",
    }
    capsys.readouterr()

    # ECS reports the end of each deployment rotor started.
    ids = {name: ecs_world.primary("prod", name)["id"] for name in ("prod-stale-0", "prod-stale-1")}
    done_event = deployment_event(f"{PROD}/prod-stale-0", ids["prod-stale-0"])
    done = stack.tracker(done_event, FakeLambdaContext())
    rolled_back = stack.tracker(
        deployment_event(f"{PROD}/prod-stale-1", ids["prod-stale-1"], failed=True),
        FakeLambdaContext(),
    )

    assert done["status"] == rolled_back["status"] == "processed"
    final = rotation_item(clients, state_table, rotation_id)
    assert final["by_name"] == {
        "prod-stale-0": "fresh",
        "prod-stale-1": "failed",
        "prod-fresh-0": "skipped",
    }
    records = emf_lines(capsys.readouterr().out)
    assert [sorted(emf_values(r)) for r in records] == [["TimeToFresh"], ["RedeployRolledBack"]]
    completed_at = datetime.fromisoformat(done_event["time"].replace("Z", "+00:00"))
    assert emf_values(records[0])["TimeToFresh"] == (completed_at - rotated_at).total_seconds()
    assert records[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
        {"Name": "TimeToFresh", "Unit": "Seconds"}
    ]
    (envelope,) = [e for e in inbox.drain() if "rolled back" in e["Subject"]]
    assert envelope["Subject"] == "rotor: redeploy of prod-stale-1 rolled back"
    assert "circuit breaker" in envelope["Message"]
    assert db in envelope["Message"]  # the secret, as the worker recorded it
    assert envelope["MessageAttributes"]["secret"]["Value"] == db


PROD = "arn:aws:ecs:us-east-1:123456789012:service/prod"


def test_deployments_rotor_did_not_start_are_not_tracked(
    clients, ecs_world, queued_runtime, redeploy_queue, state_table, capsys
):
    stale_world(ecs_world, {"prod": 1}, fresh=0)
    stack = queued_runtime(state_table=state_table)
    someone_elses = ecs_world.primary("prod", "prod-stale-0")["id"]

    result = stack.tracker(
        deployment_event(f"{PROD}/prod-stale-0", someone_elses), FakeLambdaContext()
    )

    assert result["status"] == "processed"
    assert result["notes"] == [f"deployment {someone_elses} was not started by rotor"]
    assert emf_lines(capsys.readouterr().out) == []
    scan = clients.dynamodb.scan(TableName=state_table)["Items"]
    assert scan == []


def test_the_end_of_a_deployment_frees_its_place_under_the_cluster_cap(
    clients, ecs_world, queued_runtime, redeploy_queue, state_table
):
    db = stale_world(ecs_world, {"prod": 2}, fresh=0)
    stack = queued_runtime(state_table=state_table, max_rollouts_per_cluster=1)
    stack.rotation(rotation_event(db), FakeLambdaContext())

    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        messages = redeploy_queue.receive()
        answer = stack.worker(redeploy_queue.sqs_event(messages), FakeLambdaContext())
        redeploy_queue.delete(messages, {f["itemIdentifier"] for f in answer["batchItemFailures"]})
        (first,) = ecs_world.updates_reached_moto
        # The other waits for the cluster: not a failure, but the job sent again, delayed.
        assert answer["batchItemFailures"] == []
        assert redeploy_queue.receive() == []
        assert redeploy_queue.counts() == 1

        # Waiting longer than maxReceiveCount failures would allow: never dead-lettered.
        for _ in range(MAX_RECEIVES + 1):
            clock.shift(timedelta(seconds=DEFER_SECONDS))
            (waiting,) = redeploy_queue.receive()
            assert waiting["Attributes"]["ApproximateReceiveCount"] == "1"
            answer = stack.worker(redeploy_queue.sqs_event([waiting]), FakeLambdaContext())
            assert answer["batchItemFailures"] == []
            redeploy_queue.delete([waiting], set())
        assert redeploy_queue.counts(redeploy_queue.dlq_url) == 0
        assert ecs_world.updates_reached_moto == Counter([first])

        stack.tracker(
            deployment_event(f"{PROD}/{first}", ecs_world.primary("prod", first)["id"]),
            FakeLambdaContext(),
        )
        clock.shift(timedelta(seconds=DEFER_SECONDS))
        drain(redeploy_queue, stack.worker)

    assert ecs_world.updates_reached_moto == Counter(["prod-stale-0", "prod-stale-1"])
    assert redeploy_queue.counts() == redeploy_queue.counts(redeploy_queue.dlq_url) == 0


def test_rotor_status_shows_each_rotation_and_service(
    clients, ecs_world, queued_runtime, redeploy_queue, state_table, monkeypatch, capsys
):
    db = stale_world(ecs_world, {"prod": 1})
    stack = queued_runtime(state_table=state_table)
    stack.rotation(rotation_event(db), FakeLambdaContext())
    drain(redeploy_queue, stack.worker)
    capsys.readouterr()
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)

    text_status = main(["status", "--region", "us-east-1", "--secret", "prod/db"])
    text = capsys.readouterr().out
    json_status = main(["status", "--region", "us-east-1", "--since", "1h", "--json"])
    data = json.loads(capsys.readouterr().out)
    other = main(["status", "--region", "us-east-1", "--secret", "prod/other", "--json"])
    nothing = json.loads(capsys.readouterr().out)

    assert text_status == json_status == other == 0
    assert text.splitlines()[0].startswith("1 rotation(s) of prod/db since ")
    assert "prod/prod-stale-0  deploying" in text
    assert "prod/prod-fresh-0  skipped" in text
    (rotation,) = data["rotations"]
    assert rotation["secret"] == db
    assert rotation["counts"]["deploying"] == 1
    assert rotation["counts"]["skipped"] == 1
    assert nothing["rotations"] == []


def test_rotor_status_without_a_state_table_says_what_to_set(capsys):
    status = main(["status", "--region", "us-east-1"])

    assert status == 2
    assert "set ROTOR_STATE_TABLE" in capsys.readouterr().err
