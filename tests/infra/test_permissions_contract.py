"""The permissions contract: every AWS call a deployed function makes is one its role allows.

The handlers process what the template's rules route to them inside moto, with the state table
and restore-on-access on (so every kind of call happens), while a hook records each operation
per function. Each recorded call must be among the actions the template grants that function
(restore granted as with RestoreOnAccess=true). Least privilege must still be enough.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients
from orchestration.events.routing import route
from tests.aws_fakes import sqs_lambda_event
from tests.conftest import SAMPLE_EVENTS
from tests.infra.test_metrics_contract import (
    RECONCILE,
    Containers,
    lose_an_event,
    scheduled_event,
)
from tests.integration.conftest import inbox, state_table  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def _granted(stack: dict[str, Any], function: str) -> set[str]:
    """Actions of the function's ``Policies`` statements (both sides of every Fn::If)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Effect" in node and "Action" in node:
                actions = node["Action"]
                found.update([actions] if isinstance(actions, str) else actions)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(stack["Resources"][function]["Properties"]["Policies"])
    return found


def test_every_call_the_functions_make_is_granted_to_them(
    stack: dict[str, Any],
    world: Any,
    clients: AwsClients,
    inbox: Any,  # noqa: F811
    state_table: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)
    monkeypatch.setenv("ROTOR_RESTORE_ON_ACCESS", "true")
    jobs = clients.sqs.create_queue(QueueName="rotor-redeploy")["QueueUrl"]
    monkeypatch.setenv("ROTOR_REDEPLOY_QUEUE_URL", jobs)
    calls: dict[str, set[str]] = defaultdict(set)
    current = {"function": ""}

    def record(model: Any, params: Any = None, **_: Any) -> None:
        prefix = model.service_model.endpoint_prefix
        action = f"{prefix}:{model.name}"
        if action == "dynamodb:TransactWriteItems":  # IAM authorises each action inside
            for item in (params or {}).get("TransactItems", []):
                calls[current["function"]].update(TRANSACT_ACTIONS[op] for op in item)
            return
        calls[current["function"]].add(BATCH_ACTIONS.get(action, action))

    recorded = (clients.ecs, clients.secretsmanager, clients.sns, clients.dynamodb, clients.sqs)
    for client in (*recorded, clients.cloudtrail):
        client.meta.events.register("before-call", record)
    containers = Containers(monkeypatch, clients)
    for path in SAMPLE_EVENTS:
        event = json.loads(path.read_text())
        for r in route(event):
            current["function"] = r.function
            containers.invoke(r.handler, copy.deepcopy(event))
    # A rotation whose events were lost: the scheduled reconciler heals it.
    current["function"] = "(the test)"
    lose_an_event(clients, monkeypatch)
    calls.pop("(the test)", None)
    current["function"] = "ReconcileFunction"
    healed = containers.invoke(RECONCILE, scheduled_event())
    assert healed["healed"]
    # The redeploy jobs the rotation function and the reconciler queued, as the SQS event
    # source hands them over (its own receive and delete are the worker role's too).
    current["function"] = "WorkerFunction"
    _run_queued_jobs(clients, jobs, containers)

    assert set(calls) == {
        "RotationFunction",
        "AlarmsFunction",
        "TrackerFunction",
        "WorkerFunction",
        "ReconcileFunction",
    }
    assert {"cloudtrail:LookupEvents", "sqs:SendMessage"} <= calls["ReconcileFunction"]
    assert "secretsmanager:RestoreSecret" in calls["AlarmsFunction"]  # the path was taken
    assert "sqs:SendMessage" in calls["RotationFunction"]
    assert "ecs:UpdateService" in calls["WorkerFunction"]
    assert {c for c in calls["RotationFunction"] if c.startswith("dynamodb:")}
    for function, made in calls.items():
        assert made - _granted(stack, function) == set(), function
    # The worker describes the secret right before its ledger claim (the version current now,
    # not the one planned): granted explicitly, whether or not this run's code made the call.
    assert "secretsmanager:DescribeSecret" in _granted(stack, "WorkerFunction")
    # No function may call what it does not need: only the worker redeploys.
    for function in ("AlarmsFunction", "RotationFunction", "TrackerFunction", "ReconcileFunction"):
        assert "ecs:UpdateService" not in _granted(stack, function), function


