"""What the stacks do beyond routing: logs that expire, alarms that reach someone, IAM that says
what the code means (opt-in, restore by tag), a bus that takes only Secrets Manager's events,
silenced lint findings that stay justified, and a StackSets recipe CloudFormation accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from orchestration.alarms.use_cases import RESTORE_TAG
from orchestration.events.routing import matches, route
from orchestration.freshness import OPT_TAG
from tests.conftest import REGION, SAMPLE_EVENTS
from tests.infra.conftest import INFRA, ROOT, TEMPLATES, read_template
from tests.infra.test_templates import (  # noqa: F401 - fixtures
    _actions,
    aws,
    create_stack,
    role_policies,
    transformed,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

FUNCTIONS = [
    "RotationFunction",
    "AlarmsFunction",
    "WorkerFunction",
    "TrackerFunction",
    "ReconcileFunction",
]
#: PutRetentionPolicy's valid retentionInDays (CloudWatch Logs API reference).
RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827]
RETENTION_DAYS += [2192, 2557, 2922, 3288, 3653]


# --- log groups ---------------------------------------------------------------------------


def test_every_function_logs_json_to_a_log_group_of_the_stack_with_a_retention(
    stack: dict[str, Any],
    transformed: dict[str, Any],  # noqa: F811
) -> None:
    parameter = stack["Parameters"]["LogRetentionInDays"]
    assert parameter["Type"] == "Number" and parameter["Default"] == 30
    assert parameter["AllowedValues"] == RETENTION_DAYS
    resources = transformed["Resources"]
    groups = {n for n, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert groups == {f"{f}LogGroup" for f in FUNCTIONS}
    for function in FUNCTIONS:
        config = resources[function]["Properties"]["LoggingConfig"]
        assert config["LogGroup"] == {"Ref": f"{function}LogGroup"}, function
        # No Lambda log-level filter: it would take the metrics' EMF lines (JSON without a
        # "level") as INFO and drop them at LogLevel WARNING or ERROR. Powertools filters.
        assert config["LogFormat"] == "Text"
        assert "ApplicationLogLevel" not in config and "SystemLogLevel" not in config
        group = resources[f"{function}LogGroup"]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
        assert group.get("DeletionPolicy", "Delete") == "Delete"  # goes with the stack


def test_the_log_groups_are_created_with_the_retention_given(
    aws: None,  # noqa: F811
    transformed: dict[str, Any],  # noqa: F811
) -> None:
    stack = create_stack(transformed, LogRetentionInDays="90")

    logs = boto3.client("logs", region_name=REGION)
    # (moto keeps the value as the parameter's string: the tests declare Number parameters as
    # strings for moto, see test_templates._for_moto)
    groups = {
        g["logGroupName"]: int(g.get("retentionInDays", 0))
        for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/rotor-")["logGroups"]
    }
    assert groups == {f"/aws/lambda/rotor-{f}": 90 for f in FUNCTIONS}
    assert {stack["resources"][f"{f}LogGroup"] for f in FUNCTIONS} == set(groups)


# --- alarms -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_alarm_of_every_template_notifies_someone(path: Path) -> None:
    for name, resource in read_template(path)["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            assert resource["Properties"].get("AlarmActions"), f"{path.name}: {name}"


def test_the_forwarders_alarm_notifies_its_topic_or_the_one_given() -> None:
    forwarder = read_template(INFRA / "forwarder.yaml")
    alarm = forwarder["Resources"]["ForwarderDeadLetterQueueDepthAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [
        {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
    ]
    resources = forwarder["Resources"]
    assert resources["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    assert resources["AlarmEmailSubscription"]["Properties"]["Endpoint"] == {
        "Ref": "NotificationEmail"
    }
    (publish,) = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    # The README's one-parameter command still deploys it.
    required = [n for n, p in forwarder["Parameters"].items() if "Default" not in p]
    assert required == ["ConsumerAccountId"]


def test_redeploy_jobs_that_nobody_takes_alarm_well_before_they_expire(
    stack: dict[str, Any],
) -> None:
    resources = stack["Resources"]
    (alarm,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    ]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["RedeployQueue", "QueueName"]}}
    ]
    assert alarm["Statistic"] == "Maximum"
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    retention = resources["RedeployQueue"]["Properties"]["MessageRetentionPeriod"]
    parameters = stack["Parameters"]
    # A healthy job's longest life: every put-back at SQS's longest delay (15 min), plus the
    # debounce delay. The alarm must not fire on it, and must leave days to act before SQS
    # deletes the job.
    longest_normal = (
        parameters["RedeployMaxReceives"]["MaxValue"] * 900
        + parameters["DebounceSeconds"]["MaxValue"]
    )
    assert longest_normal < alarm["Threshold"] <= retention / 2
    dashboard = json.dumps(resources["Dashboard"]["Properties"]["DashboardBody"])
    assert "${RedeployQueueAgeAlarm.Arn}" in dashboard


# --- IAM: opt-in, restore by tag, the bus -------------------------------------------------


def _update_service(statements: list[dict[str, Any]]) -> dict[str, Any]:
    (update,) = [s for s in statements if "ecs:UpdateService" in _actions([s])]
    assert _actions([update]) == {"ecs:UpdateService"}
    return update


#: Every ECS service and DescribeSecret statement of the rotation and worker roles is held to
#: the stack's own region (and ActRegions, below).
OWN_REGION = {"StringEquals": {"aws:RequestedRegion": [REGION]}}


def test_with_opt_in_the_worker_may_redeploy_only_services_tagged_for_it(
    aws: None,  # noqa: F811
    transformed: dict[str, Any],  # noqa: F811
) -> None:
    tag = {"StringEqualsIgnoreCase": {f"aws:ResourceTag/{OPT_TAG}": "true"}}
    stack = create_stack(transformed, OptIn="true")

    worker = role_policies(stack["resources"]["WorkerFunctionRole"])
    assert _update_service(worker)["Condition"] == {**OWN_REGION, **tag}
    # Reading a service is not redeploying it: discovery still sees every service.
    (describe,) = [s for s in worker if "ecs:DescribeServices" in _actions([s])]
    assert describe["Condition"] == OWN_REGION


def test_with_opt_in_and_clusters_both_conditions_hold(
    aws: None,  # noqa: F811
    transformed: dict[str, Any],  # noqa: F811
) -> None:
    stack = create_stack(transformed, OptIn="true", ClusterNames="prod")

    update = _update_service(role_policies(stack["resources"]["WorkerFunctionRole"]))
    assert update["Condition"] == {
        **OWN_REGION,
        "StringLike": {"ecs:cluster": ["*:cluster/prod"]},
        "StringEqualsIgnoreCase": {f"aws:ResourceTag/{OPT_TAG}": "true"},
    }


def test_without_opt_in_the_worker_may_redeploy_any_service_in_scope(
    aws: None,  # noqa: F811
    transformed: dict[str, Any],  # noqa: F811
) -> None:
    stack = create_stack(transformed)

    update = _update_service(role_policies(stack["resources"]["WorkerFunctionRole"]))
    assert update["Condition"] == OWN_REGION


@pytest.mark.parametrize("role", ["RotationFunctionRole", "WorkerFunctionRole"])
def test_act_regions_widen_the_ecs_and_describe_secret_statements_to_those_regions_only(
    aws: None,  # noqa: F811
    transformed: dict[str, Any],  # noqa: F811
    role: str,
) -> None:
    """A replica's consumers are in other regions: with ActRegions, the roles may describe
    and (the worker) redeploy services, and describe secrets, there too, and nowhere else."""
    stack = create_stack(transformed, ActRegions="eu-west-1,eu-central-1", ClusterNames="prod")
    statements = role_policies(stack["resources"][role])
    scoped = [
        s
        for s in statements
        if _actions([s])
        & {"ecs:DescribeServices", "ecs:UpdateService", "secretsmanager:DescribeSecret"}
    ]
    assert len(scoped) == (3 if role == "WorkerFunctionRole" else 2)
    for statement in scoped:
        regions = statement["Condition"]["StringEquals"]["aws:RequestedRegion"]
        assert regions == [REGION, "eu-west-1", "eu-central-1"], statement
        assert ":*:" in statement["Resource"]  # any region's ARN, the request's region held
    # Every other ECS or Secrets Manager statement too: one on "*" (ListServices, ListClusters,
    # DescribeTaskDefinition) would otherwise allow its calls in every region.
    for statement in statements:
        if any(a.startswith(("ecs:", "secretsmanager:")) for a in _actions([statement])):
            regions = statement.get("Condition", {}).get("StringEquals", {})
            assert regions.get("aws:RequestedRegion") == [REGION, "eu-west-1", "eu-central-1"], (
                statement
            )
    # The alarms function acts in its own region only.
    alarms = role_policies(stack["resources"]["AlarmsFunctionRole"])
    assert all(f":{REGION}:" in str(s["Resource"]) or s["Resource"] == "*" for s in alarms)


@pytest.mark.parametrize("role", ["AlarmsFunctionRole", "ReconcileFunctionRole"])
def test_the_functions_that_act_in_their_own_region_only_may_call_there_only(
    aws: None,  # noqa: F811
    transformed: dict[str, Any],  # noqa: F811
    role: str,
) -> None:
    """The alarms function and the reconciler call ECS, Secrets Manager and CloudTrail in the
    stack's region alone, ActRegions or not: a statement on "*" or on any region's ARN (ECS's
    List* and DescribeTaskDefinition, CloudTrail's LookupEvents) would allow their calls in
    every region, so it holds the request's region to the stack's (aws:RequestedRegion)."""
    stack = create_stack(transformed, ActRegions="eu-west-1,eu-central-1")
    statements = role_policies(stack["resources"][role])
    checked = 0
    for statement in statements:
        if not any(
            a.startswith(("ecs:", "secretsmanager:", "cloudtrail:")) for a in _actions([statement])
        ):
            continue
        resource = str(statement["Resource"])
        if resource == "*" or resource.split(":")[3:4] == ["*"]:
            regions = statement.get("Condition", {}).get("StringEquals", {})
            assert regions.get("aws:RequestedRegion") == [REGION], statement
        else:
            assert resource.split(":")[3] == REGION, statement
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("role", ["RotationFunctionRole", "WorkerFunctionRole"])
def test_without_act_regions_every_ecs_and_secrets_statement_is_held_to_the_stacks_region(
    aws: None,  # noqa: F811
    transformed: dict[str, Any],  # noqa: F811
    role: str,
) -> None:
    statements = role_policies(create_stack(transformed)["resources"][role])
    for statement in statements:
        if any(a.startswith(("ecs:", "secretsmanager:")) for a in _actions([statement])):
            regions = statement.get("Condition", {}).get("StringEquals", {})
            assert regions.get("aws:RequestedRegion") == [REGION], statement


def test_the_functions_are_told_the_regions_their_roles_allow() -> None:
    env = read_template(INFRA / "template.yaml")["Globals"]["Function"]["Environment"]
    assert env["Variables"]["ROTOR_REGIONS"] == {"Fn::Join": [",", {"Ref": "ActRegions"}]}


def test_the_tags_iam_checks_are_the_tags_the_code_reads(stack: dict[str, Any]) -> None:
    text = json.dumps(stack["Resources"])
    assert f"aws:ResourceTag/{OPT_TAG}" in text
    assert f"secretsmanager:ResourceTag/{RESTORE_TAG}" in text


def _policy_statements(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            found.append(node)
        for value in node.values():
            found += _policy_statements(value)
    elif isinstance(node, list):
        for value in node:
            found += _policy_statements(value)
    return found


def _condition_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for operator, value in node.items():
            if operator.startswith("Fn::"):
                keys |= _condition_keys(value)
            elif isinstance(value, dict):
                keys |= _operator_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= _condition_keys(value)
    return keys


def _operator_keys(block: dict[str, Any]) -> set[str]:
    """The keys one condition operator tests, through an ``Fn::If`` between blocks."""
    if "Fn::If" in block:
        _, then, otherwise = block["Fn::If"]
        return {k for b in (then, otherwise) if isinstance(b, dict) for k in _operator_keys(b)}
    return set() if "Ref" in block else set(block)


def test_every_resource_tag_condition_is_one_its_actions_support(stack: dict[str, Any]) -> None:
    """A tag condition on an action whose resources do not carry that key never matches: the
    Service Authorization Reference's data (as cfn-lint ships it) decides."""
    from cfnlint.data import AdditionalSpecs
    from cfnlint.helpers import load_resource

    policies = load_resource(AdditionalSpecs, "Policies.json")
    checked = 0
    for statement in _policy_statements(stack["Resources"]):
        keys = {k for k in _condition_keys(statement.get("Condition", {})) if "ResourceTag/" in k}
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            service, name = action.split(":")
            data = policies[service]
            supported: set[str] = set()
            for resource in data["Actions"][name.lower()].get("Resources", []):
                resource_keys = data["Resources"][resource.lower()].get("ConditionKeys", [])
                supported |= {re.sub(r"\$\{TagKey\}|tag-key$", "*", k) for k in resource_keys}
            for key in keys:
                general = re.sub(r"/.*$", "/*", key)
                assert general in supported, f"{action} does not support {key}"
                checked += 1
    assert checked == 2  # UpdateService (opt-in), RestoreSecret (restore by tag)


def test_the_bus_takes_only_secrets_manager_events_from_trusted_accounts(
    stack: dict[str, Any],
) -> None:
    policy = stack["Resources"]["TrustedAccountsBusPolicy"]["Properties"]
    statement = policy["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Principal"] == {"AWS": {"Ref": "TrustedAccounts"}}
    assert statement["Condition"] == {"StringEquals": {"events:source": "aws.secretsmanager"}}
    # Everything the forwarder sends passes the condition.
    forwarder = read_template(INFRA / "forwarder.yaml")
    patterns = [
        r["Properties"]["EventPattern"]
        for r in forwarder["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
    ]
    forwarded = [
        event
        for path in SAMPLE_EVENTS
        for event in [json.loads(path.read_text())]
        if route(event) and any(matches(p, event) for p in patterns)
    ]
    assert forwarded and {e["source"] for e in forwarded} == {"aws.secretsmanager"}
    assert all(p["source"] == ["aws.secretsmanager"] for p in patterns)


# --- lint findings silenced in the templates ----------------------------------------------


def _silenced(template: dict[str, Any]) -> dict[str, set[str]]:
    found = {}
    for name, resource in template["Resources"].items():
        config = resource.get("Metadata", {}).get("cfn-lint", {}).get("config", {})
        if config.get("ignore_checks"):
            found[name] = set(config["ignore_checks"])
    return found


def _dead_letter_queues(template: dict[str, Any]) -> set[str]:
    """Queues something sends its failures to: redrive targets, rule and invoke destinations."""
    text = json.dumps(template["Resources"])
    targets = set(re.findall(r'"deadLetterTargetArn": \{"Fn::GetAtt": \["(\w+)", "Arn"\]', text))
    targets |= set(re.findall(r'"DeadLetterConfig": \{"Arn": \{"Fn::GetAtt": \["(\w+)"', text))
    targets |= set(re.findall(r'"Destination": \{"Fn::GetAtt": \["(\w+)", "Arn"\]', text))
    return targets


def _alarmed_queues(template: dict[str, Any]) -> set[str]:
    return {
        r["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_each_silenced_lint_finding_still_holds_its_reason(path: Path) -> None:
    """cfn-lint's serverless rules (run by .ci/run) are silenced resource by resource; each
    silencing stays true only while the reason given beside it does."""
    template = read_template(path)
    resources = template["Resources"]
    for name, checks in _silenced(template).items():
        resource = resources[name]
        props = resource["Properties"]
        for check in checks:
            if check == "WS1004":  # its log group is named in LoggingConfig, with a retention
                group = props["LoggingConfig"]["LogGroup"]["Ref"]
                assert "RetentionInDays" in resources[group]["Properties"], name
            elif check in ("ES1007", "ES4000") and "Events" in props:  # a scheduled pass
                # nothing to keep: no retry (the next pass is it), and its failures alarm
                events = props["Events"].values()
                assert [e["Type"] for e in events] == ["Schedule"], name
                assert props["EventInvokeConfig"]["MaximumRetryAttempts"] == 0, name
                assert any(
                    r["Type"] == "AWS::CloudWatch::Alarm"
                    and r["Properties"]["MetricName"] == "Errors"
                    and r["Properties"]["Dimensions"][0]["Value"] == {"Ref": name}
                    for r in resources.values()
                ), name
            elif check == "ES1007":  # the function's EventInvokeConfig has OnFailure
                function = resources[props["FunctionName"]["Ref"]]["Properties"]
                assert function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"], name
            elif check == "ES6000":  # a dead-letter queue, alarmed
                assert name in _dead_letter_queues(template), name
                assert name in _alarmed_queues(template), name
            elif check == "ES1001":  # an SQS source: failures go to the queue's redrive policy
                queue = props["EventSourceArn"]["Fn::GetAtt"][0]
                assert resources[queue]["Type"] == "AWS::SQS::Queue"
                assert "RedrivePolicy" in resources[queue]["Properties"], name
            elif check == "ES7000":  # e-mail only
                assert props["Protocol"] == "email", name
            else:
                pytest.fail(f"{path.name}: {name} silences {check} with no reason checked here")


def test_what_is_silenced_is_what_was_reviewed() -> None:
    silenced = {
        path.name: {n: sorted(c) for n, c in _silenced(read_template(path)).items()}
        for path in TEMPLATES
    }
    stack = silenced["template.yaml"]
    assert {n for n, c in stack.items() if c == ["WS1004"]} == set(FUNCTIONS) - {
        "ReconcileFunction"
    }
    assert stack["ReconcileFunction"] == ["ES1007", "ES4000", "WS1004"]  # scheduled
    assert len([n for n, c in stack.items() if c == ["ES1007"]]) == 6
    assert len([n for n, c in stack.items() if c == ["ES6000"]]) == 4
    assert stack["WorkerRedeployJobs"] == ["ES1001"]
    assert stack["NotificationEmailSubscription"] == ["ES7000"]
    assert len(stack) == 5 + 6 + 4 + 2
    assert silenced["forwarder.yaml"] == {
        "ForwarderDeadLetterQueue": ["ES6000"],
        "AlarmEmailSubscription": ["ES7000"],
    }
    # Each silencing has its reason beside it, in a comment.
    for path in TEMPLATES:
        text = path.read_text()
        for check in re.findall(r"^\s+- ([EWI][S]?\d{4})\s*$", text, re.MULTILINE):
            assert re.search(rf"# {check} \(", text), f"{path.name}: {check} has no reason"


# --- StackSets ----------------------------------------------------------------------------

#: CloudFormation's limits on a template passed in the request (--template-body) and from S3.
TEMPLATE_BODY_LIMIT = 51_200
TEMPLATE_URL_LIMIT = 1_000_000


def test_the_stacksets_recipe_uploads_the_template_the_transform_outgrows(
    transformed: dict[str, Any],  # noqa: F811
) -> None:
    size = len(json.dumps(transformed, separators=(",", ":")).encode())
    source = len((INFRA / "template.yaml").read_bytes())
    # Too big to pass in the request, before or after the SAM transform: from S3 it is fine.
    assert max(size, source) > TEMPLATE_BODY_LIMIT
    assert size < TEMPLATE_URL_LIMIT
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    recipes = []
    for doc in docs:
        for command in re.findall(
            r"aws cloudformation (?:create|update)-stack-set[^`]*", doc.read_text()
        ):
            if "forwarder" not in command:
                recipes.append(command)
                assert "--template-body" not in command, doc.name
                assert "--template-url" in command, doc.name
    assert len(recipes) >= 2  # create and update
