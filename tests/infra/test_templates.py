"""The templates of infra/: lint-clean, transformable, creatable, and least privilege.

- cfn-lint reports no error and no warning on any template;
- the SAM transform (aws-sam-translator, what `sam deploy` runs server-side) succeeds;
- the transformed stack creates in moto's CloudFormation, and what it made reads back right
  (functions, rules, queues, table, role policies for each parameter choice);
- no policy anywhere grants GetSecretValue or a wildcard action.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestration.events.routing import matches, route
from tests.conftest import REGION, SAMPLE_EVENTS
from tests.infra.conftest import INFRA, TEMPLATES, read_template

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ARTIFACTS = "rotor-artifacts"
CODE_KEY = "rotor.zip"
#: Resource types moto's CloudFormation does not create (moto 5.x): it skips them with a
#: warning. CloudWatch alarms are removed before creation since the dashboard's alarm widget
#: reads their ARNs (GetAtt), which moto cannot resolve for a type it does not model.
MOTO_SKIPS = {
    "AWS::Events::EventBusPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    "AWS::Logs::MetricFilter",
    "AWS::Lambda::EventInvokeConfig",
}
MOTO_REMOVED = {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"}


# --- cfn-lint -----------------------------------------------------------------------------


def test_there_are_three_templates() -> None:
    assert [p.name for p in TEMPLATES] == ["bootstrap.yaml", "forwarder.yaml", "template.yaml"]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_nothing(path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Exit 0 means no error (2), warning (4) or informational finding (8).
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr


# --- the SAM transform --------------------------------------------------------------------


def sam_transform(stack: dict[str, Any]) -> dict[str, Any]:
    """What CloudFormation runs on the template once `sam package` has uploaded the code."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    packaged = copy.deepcopy(stack)
    packaged["Globals"]["Function"]["CodeUri"] = f"s3://{ARTIFACTS}/{CODE_KEY}"
    transformed: dict[str, Any] = transform(packaged, {}, NoManagedPolicies())
    return transformed


@pytest.fixture(scope="session")
def transformed(stack: dict[str, Any]) -> dict[str, Any]:
    import os

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return sam_transform(stack)


