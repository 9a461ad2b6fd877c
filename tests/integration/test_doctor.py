"""``rotor doctor`` against moto: each prerequisite reported missing, then all clear.

The account is built for real in moto: a CloudTrail trail with its event selectors and
logging state, a stand-in of the rotor stack deployed through CloudFormation (built from
``infra/template.yaml``: its rules with their patterns and states, its functions with their
reserved concurrency and its parameters, the state table, queue and topic), the default bus's
policy, a forwarder stack from ``infra/forwarder.yaml``. Each test reads the account back
through ``rotor doctor`` itself (``main``), as a user runs it.

moto does not implement Lambda's ``GetAccountSettings``. ``lambda_account`` answers it at the
botocore level (``before-send``, so botocore parses the answer as AWS's) from moto's own state:
the account's limit is ``MOTO_LAMBDA_CONCURRENCY_QUOTA`` (moto's own setting, which also makes
moto refuse reservations past the limit, as Lambda does), and the unreserved executions are
that limit less what moto's functions reserve.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse

from orchestration.cli.main import main
from orchestration.events.routing import load_template
from orchestration.prerequisites import READ_OPERATIONS
from tests.conftest import ACCOUNT, REGION, ROOT
from tests.integration.test_moto_server import server_url

__all__ = ["server_url"]  # fixture

pytestmark = pytest.mark.integration

OTHER_ACCOUNT = "210987654321"
STACK = "rotor"
FORWARDER = "rotor-forwarder"


# --- the account ---------------------------------------------------------------------------


def standin_template() -> dict[str, Any]:
    """The rotor stack as moto can deploy it: infra/template.yaml's parameters, rules (pattern,
    state), functions (reserved concurrency from their parameters), state table, queue, topic."""
    real = load_template()
    parameters = {
        name: {k: v for k, v in spec.items() if k in ("Type", "Default", "MinValue", "MaxValue")}
        for name, spec in real["Parameters"].items()
    }
    resources: dict[str, Any] = {
        "FunctionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        }
    }
    for logical, resource in real["Resources"].items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::Serverless::Function":
            resources[logical] = {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.12",
                    "Handler": props["Handler"],
                    "Role": {"Fn::GetAtt": ["FunctionRole", "Arn"]},
                    "Code": {"ZipFile": "def lambda_handler(event, context):\n    pass\n"},
                    "ReservedConcurrentExecutions": props["ReservedConcurrentExecutions"],
                },
            }
        elif kind == "AWS::Events::Rule":
            resources[logical] = {
                "Type": kind,
                "Properties": {"State": props["State"], "EventPattern": props["EventPattern"]},
            }
    resources["StateTable"] = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        },
    }
    resources["RedeployQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    resources["NotificationTopic"] = {"Type": "AWS::SNS::Topic", "Properties": {}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": parameters,
        "Resources": resources,
    }


def forwarder_template() -> dict[str, Any]:
    """infra/forwarder.yaml's rules (pattern, state), each targeting the rotor account's bus."""
    real = load_template((ROOT / "infra" / "forwarder.yaml").read_text())
    resources = {}
    for logical, resource in real["Resources"].items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        props = resource["Properties"]
        resources[logical] = {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "State": props["State"],
                "EventPattern": props["EventPattern"],
                "Targets": [
                    {
                        "Id": "ConsumerBus",
                        "Arn": f"arn:aws:events:{REGION}:{OTHER_ACCOUNT}:event-bus/default",
                    }
                ],
            },
        }
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}


def deploy(
    name: str, template: dict[str, Any], endpoint_url: str | None = None, **parameters: str
) -> dict[str, str]:
    """Create the stack; its resources, logical id -> physical id."""
    cloudformation = boto3.client("cloudformation", region_name=REGION, endpoint_url=endpoint_url)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}


def trail(
    *,
    name: str = "management-events",
    multi_region: bool = True,
    region: str = REGION,
    logging: bool = True,
    read_write: str | None = "All",
    advanced: list[dict[str, Any]] | None = None,
    endpoint_url: str | None = None,
) -> str:
    """A trail as an account has it; by default multi-region, logging, all management events."""
    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint_url)
    bucket = f"{name}-logs-{region}"
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    cloudtrail = boto3.client("cloudtrail", region_name=region, endpoint_url=endpoint_url)
    arn: str = cloudtrail.create_trail(
        Name=name, S3BucketName=bucket, IsMultiRegionTrail=multi_region
    )["TrailARN"]
    if advanced is not None:
        cloudtrail.put_event_selectors(TrailName=name, AdvancedEventSelectors=advanced)
    elif read_write is not None:
        cloudtrail.put_event_selectors(
            TrailName=name,
            EventSelectors=[{"ReadWriteType": read_write, "IncludeManagementEvents": True}],
        )
    if logging:
        cloudtrail.start_logging(Name=name)
    return arn


@pytest.fixture
def complete(moto) -> dict[str, str]:
    """Everything rotor needs: a trail logging all management events, the stack."""
    trail()
    return deploy(STACK, standin_template())


# --- running rotor doctor --------------------------------------------------------------------


class Account:
    """Answers GetAccountSettings from moto's state; records every call a client makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (IAM prefix, operation)

    def settings(self) -> dict[str, Any]:
        import os

        from moto.awslambda.models import lambda_backends

        limit = int(os.environ.get("MOTO_LAMBDA_CONCURRENCY_QUOTA", "1000"))
        backend = lambda_backends[ACCOUNT][REGION]
        reserved = sum(int(f.reserved_concurrency or 0) for f in backend.list_functions())
        return {
            "AccountLimit": {
                "TotalCodeSize": 80530636800,
                "CodeSizeUnzipped": 262144000,
                "CodeSizeZipped": 52428800,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": limit - reserved,
            },
            "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": len(backend.list_functions())},
        }

    def answer_settings(self, request: Any, **_: Any) -> AWSResponse:
        body = json.dumps(self.settings()).encode()
        return _Raw.response(request.url, body)

    def record(self, model: Any, **_: Any) -> None:
        self.calls.append((model.service_model.endpoint_prefix, model.name))


