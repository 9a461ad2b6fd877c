"""``rotor replay --dry-run`` over the wire: it plans and prints, and writes nothing.

Every read-back goes to the moto server: ECS deployments, the SQS queue subscribed to the
topic, the secret's deletion date, the state table. The same replay without ``--dry-run``
changes each of them, so each assertion can fail.
"""

from __future__ import annotations

import boto3
import pytest

from orchestration.aws.clients import AwsClients
from orchestration.cli.main import main
from orchestration.cli.world import Inbox
from tests.conftest import REGION
from tests.integration.test_moto_server import (
    deployments,
    replay_over_the_wire,
    server_url,
    url,
)

__all__ = ["server_url", "url"]  # fixtures

pytestmark = [pytest.mark.integration, pytest.mark.server]

TABLE = "rotor-state"
LEGACY = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/legacy-token-Lg56Tk"


@pytest.fixture
def wired(url, monkeypatch):
    """A topic with an inbox, a state table and restore-on-access, all on the server."""
    clients = AwsClients(region=REGION, endpoint_url=url)
    inbox = Inbox.subscribe(clients, "rotor-dry-run")
    clients.dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("ROTOR_STATE_TABLE", TABLE)
    monkeypatch.setenv("ROTOR_RESTORE_ON_ACCESS", "true")
    return clients, inbox


def _state(clients: AwsClients) -> list[dict]:
    return clients.dynamodb.scan(TableName=TABLE)["Items"]


def _deleted_date(url: str):
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=url)
    return sm.describe_secret(SecretId=LEGACY).get("DeletedDate")


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "for-real"])
def test_replay_of_a_rotation(url, wired, capsys, dry_run):
    clients, inbox = wired
    before = deployments(url)
    flags = ["--dry-run"] if dry_run else []

    data = replay_over_the_wire(url, capsys, "events/rotation-succeeded.json", *flags)

    changed = {name for name in before if deployments(url)[name]["id"] != before[name]["id"]}
    # The plan is the same either way; a dry run says it would.
    redeployed = data["would_redeploy" if dry_run else "redeployed"]
    assert sorted(s.rsplit("/", 1)[-1] for s in redeployed) == ["api", "worker"]
    counted = data["would_metrics" if dry_run else "metrics"]
    assert counted["RedeploysStarted"] == 2
    if dry_run:
        assert data["dry_run"] is True
        assert not {"redeployed", "metrics", "notifications", "queued"} & set(data)
        would = {(c["operation"], c["target"].rsplit("/", 1)[-1]) for c in data["would_call"]}
        assert {("UpdateService", "api"), ("UpdateService", "worker")} <= would
        assert any(c["operation"] in ("PutItem", "UpdateItem") for c in data["would_call"])
        assert changed == set()
        assert _state(clients) == []
    else:
        assert "dry_run" not in data
        assert changed == {"prod/api", "prod/worker"}
        assert _state(clients) != []
    assert inbox.drain() == []  # a rotation notifies no one


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "for-real"])
def test_replay_of_a_read_of_a_secret_scheduled_for_deletion(url, wired, capsys, dry_run):
    clients, inbox = wired
    assert _deleted_date(url) is not None
    flags = ["--dry-run"] if dry_run else []

    event = "events/get-secret-value-marked-for-deletion.json"
    status = main(["replay", event, "--endpoint-url", url, "--region", REGION, *flags])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    if dry_run:
        assert "would notify: rotor: prod/legacy-token read while scheduled" in captured.out
        assert "would restore: " + LEGACY in captured.out
        assert "dry run: nothing was written, it would call:" in captured.out
        # Nothing was sent or counted: what would have been is labelled so.
        assert "would count: " in captured.out and "NotificationsSent=1" in captured.out
        assert "metrics:" not in captured.out and "notification:" not in captured.out
        assert "Publish " in captured.out and "RestoreSecret " + LEGACY in captured.out
        assert inbox.drain() == []
        assert _deleted_date(url) is not None
        assert _state(clients) == []
    else:
        assert len(inbox.drain()) == 1
        assert _deleted_date(url) is None
        assert _state(clients) != []


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "for-real"])
def test_replay_with_a_redeploy_queue(url, wired, capsys, monkeypatch, dry_run):
    """With ROTOR_REDEPLOY_QUEUE_URL the rotation enqueues jobs: a dry run sends none."""
    del wired  # the topic, table and settings it makes are what this replay runs against
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=url)
    queue_url = sqs.create_queue(QueueName="rotor-redeploy-jobs")["QueueUrl"]
    monkeypatch.setenv("ROTOR_REDEPLOY_QUEUE_URL", queue_url)
    flags = ["--dry-run"] if dry_run else []

    data = replay_over_the_wire(url, capsys, "events/rotation-succeeded.json", *flags)

    waiting = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    queued = data["would_queue" if dry_run else "queued"]
    assert sorted(s.rsplit("/", 1)[-1] for s in queued) == ["api", "worker"]
    if dry_run:
        assert {c["operation"] for c in data["would_call"]} >= {"SendMessageBatch"}
        assert waiting == "0"
    else:
        assert waiting == "2"