def test_the_sam_transform_makes_plain_cloudformation(transformed: dict[str, Any]) -> None:
    types = {r["Type"] for r in transformed["Resources"].values()}
    assert not [t for t in types if t.startswith("AWS::Serverless::")]
    functions = {
        name: r["Properties"]
        for name, r in transformed["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    assert set(functions) == {
        "RotationFunction",
        "AlarmsFunction",
        "WorkerFunction",
        "TrackerFunction",
        "ReconcileFunction",
    }
    for props in functions.values():
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == ["arm64"]
        assert "ReservedConcurrentExecutions" in props  # ECS callers: account-wide rate
        env = props["Environment"]["Variables"]
        assert env.keys() >= {
            "POWERTOOLS_SERVICE_NAME",
            "POWERTOOLS_METRICS_NAMESPACE",
            "POWERTOOLS_LOG_LEVEL",
            "ROTOR_STATE_TABLE",
            "ROTOR_TOPIC_ARN",
            "ROTOR_TRUSTED_ACCOUNTS",
            "ROTOR_CLUSTERS",
            "ROTOR_OPT_IN",
            "ROTOR_RESTORE_ON_ACCESS",
            "ROTOR_NOTIFY_WINDOW",
        }
    invoke_configs = [
        r["Properties"]
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
    ]
    # Every function EventBridge invokes (asynchronously) for an event hands failed events to a
    # queue; the worker is fed by the redeploy queue, whose redrive policy does that. The
    # reconciler's scheduled events carry nothing to keep: no retry, the next pass is it.
    scheduled = {"Ref": "ReconcileFunction"}
    assert len(invoke_configs) == 4
    assert all(
        "OnFailure" in c["DestinationConfig"]
        for c in invoke_configs
        if c["FunctionName"] != scheduled
    )
    (reconciler,) = [c for c in invoke_configs if c["FunctionName"] == scheduled]
    assert reconciler["MaximumRetryAttempts"] == 0
    queue = transformed["Resources"]["RedeployQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["RedeployDeadLetterQueue", "Arn"]
    }
    (mapping,) = [
        r["Properties"]
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerConcurrency"}


def test_every_rule_target_retries_and_has_a_dead_letter_queue() -> None:
    for path in TEMPLATES:
        for name, resource in read_template(path)["Resources"].items():
            if resource["Type"] != "AWS::Events::Rule":
                continue
            for target in resource["Properties"]["Targets"]:
                assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0, name
                queue = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
                assert read_template(path)["Resources"][queue]["Type"] == "AWS::SQS::Queue"


# --- moto's CloudFormation ----------------------------------------------------------------


def _for_moto(transformed: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(transformed)
    for name in [n for n, r in template["Resources"].items() if r["Type"] in MOTO_REMOVED]:
        del template["Resources"][name]
    template["Outputs"].pop("DashboardUrl")
    # CloudFormation checks a Number parameter as a number but Ref gives its value as a string
    # (so `!FindInMap [EcsContainers, !Ref WorkerConcurrency, Half]` finds the key "2"); moto
    # gives an int, which is no mapping key. Declared as strings, moto's Ref is CloudFormation's.
    for parameter in template["Parameters"].values():
        if parameter["Type"] == "Number":
            parameter["Type"] = "String"
            parameter["Default"] = str(parameter["Default"])
            for bound in ("MinValue", "MaxValue"):
                parameter.pop(bound, None)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Events::Archive":  # moto reads the pattern as JSON text
            props = resource["Properties"]
            props["EventPattern"] = json.dumps(props["EventPattern"])
        if resource["Type"] == "AWS::KMS::Key":  # moto reads the tags in the KMS API's shape
            props = resource["Properties"]
            props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props["Tags"]]
    return template


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=ARTIFACTS)
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handlers/__init__.py", "")
        s3.put_object(Bucket=ARTIFACTS, Key=CODE_KEY, Body=code.getvalue())
        yield


def create_stack(transformed: dict[str, Any], **parameters: str) -> dict[str, Any]:
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.create_stack(
        StackName="rotor",
        TemplateBody=json.dumps(_for_moto(transformed)),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    (stack,) = cfn.describe_stacks(StackName="rotor")["Stacks"]
    summaries = cfn.list_stack_resources(StackName="rotor")["StackResourceSummaries"]
    stack["resources"] = {
        s["LogicalResourceId"]: s.get("PhysicalResourceId", "") for s in summaries
    }
    return stack


def role_policies(role_name: str) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies, as IAM holds them."""
    iam = boto3.client("iam", region_name=REGION)
    statements = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):  # moto returns the Python repr of the document
            document = ast.literal_eval(document)
        # CloudFormation drops AWS::NoValue from a list; moto leaves a None in its place.
        statements += [s for s in document["Statement"] if s is not None]
    return statements


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def test_the_stack_creates_in_moto_with_defaults(aws: None, transformed: dict[str, Any]) -> None:
    stack = create_stack(transformed)

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    made = {
        t
        for n, r in transformed["Resources"].items()
        if n in stack["resources"]
        for t in [r["Type"]]
    }
    assert "AWS::Lambda::Function" in made and "AWS::Events::Rule" in made
    lam = boto3.client("lambda", region_name=REGION)
    rotation = lam.get_function(FunctionName=stack["resources"]["RotationFunction"])
    assert rotation["Configuration"]["Runtime"] == "python3.12"
    # (moto ignores Architectures; the transformed template's arm64 is checked above)
    assert rotation["Concurrency"]["ReservedConcurrentExecutions"] == 2
    events = boto3.client("events", region_name=REGION)
    reads = events.describe_rule(Name=stack["resources"]["PendingDeletionReadsRule"])
    assert reads["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
    # The deployed pattern routes exactly as `rotor replay` does.
    deployed = json.loads(reads["EventPattern"])
    for path in SAMPLE_EVENTS:
        event = json.loads(path.read_text())
        expected = "PendingDeletionReadsRule" in {r.rule for r in route(event)}
        assert matches(deployed, event) is expected, path.name
    table = boto3.client("dynamodb", region_name=REGION).describe_table(
        TableName=stack["resources"]["StateTable"]
    )["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    # Restore is off by default: RestoreSecret only on secrets tagged for it, only for alarms.
    roles = [stack["resources"][r] for r in ("RotationFunctionRole", "AlarmsFunctionRole")]
    granted = set().union(*(_actions(role_policies(r)) for r in roles))
    assert "secretsmanager:RestoreSecret" not in _actions(
        role_policies(stack["resources"]["RotationFunctionRole"])
    )
    (restore,) = [
        s
        for s in role_policies(stack["resources"]["AlarmsFunctionRole"])
        if "secretsmanager:RestoreSecret" in _actions([s])
    ]
    assert restore["Condition"] == {
        "StringEqualsIgnoreCase": {"secretsmanager:ResourceTag/rotor:restore-on-access": "true"}
    }
    assert "ecs:ListClusters" in granted  # every cluster is in scope
    assert not [a for a in granted if "GetSecretValue" in a]


def test_restore_and_cluster_scope_change_the_policies(
    aws: None, transformed: dict[str, Any]
) -> None:
    stack = create_stack(
        transformed,
        RestoreOnAccess="true",
        ClusterNames="prod,batch",
        NotificationEmail="ops@example.com",
        CloudTrailLogGroupName="cloudtrail",
        TrustedAccounts="111122223333",
    )

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    alarms = role_policies(stack["resources"]["AlarmsFunctionRole"])
    rotation = role_policies(stack["resources"]["RotationFunctionRole"])
    worker = role_policies(stack["resources"]["WorkerFunctionRole"])
    (restore,) = [s for s in alarms if "secretsmanager:RestoreSecret" in _actions([s])]
    assert "Condition" not in restore  # every secret of the account, tagged or not
    assert "secretsmanager:RestoreSecret" not in _actions(rotation)
    for statements in (alarms, rotation, worker):
        assert "ecs:ListClusters" not in _actions(statements)
        scoped = [s for s in statements if "ecs:ListServices" in _actions([s])]
        (listing,) = scoped
        assert listing["Condition"]["StringLike"]["ecs:cluster"] == [
            "*:cluster/prod",
            "*:cluster/batch",
        ]
    # Only the worker redeploys (the rotation function queues the jobs).
    assert "ecs:UpdateService" not in _actions(rotation)
    (update,) = [s for s in worker if "ecs:UpdateService" in _actions([s])]
    assert update["Condition"]["StringLike"]["ecs:cluster"] == ["*:cluster/prod", "*:cluster/batch"]


def test_moto_skips_only_the_types_we_know(transformed: dict[str, Any]) -> None:
    from moto.cloudformation.parsing import get_model_map

    types = {r["Type"] for r in _for_moto(transformed)["Resources"].values()}
    assert {t for t in types if t not in get_model_map()} == MOTO_SKIPS


# --- least privilege ----------------------------------------------------------------------


def _statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every policy statement anywhere in a template (IAM, key, queue, topic, bus policies)."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield where, node
        for key, value in node.items():
            yield from _statements(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _statements(value, f"{where}[{index}]")


def _policy_problems(template: dict[str, Any]) -> list[str]:
    problems = []
    for where, statement in _statements(template):
        if "NotAction" in statement:
            problems.append(f"{where}: NotAction grants everything else")
        actions = statement.get("Action", [])
        for action in [actions] if isinstance(actions, str) else actions:
            if not isinstance(action, str):
                problems.append(f"{where}: computed action {action}")
            elif "*" in action and statement["Effect"] == "Allow":  # Deny s3:* only takes away
                problems.append(f"{where}: wildcard action {action}")
            elif "getsecretvalue" in action.lower():
                problems.append(f"{where}: grants {action}")
    return problems


def test_no_policy_grants_get_secret_value_or_a_wildcard_action(
    transformed: dict[str, Any],
) -> None:
    for path in TEMPLATES:
        template = read_template(path)
        assert list(_statements(template)), path.name  # the walk finds statements at all
        assert _policy_problems(template) == [], path.name
        assert "GetSecretValue" not in path.read_text(), path.name
    assert _policy_problems(transformed) == []
    managed = {
        arn["Fn::Sub"] if isinstance(arn, dict) else arn
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::IAM::Role"
        for arn in r["Properties"].get("ManagedPolicyArns", [])
    }
    assert {a.rsplit("/", 1)[-1] for a in managed} == {
        "AWSLambdaBasicExecutionRole",
        "AWSXrayWriteOnlyAccess",
    }


def test_the_policy_check_catches_what_it_should() -> None:
    bad = {
        "A": {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"},
        "B": {"Effect": "Allow", "Action": ["ecs:Describe*"], "Resource": "*"},
        "C": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        "D": {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
    }
    assert [p.split(":")[0] for p in _policy_problems(bad)] == ["/A", "/B", "/C"]


def test_restore_secret_is_granted_by_tag_unless_restore_on_access(stack: dict[str, Any]) -> None:
    """The code restores a secret when RestoreOnAccess=true or the secret is tagged
    rotor:restore-on-access=true (orchestration/alarms), so IAM grants exactly that."""
    text = json.dumps(stack["Resources"])
    assert text.count("secretsmanager:RestoreSecret") == 1
    assert stack["Conditions"]["RestoreEnabled"] == {
        "Fn::Equals": [{"Ref": "RestoreOnAccess"}, "true"]
    }
    statements = stack["Resources"]["AlarmsFunction"]["Properties"]["Policies"][0]["Statement"]
    (restore,) = [s for s in statements if s.get("Action") == "secretsmanager:RestoreSecret"]
    assert restore["Condition"] == {
        "Fn::If": [
            "RestoreEnabled",
            {"Ref": "AWS::NoValue"},
            {
                "StringEqualsIgnoreCase": {
                    "secretsmanager:ResourceTag/rotor:restore-on-access": "true"
                }
            },
        ]
    }


# The pipeline's roles (infra/bootstrap.yaml): tests/infra/test_deploy_role.py.


# --- cross-account ------------------------------------------------------------------------


def test_the_forwarder_passes_on_every_event_the_stack_routes() -> None:
    forwarder = read_template(INFRA / "forwarder.yaml")
    patterns = [
        r["Properties"]["EventPattern"]
        for r in forwarder["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
    ]
    routed = 0
    for path in SAMPLE_EVENTS:
        event = json.loads(path.read_text())
        # ECS events come from the stack's own account, where the services it redeploys run.
        if route(event) and event["source"] != "aws.ecs":
            routed += 1
            assert any(matches(p, event) for p in patterns), path.name
    assert routed >= 10
    ordinary_read = json.loads(
        (INFRA.parent / "events" / "get-secret-value-success.json").read_text()
    )
    assert not any(matches(p, ordinary_read) for p in patterns)


def test_the_dashboard_body_is_json_once_substituted(stack: dict[str, Any]) -> None:
    import re

    body, variables = stack["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    resources = stack["Resources"]
    for name in names:  # every ${…} is a pseudo parameter, a Sub variable or a resource
        assert name.startswith("AWS::") or name in variables or name.split(".")[0] in resources
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    alarm_widget = next(w for w in widgets if w["type"] == "alarm")
    alarms = [n for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarm_widget["properties"]["alarms"]) >= 7 <= len(alarms)


# --- what watches and keeps the stack's events --------------------------------------------


def test_every_function_has_an_errors_and_a_throttles_alarm(stack: dict[str, Any]) -> None:
    resources = stack["Resources"]
    functions = {n for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    watched = {
        (r["Properties"]["MetricName"], r["Properties"]["Dimensions"][0]["Value"]["Ref"])
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["Namespace"] == "AWS/Lambda"
    }
    assert len(functions) == 5
    assert {(m, f) for m in ("Errors", "Throttles") for f in functions} <= watched


def test_the_archive_keeps_every_event_a_rule_routes(stack: dict[str, Any]) -> None:
    (archive,) = [r for r in stack["Resources"].values() if r["Type"] == "AWS::Events::Archive"]
    pattern = archive["Properties"]["EventPattern"]
    sources = set()
    for path in SAMPLE_EVENTS:
        event = json.loads(path.read_text())
        if route(event):
            sources.add(event["source"])
            assert matches(pattern, event), path.name
    assert sources == {"aws.secretsmanager", "aws.ecs"}
    # Not every ECS event of the account: only the deployment state changes the tracker sees.
    task_change = {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": {}}
    assert not matches(pattern, task_change)
