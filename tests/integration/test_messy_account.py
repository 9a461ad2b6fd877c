"""Nothing in the account stops the scan (issue 10, section 1), against moto with AWS's refusals.

Services on the CODE_DEPLOY and EXTERNAL deployment controllers (``tests.aws_fakes`` makes moto
refuse their forced deployments, as AWS does), EXTERNAL services without a task definition,
clusters in ``ROTOR_CLUSTERS`` that do not exist or cannot be read, a cluster named twice, and
services that vanish mid-scan. Results are read back from moto, the calls rotor sent, and the
messages an SQS queue subscribed to the topic received.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.dispatch import process
from orchestration.events.classification import classify
from orchestration.outcome import EventOutcome
from orchestration.runtime import Runtime
from orchestration.secrets.references import SecretIdentity
from orchestration.settings import Settings
from tests.aws_fakes import ApiCalls, FailFor
from tests.conftest import make_runtime
from tests.integration.conftest import FRESH, EcsWorld, Inbox, changed, rotation_event

pytestmark = pytest.mark.integration


def run(event: dict[str, Any], runtime: Runtime) -> EventOutcome:
    return process(classify(event), runtime)


def names(arns: list[str]) -> set[str]:
    return {arn.rsplit("/", 1)[-1] for arn in arns}


def _controllers_world(ecs_world: EcsWorld) -> tuple[str, dict[str, str]]:
    """prod: a rolling service, a blue/green one and an external one, all on prod/db."""
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    tds = {
        "rolling": ecs_world.task_definition(secrets=[db], family="rolling"),
        "bluegreen": ecs_world.task_definition(secrets=[f"{db}:password::"], family="bluegreen"),
        "external-old": ecs_world.task_definition(secrets=["/plain/parameter"], family="ext"),
        "external-new": ecs_world.task_definition(secrets=[db], family="ext"),
    }
    ecs_world.service("prod", "rolling", tds["rolling"])
    ecs_world.service(
        "prod",
        "bluegreen",
        tds["bluegreen"],
        controller="CODE_DEPLOY",
        load_balancers=[("app", 8080)],
    )
    # EXTERNAL: no taskDefinition on the service; two task sets, only one references prod/db.
    ecs_world.service("prod", "external", "", controller="EXTERNAL")
    ecs_world.task_set("prod", "external", tds["external-old"])
    ecs_world.task_set("prod", "external", tds["external-new"])
    # moto copies the primary task set's task definition onto the service; AWS shows none.
    ecs_world.backend.services["prod:external"].task_definition = None
    return db, tds


def test_the_fakes_refuse_forced_deployments_where_aws_does(
    ecs_world: EcsWorld, clients: AwsClients
) -> None:
    _controllers_world(ecs_world)
    for service, words in (("bluegreen", "CODE_DEPLOY"), ("external", "EXTERNAL")):
        with pytest.raises(ClientError, match=words) as caught:
            clients.ecs.update_service(cluster="prod", service=service, forceNewDeployment=True)
        assert caught.value.response["Error"]["Code"] == "InvalidParameterException"
    clients.ecs.update_service(cluster="prod", service="rolling", forceNewDeployment=True)


def test_external_services_are_scanned_through_their_task_sets(
    ecs_world: EcsWorld, ecs_calls: ApiCalls, runtime: Runtime
) -> None:
    db, tds = _controllers_world(ecs_world)

    inventory = runtime.discovery().scan()

    assert inventory.failures == [] and inventory.skipped == []
    scanned = {(s.name, td.arn) for s, td in inventory.services}
    assert ("external", tds["external-old"]) in scanned
    assert ("external", tds["external-new"]) in scanned
    consumers = {
        c.service.name: c for c in inventory.consumers_of(SecretIdentity.from_full_arn(db))
    }
    assert set(consumers) == {"rolling", "bluegreen", "external"}
    external = consumers["external"]
    assert external.service.task_definition is None
    assert [td.arn for td in external.task_definitions] == [tds["external-new"]]
    assert external.service.controller == "EXTERNAL"
    assert consumers["bluegreen"].service.controller == "CODE_DEPLOY"
    # Each task definition described once, the task sets' included.
    described = sorted(p["taskDefinition"] for p in ecs_calls.of("DescribeTaskDefinition"))
    assert described == sorted(tds.values())


def test_blue_green_and_external_consumers_are_reported_with_what_to_run_never_forced(
    ecs_world: EcsWorld,
    ecs_calls: ApiCalls,
    clients: AwsClients,
    retry: RetryPolicy,
    inbox: Inbox,
) -> None:
    db, tds = _controllers_world(ecs_world)
    runtime = make_runtime(clients, retry, Settings(topic_arn=inbox.topic_arn))
    before = ecs_world.primaries([("prod", "rolling")])
    event = rotation_event(db)

    outcome = run(event, runtime)

    assert names(outcome.redeployed) == {"rolling"}
    assert outcome.failed == []
    assert outcome.ok
    assert {names([m.service]).pop(): m.controller for m in outcome.manual} == {
        "bluegreen": "CODE_DEPLOY",
        "external": "EXTERNAL",
    }
    assert outcome.metrics["ManualRedeploysNeeded"] == 2
    # Never sent: AWS refuses it (and the fake would have answered InvalidParameterException).
    assert names([p["service"] for p in ecs_calls.of("UpdateService")]) == {"rolling"}
    assert changed(before, ecs_world.primaries([("prod", "rolling")])) == {"prod/rolling"}
    # The JSON output says the same.
    data = outcome.to_dict()
    assert {names([m["service"]]).pop() for m in data["manual"]} == {"bluegreen", "external"}

    (message,) = inbox.drain()
    assert message["MessageAttributes"]["kind"]["Value"] == "manual_redeploy"
    body = message["Message"]
    assert "prod/bluegreen (CODE_DEPLOY controller)" in body
    assert "prod/external (EXTERNAL controller)" in body
    # CODE_DEPLOY: a CodeDeploy deployment of the task definition the service runs, with an
    # AppSpec naming the load balancer's container and port.
    codedeploy = next(m for m in outcome.manual if m.controller == "CODE_DEPLOY").command
    assert codedeploy.startswith("aws deploy create-deployment --region us-east-1")
    assert codedeploy in body
    revision = json.loads(codedeploy.split("--revision ", 1)[1].strip("'"))
    assert revision["revisionType"] == "AppSpecContent"
    appspec = json.loads(revision["appSpecContent"]["content"])
    # An AppSpec CodeDeploy accepts for ECS: version 0.0, one target of type AWS::ECS::Service.
    assert appspec["version"] == 0.0
    assert appspec["Resources"][0]["TargetService"]["Type"] == "AWS::ECS::Service"
    properties = appspec["Resources"][0]["TargetService"]["Properties"]
    assert properties == {
        "TaskDefinition": tds["bluegreen"],
        "LoadBalancerInfo": {"ContainerName": "app", "ContainerPort": 8080},
    }
    external = next(m for m in outcome.manual if m.controller == "EXTERNAL").command
    assert "aws ecs create-task-set --region us-east-1 --cluster prod --service external" in (
        external
    )
    assert tds["external-new"] in external
    # ... and then the controller makes the new task set primary: the same service's.
    assert external.endswith(
        " aws ecs update-service-primary-task-set --region us-east-1 --cluster prod"
        " --service external --primary-task-set <the new task set's id>"
    )

    # A second delivery of the same rotation: nothing redeployed, no second notification.
    again = run(event, runtime)
    assert again.redeployed == [] and again.failed == []
    assert len(again.manual) == 2
    assert again.notifications_suppressed == 1
    assert inbox.drain() == []


def test_a_fresh_blue_green_service_needs_nothing(
    ecs_world: EcsWorld, ecs_calls: ApiCalls, runtime: Runtime
) -> None:
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.service("prod", "external", "", controller="EXTERNAL")
    ecs_world.task_set("prod", "external", td, created_at=FRESH)

    outcome = run(rotation_event(db), runtime)

    assert outcome.manual == [] and outcome.redeployed == [] and outcome.failed == []
    assert [s.reason.split(":")[0] for s in outcome.skipped] == ["already fresh"]
    assert ecs_calls.counts["UpdateService"] == 0


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("ClusterNotFoundException", False),
        ("AccessDeniedException", False),
        ("ThrottlingException", True),
    ],
)
def test_an_unreadable_cluster_is_reported_and_the_others_go_on(
    ecs_world: EcsWorld,
    ecs_calls: ApiCalls,
    clients: AwsClients,
    retry: RetryPolicy,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    retryable: bool,
) -> None:
    db = ecs_world.secret("prod/db")
    td = ecs_world.task_definition(secrets=[db])
    for cluster in ("prod", "batch"):
        ecs_world.cluster(cluster)
        ecs_world.service(cluster, "api", td)
    if code == "ClusterNotFoundException":
        unreadable = "ghost"  # in ROTOR_CLUSTERS, but no such cluster: moto refuses it itself
    else:
        unreadable = "batch"
        FailFor("ListServices", code, cluster="batch").attach(clients.ecs)
    monkeypatch.setenv("ROTOR_CLUSTERS", f"prod,{unreadable}")
    runtime = make_runtime(
        clients, RetryPolicy(max_attempts=2, sleep=retry.sleep), Settings.from_env()
    )
    before = ecs_world.primaries([("prod", "api"), ("batch", "api")])

    outcome = run(rotation_event(db), runtime)

    assert [(f.scope, f.subject, f.retryable) for f in outcome.failed] == [
        ("cluster", unreadable, retryable)
    ]
    assert code in outcome.failed[0].error
    assert names(outcome.redeployed) == {"api"}
    assert changed(before, ecs_world.primaries([("prod", "api"), ("batch", "api")])) == {"prod/api"}
    assert outcome.metrics["DiscoveryFailures"] == 1
    assert any(note.startswith(f"could not read cluster {unreadable}") for note in outcome.notes)
    assert [f.subject for f in outcome.retryable_failures] == ([unreadable] if retryable else [])
    assert outcome.to_dict()["failed"] == [
        {"cluster": unreadable, "error": outcome.failed[0].error, "retryable": retryable}
    ]


def test_a_cluster_named_by_name_and_by_arn_is_scanned_once(
    ecs_world: EcsWorld,
    ecs_calls: ApiCalls,
    clients: AwsClients,
    retry: RetryPolicy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = ecs_world.secret("prod/db")
    prod_arn = ecs_world.cluster("prod")
    td = ecs_world.task_definition(secrets=[db])
    for i in range(3):
        ecs_world.service("prod", f"svc-{i}", td)
    monkeypatch.setenv("ROTOR_CLUSTERS", f"prod, {prod_arn}")
    runtime = make_runtime(clients, retry, Settings.from_env())

    outcome = run(rotation_event(db), runtime)

    assert ecs_calls.counts["ListServices"] == 1
    assert ecs_calls.counts["DescribeServices"] == 1
    assert sorted(names(outcome.redeployed)) == ["svc-0", "svc-1", "svc-2"]
    assert len(outcome.consumers) == 3
    assert ecs_calls.counts["UpdateService"] == 3


def test_services_that_vanish_mid_scan_are_reported(
    ecs_world: EcsWorld, clients: AwsClients, runtime: Runtime
) -> None:
    db = ecs_world.secret("prod/db")
    ecs_world.cluster("prod")
    td = ecs_world.task_definition(secrets=[db])
    ecs_world.service("prod", "stays", td)
    gone = ecs_world.service("prod", "goes", td)

    def delete_after_listing(**_: Any) -> None:
        # Between ListServices and DescribeServices, someone deletes the service.
        ecs_world.backend.services.pop("prod:goes", None)

    clients.ecs.meta.events.register("before-call.ecs.DescribeServices", delete_after_listing)

    outcome = run(rotation_event(db), runtime)

    assert outcome.missing == [gone]
    assert outcome.to_dict()["missing"] == [gone]
    assert any(gone in note and "vanished" in note for note in outcome.notes)
    assert names(outcome.redeployed) == {"stays"}