class _Raw:
    """A raw HTTP answer, for botocore to parse as it would AWS's."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body

    @classmethod
    def response(cls, url: str, body: bytes) -> AWSResponse:
        return AWSResponse(url, 200, {"Content-Type": "application/json"}, cls(body))  # type: ignore[arg-type]


@contextmanager
def lambda_account() -> Iterator[Account]:
    account = Account()
    real = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = real(self, *args, **kwargs)
        client.meta.events.register_first("before-call", account.record)
        if client.meta.service_model.endpoint_prefix == "lambda":
            # First, ahead of moto's own before-send handler (which answers 404).
            client.meta.events.register_first(
                "before-send.lambda.GetAccountSettings", account.answer_settings
            )
        return client

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session.Session, "create_client", create_client)
        yield account


def doctor(capsys, *args: str) -> tuple[int, dict[str, Any], Account]:
    """``rotor doctor --json ARGS``: exit status, the JSON, and the calls it made."""
    with lambda_account() as account:
        code = main(["doctor", "--region", REGION, "--json", *args])
    out, err = capsys.readouterr()
    assert err == "", err
    return code, json.loads(out), account


def checks(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in data["checks"]}


def not_ok(data: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["status"] for c in data["checks"] if c["status"] not in ("ok", "skipped")}


RULES = {
    "rule:ValueChangesRule",
    "rule:RotationFailuresRule",
    "rule:DeletionRule",
    "rule:PendingDeletionReadsRule",
    "rule:DeploymentStatesRule",
}


# --- all clear ---------------------------------------------------------------------------------


def test_all_clear_on_a_complete_set_up(complete, capsys):
    code, data, _ = doctor(capsys)

    assert code == 0
    assert data["ok"] is True
    assert not_ok(data) == {}
    found = checks(data)
    assert set(found) >= RULES
    assert {"cloudtrail", "stack", "concurrency", "state-table", "redeploy-queue"} <= set(found)
    assert "notification-topic" in found
    assert found["bus-policy"]["status"] == "skipped"  # one account: no bus policy needed
    assert "read and write" in found["cloudtrail"]["detail"]
    assert (
        "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
        in (found["rule:PendingDeletionReadsRule"]["detail"])
    )
    assert complete["StateTable"] in found["state-table"]["detail"]


def test_the_table_says_so_too(complete, capsys):
    with lambda_account():
        code = main(["doctor", "--region", REGION])
    out = capsys.readouterr().out

    assert code == 0
    assert "every prerequisite holds" in out
    assert "  ok       cloudtrail" in out


def test_the_region_is_chosen_as_every_command_chooses_it(complete, capsys, monkeypatch):
    """No --region: AWS_REGION first, before AWS_DEFAULT_REGION, as the AWS CLI does."""
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with lambda_account():
        code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)

    assert data["region"] == REGION
    assert code == 0


def test_a_trail_with_no_selectors_set_logs_all_management_events(moto, capsys):
    """CloudTrail's default for a trail whose selectors were never set."""
    trail(read_write=None)
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    assert checks(data)["cloudtrail"]["status"] == "ok"
    assert code == 0


