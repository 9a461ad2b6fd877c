"""The deploy role of infra/gitlab-oidc.yaml can create, update and delete everything the rotor
stack has, and only that.

NEEDS is the table: for each resource type of the transformed stack, the IAM actions
CloudFormation calls to manage it (for the properties rotor uses), on the ARN that resource
gets when CloudFormation names it inside a stack called ``rotor``, with the request context
that IAM conditions see. A small evaluator checks each against the role's policy (Allow
statements with Action, Resource and the condition operators the role uses; an explicit Deny
wins). A resource type the table does not know fails the test, so a new kind of resource in
template.yaml cannot ship without the role being checked for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import pytest

from tests.infra.conftest import INFRA, read_template
from tests.infra.test_templates import sam_transform

STACK = "rotor"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
BUCKET = "rotor-gitlab-oidc-artifactsbucket-1a2b3c"
PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}"


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    context: dict[str, str | list[str]] = field(default_factory=dict)


def _arn(service: str, rest: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{rest}"


FUNCTION = f"{PREFIX}:function:{STACK}-WorkerFunction-AbCdEf123456"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-WorkerFunctionRole-AbCdEf123456"
KEY = _arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab")
OWN_KEY = {"aws:ResourceTag/rotor:stack": STACK}
QUEUE = _arn("sqs", f"{STACK}-RedeployQueue-AbCdEf123456")
TOPIC = _arn("sns", f"{STACK}-NotificationTopic-AbCdEf123456")


def _each(resource: str, *actions: str, **context: Any) -> list[Need]:
    return [Need(a, resource, dict(context)) for a in actions]


NEEDS: dict[str, list[Need]] = {
    "AWS::IAM::Role": [
        *_each(
            ROLE,
            "iam:CreateRole",
            "iam:GetRole",
            "iam:DeleteRole",
            "iam:TagRole",
            "iam:UntagRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:PutRolePolicy",
            "iam:GetRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:ListRolePolicies",
            "iam:ListAttachedRolePolicies",
        ),
        *[
            Need(a, ROLE, {"iam:PolicyARN": f"arn:aws:iam::aws:policy/{p}"})
            for a in ("iam:AttachRolePolicy", "iam:DetachRolePolicy")
            for p in ("service-role/AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess")
        ],
    ],
    "AWS::Lambda::Function": [
        *_each(
            FUNCTION,
            "lambda:CreateFunction",
            "lambda:GetFunction",
            "lambda:GetFunctionConfiguration",
            "lambda:UpdateFunctionCode",
            "lambda:UpdateFunctionConfiguration",
            "lambda:DeleteFunction",
            "lambda:PutFunctionConcurrency",
            "lambda:DeleteFunctionConcurrency",
            "lambda:TagResource",
            "lambda:UntagResource",
            "lambda:ListTags",
            "lambda:GetRuntimeManagementConfig",
            "lambda:GetFunctionCodeSigningConfig",
        ),
        Need("iam:PassRole", ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
        Need("s3:GetObject", f"arn:aws:s3:::{BUCKET}/rotor/0123abcd"),
    ],
    "AWS::Lambda::Permission": _each(
        FUNCTION, "lambda:AddPermission", "lambda:RemovePermission", "lambda:GetPolicy"
    ),
    "AWS::Lambda::EventInvokeConfig": _each(
        FUNCTION,
        "lambda:PutFunctionEventInvokeConfig",
        "lambda:UpdateFunctionEventInvokeConfig",
        "lambda:DeleteFunctionEventInvokeConfig",
        "lambda:GetFunctionEventInvokeConfig",
    ),
    "AWS::Lambda::EventSourceMapping": [
        Need("lambda:CreateEventSourceMapping", "*", {"lambda:FunctionArn": FUNCTION}),
        *_each(
            f"{PREFIX}:event-source-mapping:6d9b1c47-0000-4000-8000-000000000001",
            "lambda:UpdateEventSourceMapping",
            "lambda:DeleteEventSourceMapping",
            **{"lambda:FunctionArn": FUNCTION},
        ),
        Need(
            "lambda:GetEventSourceMapping",
            f"{PREFIX}:event-source-mapping:6d9b1c47-0000-4000-8000-000000000001",
        ),
    ],
    "AWS::Events::Rule": _each(
        _arn("events", f"rule/{STACK}-ValueChangesRule-AbCdEf123456"),
        "events:PutRule",
        "events:DeleteRule",
        "events:DescribeRule",
        "events:PutTargets",
        "events:RemoveTargets",
        "events:ListTargetsByRule",
    ),
    "AWS::Events::Archive": _each(
        _arn("events", "archive/SecretsEventsArchive-AbCdEf123456"),
        "events:CreateArchive",
        "events:UpdateArchive",
        "events:DeleteArchive",
        "events:DescribeArchive",
    ),
    "AWS::Events::EventBusPolicy": _each(
        _arn("events", "event-bus/default"),
        "events:PutPermission",
        "events:RemovePermission",
        "events:DescribeEventBus",
    ),
    "AWS::SQS::Queue": _each(
        QUEUE,
        "sqs:CreateQueue",
        "sqs:DeleteQueue",
        "sqs:GetQueueAttributes",
        "sqs:SetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:TagQueue",
        "sqs:ListQueueTags",
    ),
    "AWS::SQS::QueuePolicy": _each(QUEUE, "sqs:SetQueueAttributes", "sqs:GetQueueAttributes"),
    "AWS::DynamoDB::Table": _each(
        _arn("dynamodb", f"table/{STACK}-StateTable-AbCdEf123456"),
        "dynamodb:CreateTable",
        "dynamodb:DeleteTable",
        "dynamodb:DescribeTable",
        "dynamodb:UpdateTable",
        "dynamodb:UpdateTimeToLive",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:UpdateContinuousBackups",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:ListTagsOfResource",
    ),
    "AWS::KMS::Key": [
        Need(
            "kms:CreateKey",
            "*",
            {"aws:RequestTag/rotor:stack": STACK, "aws:TagKeys": ["rotor:stack"]},
        ),
        Need(  # the tag given to CreateKey
            "kms:TagResource",
            "*",
            {"aws:RequestTag/rotor:stack": STACK, "aws:TagKeys": ["rotor:stack"]},
        ),
        *_each(
            KEY,
            "kms:DescribeKey",
            "kms:GetKeyPolicy",
            "kms:PutKeyPolicy",
            "kms:EnableKeyRotation",
            "kms:GetKeyRotationStatus",
            "kms:UpdateKeyDescription",
            "kms:ListResourceTags",
            **OWN_KEY,
        ),
    ],
    "AWS::KMS::Alias": [
        *_each(
            _arn("kms", f"alias/{STACK}-notifications"),
            "kms:CreateAlias",
            "kms:DeleteAlias",
            "kms:UpdateAlias",
        ),
        *_each(KEY, "kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias", **OWN_KEY),
        Need("kms:ListAliases", "*"),
    ],
    "AWS::SNS::Topic": _each(
        TOPIC,
        "sns:CreateTopic",
        "sns:DeleteTopic",
        "sns:GetTopicAttributes",
        "sns:SetTopicAttributes",
        "sns:TagResource",
        "sns:UntagResource",
        "sns:ListTagsForResource",
    ),
    "AWS::SNS::TopicPolicy": _each(TOPIC, "sns:SetTopicAttributes", "sns:GetTopicAttributes"),
    "AWS::SNS::Subscription": [
        Need("sns:Subscribe", TOPIC),
        *_each(
            f"{TOPIC}:0f1e2d3c-0000-4000-8000-000000000001",
            "sns:Unsubscribe",
            "sns:GetSubscriptionAttributes",
        ),
    ],
    "AWS::Logs::MetricFilter": _each(
        _arn("logs", "log-group:cloudtrail"),
        "logs:PutMetricFilter",
        "logs:DeleteMetricFilter",
        "logs:DescribeMetricFilters",
    ),
    "AWS::CloudWatch::Alarm": _each(
        _arn("cloudwatch", f"alarm:{STACK}-WorkerFunctionThrottlesAlarm-AbCdEf123456"),
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DeleteAlarms",
        "cloudwatch:DescribeAlarms",
    ),
    "AWS::CloudWatch::Dashboard": _each(
        _arn("cloudwatch", f"dashboard/{STACK}-{REGION}", region=""),
        "cloudwatch:PutDashboard",
        "cloudwatch:DeleteDashboards",
        "cloudwatch:GetDashboard",
    ),
}


# --- a small IAM evaluator ----------------------------------------------------------------


def _resolve(node: Any) -> Any:
    """The role's policy with the oidc stack's parameters and pseudo parameters filled in."""
    values = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "RotorStackName": STACK,
        "ArtifactsBucket.Arn": f"arn:aws:s3:::{BUCKET}",
    }
    if isinstance(node, dict):
        if "Fn::Sub" in node:
            return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], node["Fn::Sub"])
        if "Ref" in node:
            return values[node["Ref"]]
        if "Fn::GetAtt" in node:
            return values[".".join(node["Fn::GetAtt"])]
        return {k: _resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    return node


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, Any]) -> bool:
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            wanted = [str(w) for w in _listed(wanted)]
            if key not in context:
                return False  # IAM: a condition on a key the request lacks does not match
            given = context[key]
            if operator == "ForAllValues:StringEquals":
                if not all(g in wanted for g in _listed(given)):
                    return False
            elif operator in ("StringEquals", "ArnEquals"):
                if given not in wanted:
                    return False
            elif operator in ("StringLike", "ArnLike"):
                if not any(fnmatchcase(given, w) for w in wanted):
                    return False
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
    return True


def _applies(statement: dict[str, Any], need: Need) -> bool:
    actions = [a.lower() for a in _listed(statement["Action"])]
    if need.action.lower() not in actions:
        return False
    if not any(fnmatchcase(need.resource, r) for r in _listed(statement["Resource"])):
        return False
    return _condition_holds(statement.get("Condition", {}), need.context)


def allowed(statements: list[dict[str, Any]], need: Need) -> bool:
    if any(s["Effect"] == "Deny" and _applies(s, need) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _applies(s, need) for s in statements)


@pytest.fixture(scope="module")
def deploy_role() -> list[dict[str, Any]]:
    role = read_template(INFRA / "gitlab-oidc.yaml")["Resources"]["DeployRole"]
    return [
        statement
        for policy in role["Properties"]["Policies"]
        for statement in _resolve(policy["PolicyDocument"])["Statement"]
    ]


@pytest.fixture(scope="module")
def resource_types(stack: dict[str, Any]) -> set[str]:
    import os

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return {r["Type"] for r in sam_transform(stack)["Resources"].values()}


def test_the_table_knows_every_resource_type_of_the_stack(resource_types: set[str]) -> None:
    assert resource_types - set(NEEDS) == set()


def test_the_deploy_role_can_manage_everything_the_stack_has(
    deploy_role: list[dict[str, Any]], resource_types: set[str]
) -> None:
    missing = [
        f"{kind}: {need.action} on {need.resource} {need.context or ''}"
        for kind in sorted(resource_types)
        for need in NEEDS[kind]
        if not allowed(deploy_role, need)
    ]
    assert missing == []


@pytest.mark.parametrize(
    "need",
    [
        # Another key of the account: its policy stays out of reach.
        Need("kms:PutKeyPolicy", KEY),
        Need("kms:PutKeyPolicy", KEY, {"aws:ResourceTag/rotor:stack": "someone-else"}),
        Need("kms:ScheduleKeyDeletion", KEY, OWN_KEY),
        # Tagging another key as the stack's, or with any other tag.
        Need("kms:TagResource", KEY, {"aws:TagKeys": ["rotor:stack"]}),
        Need(
            "kms:TagResource",
            KEY,
            {"aws:RequestTag/rotor:stack": STACK, "aws:TagKeys": ["rotor:stack", "owner"]},
        ),
        Need("kms:CreateKey", "*"),
        # Event sources for another stack's functions.
        Need(
            "lambda:CreateEventSourceMapping",
            "*",
            {"lambda:FunctionArn": f"{PREFIX}:function:payments-Worker"},
        ),
        Need("lambda:CreateEventSourceMapping", "*"),
        # Roles and functions outside the stack.
        Need("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/admin"),
        Need("iam:PassRole", ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}),
        Need("lambda:UpdateFunctionCode", f"{PREFIX}:function:payments-Worker"),
        Need("secretsmanager:GetSecretValue", "*"),
    ],
    ids=lambda n: f"{n.action}-{sorted(n.context.items())}",
)
def test_the_deploy_role_refuses_what_is_not_the_stacks(
    deploy_role: list[dict[str, Any]], need: Need
) -> None:
    assert not allowed(deploy_role, need)


def test_the_stacks_key_carries_the_tag_the_deploy_role_asks_for(stack: dict[str, Any]) -> None:
    (key,) = [r for r in stack["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    assert {"Key": "rotor:stack", "Value": {"Ref": "AWS::StackName"}} in key["Properties"]["Tags"]