def _run_queued_jobs(clients: AwsClients, jobs: str, containers: Containers) -> None:
    """The worker on every job queued, as the SQS event source hands them over."""
    arn = clients.sqs.get_queue_attributes(QueueUrl=jobs, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    while messages := clients.sqs.receive_message(
        QueueUrl=jobs, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", []):
        containers.invoke(
            "handlers.worker.lambda_handler", sqs_lambda_event(messages, arn, "us-east-1")
        )
        for m in messages:
            clients.sqs.delete_message(QueueUrl=jobs, ReceiptHandle=m["ReceiptHandle"])


#: The actions of a TransactWriteItems, as IAM authorises them.
TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}

#: Batch operations IAM authorises under the single action.
BATCH_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def test_the_calls_iam_allows_only_by_tag_are_made_only_on_tagged_resources(
    world: Any,
    clients: AwsClients,
    inbox: Any,  # noqa: F811
    state_table: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OptIn=true the worker's role allows UpdateService only on services tagged
    rotor:redeploy=true, and with RestoreOnAccess=false the alarms role allows RestoreSecret only
    on secrets tagged rotor:restore-on-access=true (both case-insensitively): the code must never
    make one of those calls on anything else, or it fails with AccessDenied in AWS."""
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)
    monkeypatch.setenv("ROTOR_OPT_IN", "true")
    monkeypatch.setenv("ROTOR_RESTORE_ON_ACCESS", "false")
    jobs = clients.sqs.create_queue(QueueName="rotor-redeploy")["QueueUrl"]
    monkeypatch.setenv("ROTOR_REDEPLOY_QUEUE_URL", jobs)
    # Two readers of prod/db opt in (one tag value in another case), the others do not; the
    # secret scheduled for deletion (the world has one) is tagged for restore.
    for service, value in (("api", "true"), ("worker", "True")):
        (described,) = clients.ecs.describe_services(cluster="prod", services=[service])["services"]
        clients.ecs.tag_resource(
            resourceArn=described["serviceArn"], tags=[{"key": "rotor:redeploy", "value": value}]
        )
    pending = [
        s["ARN"]
        for s in clients.secretsmanager.list_secrets(IncludePlannedDeletion=True)["SecretList"]
        if "DeletedDate" in s
    ]
    assert pending
    for arn in pending:
        clients.secretsmanager.tag_resource(
            SecretId=arn, Tags=[{"Key": "rotor:restore-on-access", "Value": "true"}]
        )
    updates: list[dict[str, Any]] = []
    restores: list[str] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "UpdateService":
            updates.append(
                {"cluster": params.get("cluster", "default"), "service": params["service"]}
            )
        elif model.name == "RestoreSecret":
            restores.append(params["SecretId"])

    for client in (clients.ecs, clients.secretsmanager):
        client.meta.events.register("before-parameter-build", record)
    containers = Containers(monkeypatch, clients)
    for path in SAMPLE_EVENTS:
        event = json.loads(path.read_text())
        for r in route(event):
            containers.invoke(r.handler, copy.deepcopy(event))
    _run_queued_jobs(clients, jobs, containers)

    assert updates and restores  # both paths were taken
    for update in updates:
        (service,) = clients.ecs.describe_services(
            cluster=update["cluster"], services=[update["service"]], include=["TAGS"]
        )["services"]
        tags = {t["key"]: t["value"] for t in service.get("tags", [])}
        assert tags.get("rotor:redeploy", "").lower() == "true", update
    for secret in restores:
        tags = {
            t["Key"]: t["Value"]
            for t in clients.secretsmanager.describe_secret(SecretId=secret).get("Tags", [])
        }
        assert tags.get("rotor:restore-on-access", "").lower() == "true", secret


def _held_to_requested_regions(stack: dict[str, Any], function: str, action: str) -> bool:
    """Some statement of the function grants ``action`` on any region's resources ("*", or an
    ARN with a wildcard region): only such a statement allows a call in another region. Each
    one that does holds the request's region (aws:RequestedRegion) to the stack's ActRegions."""
    found = False
    for statement in _statements(stack["Resources"][function]["Properties"]["Policies"]):
        actions = statement["Action"]
        if action not in ([actions] if isinstance(actions, str) else actions):
            continue
        resource = statement["Resource"]
        text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
        text = re.sub(r"\$\{[^}]*\}", "X", text)  # ${AWS::Partition} has colons of its own
        if text == "*" or text.split(":")[3:4] == ["*"]:
            held = statement.get("Condition", {}).get("StringEquals", {})
            if "aws:RequestedRegion" not in held or "ActRegions" not in json.dumps(held):
                return False
            found = True
    return found


def _statements(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            return [node]
        return [s for value in node.values() for s in _statements(value)]
    if isinstance(node, list):
        return [s for value in node for s in _statements(value)]
    return []


def test_the_calls_in_a_replicas_region_are_ones_the_roles_allow_there(
    stack: dict[str, Any],
    clients: AwsClients,
    inbox: Any,  # noqa: F811
    state_table: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ActRegions (ROTOR_REGIONS), the rotation function reads ECS in a replica's region
    and the worker describes the replica there and redeploys its consumer: each such call is
    granted by a statement that covers other regions (held by aws:RequestedRegion)."""
    from tests.integration.workers import replica_with_a_consumer

    replica_region = "eu-west-1"
    monkeypatch.setenv("ROTOR_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("ROTOR_STATE_TABLE", state_table)
    monkeypatch.setenv("ROTOR_REGIONS", replica_region)
    jobs = clients.sqs.create_queue(QueueName="rotor-redeploy")["QueueUrl"]
    monkeypatch.setenv("ROTOR_REDEPLOY_QUEUE_URL", jobs)
    primary = replica_with_a_consumer(clients, replica_region)
    calls: set[tuple[str, str, str]] = set()
    current = {"function": ""}

    def record(model: Any, context: dict[str, Any], **_: Any) -> None:
        action = f"{model.service_model.endpoint_prefix}:{model.name}"
        region = context["client_region"]
        calls.add((current["function"], BATCH_ACTIONS.get(action, action), region))

    # Every client made from the session from now on (another region's), and those made already.
    clients.session.events.register("before-call", record)
    for client in (clients.ecs, clients.secretsmanager, clients.sns, clients.dynamodb, clients.sqs):
        client.meta.events.register("before-call", record)
    containers = Containers(monkeypatch, clients)
    event = json.loads((SAMPLE_EVENTS[0].parent / "rotation-succeeded.json").read_text())
    event["detail"]["additionalEventData"]["SecretId"] = primary
    for r in route(event):
        current["function"] = r.function
        containers.invoke(r.handler, event)
    current["function"] = "WorkerFunction"
    _run_queued_jobs(clients, jobs, containers)

    elsewhere = {(f, a) for f, a, region in calls if region == replica_region}
    assert ("RotationFunction", "ecs:DescribeServices") in elsewhere
    assert ("WorkerFunction", "secretsmanager:DescribeSecret") in elsewhere
    assert ("WorkerFunction", "ecs:UpdateService") in elsewhere  # the replica's consumer
    for function, action in elsewhere:
        assert action in _granted(stack, function), (function, action)
        assert _held_to_requested_regions(stack, function, action), (function, action)
    assert {region for _, _, region in calls} == {"us-east-1", replica_region}