def test_json_shape(complete, capsys):
    _, data, _ = doctor(capsys)

    assert set(data) == {"region", "stack", "forwarder_stack", "ok", "missing", "unknown", "checks"}
    assert data["region"] == REGION
    assert data["stack"] == STACK
    assert data["forwarder_stack"] is None
    for check in data["checks"]:
        assert set(check) == {"check", "status", "detail", "fix"}
        assert check["status"] in ("ok", "missing", "unknown", "skipped")
        assert isinstance(check["detail"], str) and check["detail"]


# --- CloudTrail --------------------------------------------------------------------------------


def test_reports_a_missing_trail(moto, capsys):
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"cloudtrail": "missing"}
    cloudtrail = checks(data)["cloudtrail"]
    assert "never reach rotor" in cloudtrail["detail"]
    assert "create-trail" in cloudtrail["fix"] and "--is-multi-region-trail" in cloudtrail["fix"]
    assert data["missing"] == 1


def test_a_single_region_trail_of_another_region_does_not_count(moto, capsys):
    trail(multi_region=False, region="eu-west-1")
    deploy(STACK, standin_template())

    _, data, _ = doctor(capsys)

    assert not_ok(data) == {"cloudtrail": "missing"}


def test_a_single_region_trail_here_counts(moto, capsys):
    trail(multi_region=False)
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    assert (code, not_ok(data)) == (0, {})


@pytest.mark.parametrize(
    "selectors",
    [
        {"read_write": "WriteOnly"},
        {
            "advanced": [
                {
                    "Name": "management writes",
                    "FieldSelectors": [
                        {"Field": "eventCategory", "Equals": ["Management"]},
                        {"Field": "readOnly", "Equals": ["false"]},
                    ],
                }
            ]
        },
    ],
    ids=["basic", "advanced"],
)
def test_reports_a_trail_without_read_events(moto, capsys, selectors):
    trail(**selectors)
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"cloudtrail": "missing"}
    cloudtrail = checks(data)["cloudtrail"]
    assert "read events" in cloudtrail["detail"]
    assert "scheduled for deletion" in cloudtrail["detail"]
    assert "put-event-selectors" in cloudtrail["fix"]


def test_reports_a_trail_without_write_events(moto, capsys):
    trail(read_write="ReadOnly")
    deploy(STACK, standin_template())

    _, data, _ = doctor(capsys)

    assert not_ok(data) == {"cloudtrail": "missing"}
    assert "PutSecretValue" in checks(data)["cloudtrail"]["detail"]


def test_advanced_selectors_for_all_management_events_count(moto, capsys):
    trail(
        advanced=[
            {
                "Name": "management",
                "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}],
            }
        ]
    )
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    assert (code, not_ok(data)) == (0, {})


def test_reports_a_trail_that_is_not_logging(moto, capsys):
    trail(logging=False)
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    assert code == 1
    cloudtrail = checks(data)["cloudtrail"]
    assert cloudtrail["status"] == "missing"
    assert "not logging" in cloudtrail["detail"]
    assert cloudtrail["fix"] == (
        f"aws cloudtrail start-logging --name management-events --region {REGION}"
    )


# --- the stack and its rules -------------------------------------------------------------------


def test_reports_a_missing_stack(moto, capsys):
    trail()

    code, data, _ = doctor(capsys, "--stack", "elsewhere")

    assert code == 1
    assert checks(data)["stack"]["status"] == "missing"
    assert "no stack elsewhere" in checks(data)["stack"]["detail"]
    assert "sam deploy" in checks(data)["stack"]["fix"]
    assert not RULES & set(checks(data))


def test_reports_a_deleted_rule(complete, capsys):
    boto3.client("events", region_name=REGION).delete_rule(Name=complete["DeletionRule"])

    code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"rule:DeletionRule": "missing"}
    assert "no longer exists" in checks(data)["rule:DeletionRule"]["detail"]


def test_reports_a_disabled_rule(complete, capsys):
    name = complete["ValueChangesRule"]
    boto3.client("events", region_name=REGION).disable_rule(Name=name)

    code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"rule:ValueChangesRule": "missing"}
    rule = checks(data)["rule:ValueChangesRule"]
    assert "DISABLED" in rule["detail"]
    assert rule["fix"] == f"aws events enable-rule --name {name}"


def test_reports_the_pending_deletion_rule_in_the_wrong_state(complete, capsys):
    events = boto3.client("events", region_name=REGION)
    name = complete["PendingDeletionReadsRule"]
    pattern = events.describe_rule(Name=name)["EventPattern"]
    events.put_rule(Name=name, EventPattern=pattern, State="ENABLED")

    code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"rule:PendingDeletionReadsRule": "missing"}
    rule = checks(data)["rule:PendingDeletionReadsRule"]
    assert "ENABLED, not ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" in rule["detail"]
    assert "--state ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" in rule["fix"]


def test_reports_a_rule_the_stack_lacks(moto, capsys):
    """A stack deployed from an older template, without one of today's rules."""
    trail()
    template = standin_template()
    del template["Resources"]["DeploymentStatesRule"]
    deploy(STACK, template)

    _, data, _ = doctor(capsys)

    assert not_ok(data) == {"rule:DeploymentStatesRule": "missing"}
    assert "has no rule DeploymentStatesRule" in checks(data)["rule:DeploymentStatesRule"]["detail"]


# --- resources ----------------------------------------------------------------------------------


def test_reports_a_queue_that_is_gone(complete, capsys):
    boto3.client("sqs", region_name=REGION).delete_queue(QueueUrl=complete["RedeployQueue"])

    code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"redeploy-queue": "missing"}


def test_without_a_stack_the_settings_name_the_resources(moto, capsys, monkeypatch):
    """A missing table named by ROTOR_STATE_TABLE is a missing prerequisite, not bad input."""
    trail()
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="rotor")["TopicArn"]
    monkeypatch.setenv("ROTOR_STATE_TABLE", "no-such-table")
    monkeypatch.setenv("ROTOR_TOPIC_ARN", topic)

    code, data, _ = doctor(capsys)

    assert code == 1
    found = checks(data)
    assert found["state-table"]["status"] == "missing"
    assert "ROTOR_STATE_TABLE" in found["state-table"]["detail"]
    assert found["notification-topic"]["status"] == "ok"
    assert found["redeploy-queue"]["status"] == "skipped"


# --- concurrency ----------------------------------------------------------------------------


def test_a_sandbox_quota_cannot_hold_any_reservation(moto, capsys, monkeypatch):
    """A quota of 100 (or 50) leaves nothing to reserve: Lambda keeps 100 unreserved."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "100")
    trail()

    code, data, _ = doctor(capsys)

    assert code == 1
    concurrency = checks(data)["concurrency"]
    assert concurrency["status"] == "missing"
    assert "account limit 100" in concurrency["detail"]
    assert "the template's defaults reserves 9" in concurrency["detail"]  # 4 x 2, and the 1
    assert "--quota-code L-B99A9384 --desired-value 109" in concurrency["fix"]


def test_too_little_concurrency_names_the_parameters_to_lower(moto, capsys, monkeypatch):
    """Room for 6 reserved executions: the defaults (9, the reconciler's fixed 1 with them) do
    not fit, the minimums (6) do."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "106")
    trail()

    code, data, _ = doctor(capsys)

    assert code == 1
    concurrency = checks(data)["concurrency"]
    assert concurrency["status"] == "missing"
    assert "may reserve 6 in all" in concurrency["detail"]
    assert (
        "sam deploy --parameter-overrides RotationConcurrency=1 AlarmsConcurrency=1"
        in concurrency["fix"]
    )


def test_what_the_stack_reserves_already_counts_as_its_own(moto, capsys, monkeypatch):
    """Deployed with the defaults under a limit of 110: 101 unreserved, and the stack's own 9
    (the four parameters' 2 each, the reconciler's fixed 1) are part of what it may hold
    (without them, only 1 would seem free)."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "110")
    trail()
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    concurrency = checks(data)["concurrency"]
    assert concurrency["status"] == "ok", concurrency
    assert "101 unreserved" in concurrency["detail"]
    assert "reserves 9 (" in concurrency["detail"]
    assert "ReconcileFunction 1" in concurrency["detail"]
    assert code == 0


def test_the_stack_parameters_are_what_it_reserves(moto, capsys, monkeypatch):
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "1000")
    trail()
    deploy(STACK, standin_template(), WorkerConcurrency="5")

    _, data, _ = doctor(capsys)

    concurrency = checks(data)["concurrency"]
    assert "stack rotor reserves 12" in concurrency["detail"]
    assert "WorkerConcurrency=5" in concurrency["detail"]


# --- cross-account --------------------------------------------------------------------------


def test_reports_a_bus_that_refuses_the_trusted_account(moto, capsys):
    trail()
    deploy(STACK, standin_template(), TrustedAccounts=OTHER_ACCOUNT)

    code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"bus-policy": "missing"}
    assert OTHER_ACCOUNT in checks(data)["bus-policy"]["detail"]
    assert f"--principal {OTHER_ACCOUNT}" in checks(data)["bus-policy"]["fix"]

    boto3.client("events", region_name=REGION).put_permission(
        EventBusName="default",
        Action="events:PutEvents",
        Principal=OTHER_ACCOUNT,
        StatementId="rotor-trusted-accounts",
    )
    code, data, _ = doctor(capsys)

    assert (code, not_ok(data)) == (0, {})
    assert checks(data)["bus-policy"]["status"] == "ok"


def test_the_forwarder_stack_in_the_account_that_owns_the_secrets(moto, capsys):
    trail()
    deploy(FORWARDER, forwarder_template())

    code, data, _ = doctor(capsys, "--forwarder-stack", FORWARDER)

    assert code == 0, not_ok(data)
    found = checks(data)
    assert data["stack"] is None  # only the forwarder: no rotor stack in this account
    assert set(found) == {
        "cloudtrail",
        "forwarder-stack",
        "forwarder-rule:SecretChangesForwardRule",
        "forwarder-rule:PendingDeletionReadsForwardRule",
    }
    assert OTHER_ACCOUNT in found["forwarder-rule:SecretChangesForwardRule"]["detail"]


def test_reports_a_missing_forwarder_stack(moto, capsys):
    trail()

    code, data, _ = doctor(capsys, "--forwarder-stack", FORWARDER)

    assert code == 1
    assert not_ok(data) == {"forwarder-stack": "missing"}
    assert "infra/forwarder.yaml" in checks(data)["forwarder-stack"]["fix"]


# --- what it may call -------------------------------------------------------------------------


def test_doctor_only_reads(moto, capsys, monkeypatch):
    """Every call of a run that checks everything (trail, stack, concurrency, resources, bus
    policy, forwarder) is a read of the allow-list, and each read of the list is made."""
    trail()
    deploy(STACK, standin_template(), TrustedAccounts=OTHER_ACCOUNT)
    deploy(FORWARDER, forwarder_template())

    _, _, account = doctor(capsys, "--stack", STACK, "--forwarder-stack", FORWARDER)

    made = {f"{prefix}:{operation}" for prefix, operation in account.calls}
    assert made == set(READ_OPERATIONS)
    for action in made:
        operation = action.split(":", 1)[1]
        assert operation.startswith(("Describe", "Get", "List")), action
        assert "SecretValue" not in operation


def test_the_allow_list_is_in_the_operations_guide():
    guide = (ROOT / "docs" / "operations.md").read_text()
    assert [a for a in sorted(READ_OPERATIONS) if f"`{a}`" not in guide] == []


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--stack", "not a stack!"],
        ["--forwarder-stack", "1starts-with-a-digit"],
        ["--region", "moon-1"],
        ["--output", "yaml"],
        ["--endpoint-url", "ftp://example.com"],
    ],
)
def test_bad_input_exits_2(moto, capsys, args):
    with pytest.raises(SystemExit) as stopped:
        main(["doctor", *args])

    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("rotor: error: ") and err.count("\n") == 1


def test_bad_settings_exit_2(moto, capsys, monkeypatch):
    monkeypatch.setenv("ROTOR_NOTIFY_WINDOW", "soon")

    assert main(["doctor", "--region", REGION]) == 2
    assert capsys.readouterr().err.startswith("rotor: error: ")


def test_an_unknown_region_exits_2(moto, capsys):
    """A region of an AWS partition's form that botocore does not know (a form no partition
    has is refused by the parser: ``moon-1`` above)."""
    assert main(["doctor", "--region", "eu-nowhere-9"]) == 2
    assert "unknown AWS region 'eu-nowhere-9'" in capsys.readouterr().err


# --- what it cannot read --------------------------------------------------------------------


def test_a_read_it_is_not_allowed_is_reported_unknown(complete, capsys):
    """AccessDenied on one read: that check is unknown (exit 1), naming the permission; the
    others are still checked."""
    real = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = real(self, *args, **kwargs)
        client.meta.events.register_first("before-send.cloudtrail.GetEventSelectors", denied)
        return client

    def denied(request: Any, **_: Any) -> AWSResponse:
        body = json.dumps({"__type": "AccessDeniedException", "Message": "not authorized"})
        return AWSResponse(request.url, 400, {}, _Raw(body.encode()))  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session.Session, "create_client", create_client)
        code, data, _ = doctor(capsys)

    assert code == 1
    assert not_ok(data) == {"cloudtrail": "unknown"}
    assert set(checks(data)) >= RULES | {"concurrency", "state-table"}  # the rest still checked
    assert "cloudtrail:GetEventSelectors" in checks(data)["cloudtrail"]["fix"]
    assert data["unknown"] == 1 and data["ok"] is False


def test_no_credentials_stops_the_run_with_one_line(capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code = main(["doctor", "--region", REGION])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.startswith("rotor: error: ") and captured.err.count("\n") == 1
    assert "credentials" in captured.err.lower()


def test_a_multi_region_trail_of_another_home_region_counts(moto, capsys):
    trail(region="eu-west-1")
    deploy(STACK, standin_template())

    code, data, _ = doctor(capsys)

    assert (code, not_ok(data)) == (0, {})
    assert "multi-region" in checks(data)["cloudtrail"]["detail"]


def test_a_multi_region_trail_is_read_and_fixed_in_its_home_region(moto, capsys):
    """Here it is a shadow: its status and selectors are read, and changed, where it lives."""
    trail(region="eu-west-1", read_write="WriteOnly")
    deploy(STACK, standin_template())

    _, data, _ = doctor(capsys)

    cloudtrail = checks(data)["cloudtrail"]
    assert cloudtrail["status"] == "missing"
    assert (
        "multi-region" in cloudtrail["detail"]
        and "write management events only" in (cloudtrail["detail"])
    )
    assert "--trail-name management-events --region eu-west-1" in cloudtrail["fix"]


# --- over the wire --------------------------------------------------------------------------


@pytest.mark.server
def test_over_the_wire_against_an_endpoint(server_url, capsys):
    """``--endpoint-url``: every read goes over HTTP to the (moto) server."""
    reset = urllib.request.Request(f"{server_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10) as answer:
        assert answer.status == 200
    trail(endpoint_url=server_url, read_write="ReadOnly")
    deploy(STACK, standin_template(), endpoint_url=server_url)

    code, data, account = doctor(capsys, "--endpoint-url", server_url)

    assert code == 1
    assert not_ok(data) == {"cloudtrail": "missing"}
    assert set(checks(data)) >= RULES | {"concurrency", "state-table"}
    assert {f"{prefix}:{op}" for prefix, op in account.calls} <= READ_OPERATIONS


def test_an_unreachable_endpoint_is_a_failed_run_in_one_line(capsys, monkeypatch):
    from orchestration.cli import main as cli

    monkeypatch.setattr(cli, "CLI_DEADLINE_SECONDS", 0.0)  # no retries after the first attempt

    code = main(["doctor", "--region", REGION, "--endpoint-url", "http://127.0.0.1:9"])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith(
        "rotor: error: cloudtrail:DescribeTrails failed: ConnectionError"
    )
