"""What the account must provide before rotor works, checked by reading it (``rotor doctor``).

rotor's rules fire on what EventBridge delivers, and most of that comes from CloudTrail: every
rule except the native "Secret Label Updated" matches a CloudTrail detail-type, which
EventBridge delivers only for management events a trail logs in the region. Without one,
failed rotations, deletions, ``PutSecretValue``, ``UpdateSecret`` and (read events) reads of
secrets scheduled for deletion never reach rotor, and nothing says so. The other
prerequisites: the stack's rules enabled in the state the template gives them, room in the
account's Lambda concurrency for the functions' reservations (Lambda keeps 100 unreserved),
the state table, redeploy queue and topic reachable, and for secrets of other accounts the
default bus's policy and the forwarder stack in the account that owns them.

Every check reads; nothing here writes or reads a secret. ``READ_OPERATIONS`` lists every
call made (the IAM actions ``rotor doctor`` needs; docs/operations.md), and a test records
the calls of a full run against it. What the checks expect comes from the templates shipped
in the package (``infra/template.yaml``, ``infra/forwarder.yaml``): the rules and their
states, the functions' reserved concurrency and its parameters, which resources the
``ROTOR_*`` settings name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from importlib import resources
from typing import Any, TypeVar

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.errors import AwsCallError, PermanentAwsError, RetryableAwsError
from orchestration.events.routing import Rule, load_template, rules_of

T = TypeVar("T")

_ACCOUNT_ID = re.compile(r"\b\d{12}\b")
DEFAULT_STACK = "rotor"  # infra/samconfig.toml's stack_name
FORWARDER_TEMPLATE = "forwarder.yaml"
#: Lambda refuses a reservation that leaves the account fewer unreserved executions than this.
MIN_UNRESERVED_CONCURRENCY = 100
#: Service Quotas' code of Lambda's "Concurrent executions".
LAMBDA_CONCURRENCY_QUOTA = "L-B99A9384"
ALL_MANAGEMENT_EVENTS = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
SECRETS_MANAGER = "secretsmanager.amazonaws.com"
#: Stack states in which the stack's resources are the template's (the last update's or, after
#: a rolled-back update, the one before).
STACK_READY = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
    }
)
#: The ``ROTOR_*`` settings the template's Globals point at the stack's resources, and what
#: each check is called.
RESOURCE_SETTINGS = (
    ("ROTOR_STATE_TABLE", "state-table", "state table"),
    ("ROTOR_REDEPLOY_QUEUE_URL", "redeploy-queue", "redeploy queue"),
    ("ROTOR_TOPIC_ARN", "notification-topic", "notification topic"),
)
#: Every call ``rotor doctor`` makes, as IAM actions: all reads (no write, no secret value).
READ_OPERATIONS = frozenset(
    {
        "cloudtrail:DescribeTrails",
        "cloudtrail:GetTrailStatus",
        "cloudtrail:GetEventSelectors",
        "cloudformation:DescribeStacks",
        "cloudformation:ListStackResources",
        "events:DescribeRule",
        "events:ListTargetsByRule",
        "events:DescribeEventBus",
        "lambda:GetAccountSettings",
        "lambda:GetFunctionConcurrency",
        "dynamodb:DescribeTable",
        "sqs:GetQueueAttributes",
        "sns:GetTopicAttributes",
    }
)
#: Failures of the whole run (no credentials, a bad token), not of one check.
_FATAL_CODES = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
_NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "TrailNotFoundException",
        "NotFound",
        "NotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)
_DEPLOY_ROTOR = "cd infra && sam build && sam deploy --guided (see README, Deploying)"
_CREATE_TRAIL = (
    "create a trail that logs management events in every region and start it: "
    "aws cloudtrail create-trail --name management-events --s3-bucket-name <bucket with "
    "CloudTrail's bucket policy> --is-multi-region-trail && aws cloudtrail start-logging "
    "--name management-events (a new trail logs read and write management events)"
)


class CheckStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"
    UNKNOWN = "unknown"  # could not be read (access denied, …): it may or may not hold
    SKIPPED = "skipped"  # does not apply to this set-up


@dataclass(frozen=True, slots=True)
class Check:
    """One prerequisite: whether it holds, what was found, and what to do when it does not."""

    name: str  # stable: cloudtrail, stack, rule:<logical id>, concurrency, state-table, …
    status: CheckStatus
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "fix": self.fix or None,
        }


@dataclass(frozen=True, slots=True)
class DoctorScope:
    """What to check: the region, the rotor stack, the forwarder stack (cross-account), and the
    ``ROTOR_*`` settings that name resources when no stack does."""

    region: str
    stack: str | None = DEFAULT_STACK
    forwarder_stack: str | None = None
    state_table: str | None = None
    redeploy_queue_url: str | None = None
    topic_arn: str | None = None
    trusted_accounts: tuple[str, ...] = ()

    def setting(self, variable: str) -> str | None:
        return {
            "ROTOR_STATE_TABLE": self.state_table,
            "ROTOR_REDEPLOY_QUEUE_URL": self.redeploy_queue_url,
            "ROTOR_TOPIC_ARN": self.topic_arn,
        }.get(variable)


@dataclass(frozen=True, slots=True)
class DoctorReport:
    scope: DoctorScope
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Every prerequisite that applies holds (and could be read)."""
        return not self.problems

    @property
    def problems(self) -> tuple[Check, ...]:
        return tuple(
            c for c in self.checks if c.status in (CheckStatus.MISSING, CheckStatus.UNKNOWN)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.scope.region,
            "stack": self.scope.stack,
            "forwarder_stack": self.scope.forwarder_stack,
            "ok": self.ok,
            "missing": sum(c.status is CheckStatus.MISSING for c in self.checks),
            "unknown": sum(c.status is CheckStatus.UNKNOWN for c in self.checks),
            "checks": [c.to_dict() for c in self.checks],
        }


def check_prerequisites(
    clients: AwsClients, scope: DoctorScope, retry: RetryPolicy | None = None
) -> DoctorReport:
    """Read the account and report each prerequisite of ``scope``. Reads only."""
    doctor = _Doctor(clients, retry or RetryPolicy(max_attempts=4))
    checks: list[Check] = [doctor.guard("cloudtrail", lambda: doctor.trail(scope.region))]
    if scope.stack:
        checks.extend(doctor.rotor_stack(scope.stack, scope))
    if scope.forwarder_stack:
        checks.extend(doctor.forwarder_stack(scope.forwarder_stack))
    return DoctorReport(scope, tuple(checks))


# --- CloudTrail event selectors ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage:
    """Which of Secrets Manager's management events a trail's selectors log."""

    reads: bool
    writes: bool
    unchecked: tuple[str, ...] = ()  # advanced selector fields rotor cannot evaluate

    def describe(self) -> str:
        if self.reads and self.writes:
            return "logs read and write management events"
        if self.writes:
            return "logs write management events only (no reads)"
        if self.reads:
            return "logs read-only management events only (no writes)"
        return "logs no management events of Secrets Manager"


def management_coverage(selectors: Mapping[str, Any], *, custom: bool | None = None) -> Coverage:
    """What ``GetEventSelectors`` says a trail logs of Secrets Manager's management events.

    A trail whose selectors were never set logs every read and write management event
    (CloudTrail's default); basic selectors say so with ``IncludeManagementEvents`` and
    ``ReadWriteType``; advanced selectors are evaluated for an event of category
    ``Management`` from ``secretsmanager.amazonaws.com``, once read-only and once not.
    """
    basic = list(selectors.get("EventSelectors") or [])
    advanced = list(selectors.get("AdvancedEventSelectors") or [])
    if not basic and not advanced:
        default = not custom
        return Coverage(reads=default, writes=default)
    reads = writes = False
    for selector in basic:
        if selector.get("IncludeManagementEvents", True) is False:
            continue
        if SECRETS_MANAGER in (selector.get("ExcludeManagementEventSources") or []):
            continue
        kind = selector.get("ReadWriteType", "All")
        reads |= kind in ("All", "ReadOnly")
        writes |= kind in ("All", "WriteOnly")
    unchecked: set[str] = set()
    for selector in advanced:
        fields = list(selector.get("FieldSelectors") or [])
        for read_only in ("true", "false"):
            event = {"eventCategory": "Management", "eventSource": SECRETS_MANAGER}
            event["readOnly"] = read_only
            if all(_field_matches(f, event, unchecked) for f in fields):
                if read_only == "true":
                    reads = True
                else:
                    writes = True
    return Coverage(reads=reads, writes=writes, unchecked=tuple(sorted(unchecked)))


def _field_matches(
    selector: Mapping[str, Any], event: Mapping[str, str], unchecked: set[str]
) -> bool:
    """One advanced field selector against an event's fields; its operators are ANDed. A field
    rotor cannot know for the events it needs (``userIdentity.arn``, …) is taken to match and
    named, so the report says the trail filters on it."""
    name = str(selector.get("Field", ""))
    if name not in event:
        unchecked.add(name)
        return True
    value = event[name]
    tests: dict[str, Callable[[str], bool]] = {
        "Equals": lambda v: value == v,
        "StartsWith": value.startswith,
        "EndsWith": value.endswith,
    }
    for operator, test in tests.items():
        if operator in selector and not any(test(str(v)) for v in selector[operator]):
            return False
        negated = f"Not{operator}"
        if negated in selector and any(test(str(v)) for v in selector[negated]):
            return False
    return True


# --- the checks ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stack:
    name: str
    status: str
    parameters: Mapping[str, str]
    resources: Mapping[str, str]  # logical id -> physical id


@dataclass(frozen=True, slots=True)
class _TrailFinding:
    name: str
    where: str
    home: str  # changes to a trail are made in its home region
    logging: bool = False
    coverage: Coverage = field(default_factory=lambda: Coverage(reads=False, writes=False))
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.logging and self.coverage.reads and self.coverage.writes

    def describe(self) -> str:
        if self.error:
            return f"trail {self.name} ({self.where}): could not read: {self.error}"
        state = self.coverage.describe() + ("" if self.logging else ", but is not logging")
        if self.coverage.unchecked:
            state += f" (also filtered on {', '.join(self.coverage.unchecked)}: not checked)"
        return f"trail {self.name} ({self.where}) {state}"


class _Doctor:
    def __init__(self, clients: AwsClients, retry: RetryPolicy) -> None:
        self.clients = clients
        self.retry = retry
        self._regions: dict[str, AwsClients] = {}  # clients of trails' home regions

    def _in_region(self, region: str) -> AwsClients:
        if region == self.clients.region:
            return self.clients
        if region not in self._regions:
            self._regions[region] = AwsClients(
                self.clients.session,
                region=region,
                endpoint_url=self.clients.endpoint_url,
                config=self.clients.config,
            )
        return self._regions[region]

    def call(self, action: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """One read, named by its IAM action (so an AccessDenied says what to grant)."""
        if action not in READ_OPERATIONS:  # pragma: no cover - a bug: caught by the tests
            raise AssertionError(f"{action} is not a read rotor doctor may make")
        return self.retry.call(action, fn, **kwargs)

    def guard(self, name: str, check: Callable[[], Check]) -> Check:
        """Run one check; a call it could not make reports the check as unknown, unless the
        whole run cannot reach AWS (no credentials, no connection), which stops the run."""
        try:
            return check()
        except AwsCallError as exc:
            _raise_if_fatal(exc)
            return _unknown(name, exc)

    # --- CloudTrail

    def trail(self, region: str) -> Check:
        name = "cloudtrail"
        cloudtrail = self.clients.cloudtrail
        listed = self.call(
            "cloudtrail:DescribeTrails", cloudtrail.describe_trails, includeShadowTrails=True
        )
        trails = [
            t
            for t in listed.get("trailList", [])
            if t.get("IsMultiRegionTrail") or t.get("HomeRegion") == region
        ]
        if not trails:
            return Check(
                name,
                CheckStatus.MISSING,
                f"no CloudTrail trail logs management events in {region}: failed rotations, "
                "deletions, PutSecretValue, UpdateSecret and reads of secrets scheduled for "
                "deletion never reach rotor (only the native Secret Label Updated does)",
                _CREATE_TRAIL,
            )
        findings = [self._trail_finding(t, region) for t in trails]
        good = [f for f in findings if f.ok]
        if good:
            return Check(name, CheckStatus.OK, good[0].describe())
        detail = "; ".join(f.describe() for f in findings)
        if any(f.error for f in findings):
            return Check(
                name,
                CheckStatus.UNKNOWN,
                f"no trail is known to log read and write management events: {detail}",
                "allow cloudtrail:GetTrailStatus and cloudtrail:GetEventSelectors "
                "(docs/operations.md, rotor doctor)",
            )
        return Check(
            name,
            CheckStatus.MISSING,
            _trail_consequence(findings) + ": " + detail,
            _trail_fix(max(findings, key=_closeness)),
        )

    def _trail_finding(self, trail: Mapping[str, Any], region: str) -> _TrailFinding:
        arn = str(trail.get("TrailARN") or trail.get("Name"))
        where = "multi-region" if trail.get("IsMultiRegionTrail") else f"{region} only"
        if trail.get("IsOrganizationTrail"):
            where = "organization, " + where
        display = str(trail.get("Name") or arn)
        home = str(trail.get("HomeRegion") or region)
        # Read where the trail lives: a multi-region trail is a shadow in other regions.
        cloudtrail = self._in_region(home).cloudtrail
        try:
            status = self.call("cloudtrail:GetTrailStatus", cloudtrail.get_trail_status, Name=arn)
            selectors = self.call(
                "cloudtrail:GetEventSelectors", cloudtrail.get_event_selectors, TrailName=arn
            )
        except AwsCallError as exc:
            _raise_if_fatal(exc)
            return _TrailFinding(display, where, home, error=f"{exc.code}: {exc.message}")
        coverage = management_coverage(selectors, custom=trail.get("HasCustomEventSelectors"))
        return _TrailFinding(display, where, home, bool(status.get("IsLogging")), coverage)

    # --- the rotor stack

    def rotor_stack(self, stack_name: str, scope: DoctorScope) -> list[Check]:
        template = load_template()
        stack, stack_check = self._stack(
            "stack", stack_name, f"deploy it: {_DEPLOY_ROTOR}; or name yours with --stack"
        )
        checks = [stack_check]
        if stack is not None:
            checks.extend(self._rules("rule", rules_of(template), stack))
        checks.append(self.guard("concurrency", lambda: self._concurrency(template, stack)))
        checks.extend(self._resources(template, stack, scope))
        checks.append(self.guard("bus-policy", lambda: self._bus_policy(stack, scope)))
        return checks

    def forwarder_stack(self, stack_name: str) -> list[Check]:
        text = resources.files("orchestration.events").joinpath(FORWARDER_TEMPLATE).read_text()
        template = load_template(text)
        stack, stack_check = self._stack(
            "forwarder-stack",
            stack_name,
            "deploy it in this account and region: aws cloudformation deploy --template-file "
            f"infra/forwarder.yaml --stack-name {stack_name} --capabilities CAPABILITY_IAM "
            "--parameter-overrides ConsumerAccountId=<the rotor account>",
        )
        checks = [stack_check]
        if stack is not None:
            checks.extend(self._rules("forwarder-rule", rules_of(template), stack, targets=True))
        return checks

    def _stack(self, name: str, stack_name: str, deploy: str) -> tuple[_Stack | None, Check]:
        cloudformation = self.clients.cloudformation
        try:
            described = self.call(
                "cloudformation:DescribeStacks",
                cloudformation.describe_stacks,
                StackName=stack_name,
            )["Stacks"]
            found: dict[str, str] = {}
            for page in self._pages(
                "cloudformation:ListStackResources",
                cloudformation.list_stack_resources,
                "StackResourceSummaries",
                StackName=stack_name,
            ):
                if (
                    page.get("PhysicalResourceId")
                    and page.get("ResourceStatus") != "DELETE_COMPLETE"
                ):
                    found[str(page["LogicalResourceId"])] = str(page["PhysicalResourceId"])
        except PermanentAwsError as exc:
            _raise_if_fatal(exc)
            if exc.code == "ValidationError" and "does not exist" in exc.message:
                return None, Check(
                    name, CheckStatus.MISSING, f"no stack {stack_name} in this region", deploy
                )
            return None, _unknown(name, exc)
        except AwsCallError as exc:
            _raise_if_fatal(exc)
            return None, _unknown(name, exc)
        data = described[0]
        status = str(data.get("StackStatus", "?"))
        parameters = {
            str(p["ParameterKey"]): str(p.get("ParameterValue", ""))
            for p in data.get("Parameters", [])
        }
        stack = _Stack(stack_name, status, parameters, found)
        if status in STACK_READY:
            return stack, Check(name, CheckStatus.OK, f"{stack_name}: {status}")
        if status.endswith("_IN_PROGRESS"):
            fix = "wait for it to finish, then run rotor doctor again"
        elif status == "ROLLBACK_COMPLETE":
            fix = "its creation failed (see its events): delete it, fix the cause, deploy again"
        else:
            fix = "see the stack's events in CloudFormation, then deploy it again"
        return stack, Check(name, CheckStatus.MISSING, f"{stack_name}: {status}", fix)

    def _pages(
        self, action: str, fn: Callable[..., Any], key: str, **kwargs: Any
    ) -> Iterator[Mapping[str, Any]]:
        token: str | None = None
        while True:
            page = self.call(action, fn, **kwargs, **({"NextToken": token} if token else {}))
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return

    def _rules(
        self, prefix: str, expected: Sequence[Rule], stack: _Stack, *, targets: bool = False
    ) -> list[Check]:
        return [
            self.guard(f"{prefix}:{rule.name}", partial(self._rule, prefix, rule, stack, targets))
            for rule in expected
        ]

    def _rule(self, prefix: str, rule: Rule, stack: _Stack, targets: bool) -> Check:
        name = f"{prefix}:{rule.name}"
        physical = stack.resources.get(rule.name)
        if physical is None:
            return Check(
                name,
                CheckStatus.MISSING,
                f"stack {stack.name} has no rule {rule.name} (deployed from another version "
                "of the template?)",
                f"update the stack from this version of rotor: {_DEPLOY_ROTOR}",
            )
        bus, _, rule_name = physical.rpartition("|")  # "bus|rule" for a rule of another bus
        events = self.clients.events
        on_bus = {"EventBusName": bus} if bus else {}
        try:
            described = self.call(
                "events:DescribeRule", events.describe_rule, Name=rule_name, **on_bus
            )
        except PermanentAwsError as exc:
            if exc.code not in _NOT_FOUND:
                raise
            return Check(
                name,
                CheckStatus.MISSING,
                f"rule {rule_name} of stack {stack.name} no longer exists",
                "CloudFormation does not notice a deleted rule: delete the stack and deploy it "
                "again (the state table is retained), or recreate the rule as the template has it",
            )
        state = str(described.get("State", "?"))
        if state != rule.state:
            return Check(
                name,
                CheckStatus.MISSING,
                _wrong_state(rule, rule_name, state),
                _state_fix(rule, rule_name, bus),
            )
        detail = f"{rule_name}: {state}"
        if rule.state == ALL_MANAGEMENT_EVENTS:
            detail += " (sees read-only management events: needs a trail logging reads)"
        if targets:
            listed = self.call(
                "events:ListTargetsByRule", events.list_targets_by_rule, Rule=rule_name, **on_bus
            )
            arns = [str(t.get("Arn", "")) for t in listed.get("Targets", [])]
            if not arns:
                return Check(
                    name,
                    CheckStatus.MISSING,
                    f"{rule_name} has no target: it forwards nothing",
                    f"update the stack {stack.name} from infra/forwarder.yaml",
                )
            detail += " -> " + ", ".join(arns)
        return Check(name, CheckStatus.OK, detail)

    def _concurrency(self, template: Mapping[str, Any], stack: _Stack | None) -> Check:
        name = "concurrency"
        reservations = reserved_concurrency_parameters(template)
        fixed = fixed_reserved_concurrency(template)  # the reconciler's 1: no parameter
        if not reservations and not fixed:
            return Check(name, CheckStatus.SKIPPED, "the template reserves no concurrency")
        parameters: Mapping[str, Any] = template.get("Parameters") or {}
        values = {
            p: _as_int((stack.parameters.get(p) if stack else None) or parameters[p].get("Default"))
            for p in dict.fromkeys(reservations.values())
        }
        minimums = {p: _as_int(parameters[p].get("MinValue", 1)) for p in values}
        uses = {p: sum(1 for q in reservations.values() if q == p) for p in values}
        settings = self.call("lambda:GetAccountSettings", self.clients.lambda_.get_account_settings)
        limit_block = settings.get("AccountLimit", {})
        limit = int(limit_block.get("ConcurrentExecutions", 0))
        unreserved = int(limit_block.get("UnreservedConcurrentExecutions", 0))
        already = 0
        if stack is not None:
            for function in [*reservations, *fixed]:
                physical = stack.resources.get(function)
                if physical:
                    got = self.call(
                        "lambda:GetFunctionConcurrency",
                        self.clients.lambda_.get_function_concurrency,
                        FunctionName=physical,
                    )
                    already += int(got.get("ReservedConcurrentExecutions") or 0)
        needed = sum(values[p] * uses[p] for p in values) + sum(fixed.values())
        room = unreserved + already - MIN_UNRESERVED_CONCURRENCY
        source = f"stack {stack.name}" if stack else "the template's defaults"
        chosen = ", ".join(
            [f"{p}={v}" for p, v in values.items()] + [f"{f} {n}" for f, n in fixed.items()]
        )
        account = f"account limit {limit} concurrent executions, {unreserved} unreserved"
        if needed <= room:
            return Check(
                name,
                CheckStatus.OK,
                f"{account}; {source} reserves {needed} ({chosen}), which leaves "
                f"{room - needed + MIN_UNRESERVED_CONCURRENCY} unreserved (Lambda keeps "
                f"{MIN_UNRESERVED_CONCURRENCY})",
            )
        detail = (
            f"{account}; Lambda keeps {MIN_UNRESERVED_CONCURRENCY} unreserved, so rotor's "
            f"functions may reserve {max(room, 0)} in all, but {source} reserves {needed} "
            f"({chosen})"
        )
        increase = (
            "aws service-quotas request-service-quota-increase --service-code lambda "
            f"--quota-code {LAMBDA_CONCURRENCY_QUOTA} --desired-value {limit + needed - room}"
        )
        least = sum(minimums[p] * uses[p] for p in values) + sum(fixed.values())
        if least > room:
            return Check(
                name,
                CheckStatus.MISSING,
                f"{detail}; even at the parameters' minimums it needs {least}: the account's "
                "quota is too small for reserved concurrency",
                f"ask for a higher Lambda concurrency quota: {increase}",
            )
        lowered = lower_to_fit(values, minimums, uses, needed - room)
        overrides = " ".join(f"{p}={v}" for p, v in lowered.items())
        return Check(
            name,
            CheckStatus.MISSING,
            detail,
            f"lower {', '.join(lowered)}: sam deploy --parameter-overrides {overrides}; "
            f"or ask for a higher quota: {increase}",
        )

    def _resources(
        self, template: Mapping[str, Any], stack: _Stack | None, scope: DoctorScope
    ) -> list[Check]:
        variables = (
            ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
        ).get("Variables") or {}
        checks = []
        for variable, name, label in RESOURCE_SETTINGS:
            ref = variables.get(variable)
            logical = ref.get("Ref") if isinstance(ref, dict) else None
            target = stack.resources.get(str(logical)) if stack and logical else None
            origin = f"stack resource {logical}"
            if target is None and scope.setting(variable):
                target, origin = scope.setting(variable), variable
            if target is None:
                if stack is None:
                    checks.append(
                        Check(name, CheckStatus.SKIPPED, f"no stack, and {variable} is not set")
                    )
                else:
                    checks.append(
                        Check(
                            name,
                            CheckStatus.MISSING,
                            f"stack {stack.name} has no {label} ({logical})",
                            f"update the stack from this version of rotor: {_DEPLOY_ROTOR}",
                        )
                    )
                continue
            checks.append(self.guard(name, partial(self._resource, name, target, origin)))
        return checks

    def _resource(self, name: str, target: str, origin: str) -> Check:
        try:
            if name == "state-table":
                table = self.call(
                    "dynamodb:DescribeTable", self.clients.dynamodb.describe_table, TableName=target
                )["Table"]
                status = str(table.get("TableStatus", "?"))
                if status not in ("ACTIVE", "UPDATING"):
                    return Check(
                        name,
                        CheckStatus.MISSING,
                        f"{target} ({origin}): {status}",
                        "wait for it to become ACTIVE",
                    )
                return Check(name, CheckStatus.OK, f"{target} ({origin}): {status}")
            if name == "redeploy-queue":
                self.call(
                    "sqs:GetQueueAttributes",
                    self.clients.sqs.get_queue_attributes,
                    QueueUrl=target,
                    AttributeNames=["QueueArn"],
                )
            else:
                self.call(
                    "sns:GetTopicAttributes", self.clients.sns.get_topic_attributes, TopicArn=target
                )
        except PermanentAwsError as exc:
            if exc.code not in _NOT_FOUND:
                raise
            return Check(
                name,
                CheckStatus.MISSING,
                f"{target} ({origin}) does not exist",
                f"deploy the stack ({_DEPLOY_ROTOR}) or correct {origin}"
                if origin.startswith("ROTOR_")
                else "CloudFormation does not notice a deleted resource: delete the stack and "
                f"deploy it again ({_DEPLOY_ROTOR})",
            )
        return Check(name, CheckStatus.OK, f"{target} ({origin}) is reachable")

    def _bus_policy(self, stack: _Stack | None, scope: DoctorScope) -> Check:
        name = "bus-policy"
        if stack is not None and "TrustedAccounts" in stack.parameters:
            trusted = _accounts(stack.parameters["TrustedAccounts"])
            origin = f"stack parameter TrustedAccounts of {stack.name}"
        else:
            trusted, origin = tuple(scope.trusted_accounts), "ROTOR_TRUSTED_ACCOUNTS"
        if not trusted:
            return Check(name, CheckStatus.SKIPPED, f"no trusted accounts ({origin}): one account")
        bus = self.call(
            "events:DescribeEventBus", self.clients.events.describe_event_bus, Name="default"
        )
        allowed = put_events_principals(bus.get("Policy"))
        refused = [a for a in trusted if a not in allowed and "*" not in allowed]
        if refused:
            return Check(
                name,
                CheckStatus.MISSING,
                f"the default bus's policy does not let {', '.join(refused)} put events "
                f"({origin} trusts them): their forwarded events are refused",
                "deploy the stack with TrustedAccounts="
                + ",".join(trusted)
                + " (it adds the bus policy), or: "
                + " && ".join(
                    "aws events put-permission --event-bus-name default --action events:PutEvents "
                    f"--principal {a} --statement-id rotor-{a}"
                    for a in refused
                ),
            )
        note = " (to any principal the policy's conditions allow)" if "*" in allowed else ""
        return Check(
            name, CheckStatus.OK, f"the default bus accepts events from {', '.join(trusted)}{note}"
        )


# --- pure helpers ------------------------------------------------------------------------


def _reserved_concurrency(template: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each function's logical id and its ``ReservedConcurrentExecutions`` as written."""
    for logical, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") not in (
            "AWS::Serverless::Function",
            "AWS::Lambda::Function",
        ):
            continue
        yield str(logical), (resource.get("Properties") or {}).get("ReservedConcurrentExecutions")


def reserved_concurrency_parameters(template: Mapping[str, Any]) -> dict[str, str]:
    """Function logical id -> the parameter its ``ReservedConcurrentExecutions`` refers to."""
    return {
        logical: reserved["Ref"]
        for logical, reserved in _reserved_concurrency(template)
        if isinstance(reserved, dict) and isinstance(reserved.get("Ref"), str)
    }


def fixed_reserved_concurrency(template: Mapping[str, Any]) -> dict[str, int]:
    """Function logical id -> the reserved concurrency the template fixes (no parameter)."""
    return {
        logical: reserved
        for logical, reserved in _reserved_concurrency(template)
        if isinstance(reserved, int) and not isinstance(reserved, bool)
    }


def lower_to_fit(
    values: Mapping[str, int], minimums: Mapping[str, int], uses: Mapping[str, int], excess: int
) -> dict[str, int]:
    """Lower the parameters (the one furthest above its minimum first) until the functions
    reserve ``excess`` fewer executions; only the parameters that change, in their order."""
    lowered = dict(values)
    while excess > 0:
        candidates = [p for p in lowered if lowered[p] > minimums[p]]
        if not candidates:
            break
        chosen = max(candidates, key=lambda p: lowered[p] - minimums[p])
        lowered[chosen] -= 1
        excess -= uses[chosen]
    return {p: v for p, v in lowered.items() if v != values[p]}


def put_events_principals(policy: str | None) -> set[str]:
    """Accounts (or ``*``) an event bus policy lets put events."""
    if not policy:
        return set()
    try:
        document = json.loads(policy)
    except ValueError:
        return set()
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    found: set[str] = set()
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not {"events:PutEvents", "events:*", "*"} & set(actions):
            continue
        principal = statement.get("Principal")
        if principal == "*":
            found.add("*")
            continue
        named = principal.get("AWS", []) if isinstance(principal, dict) else []
        for entry in [named] if isinstance(named, str) else named:
            text = str(entry)
            if text == "*":
                found.add("*")
            elif text.isdigit():
                found.add(text)
            elif text.startswith("arn:") and len(text.split(":")) > 4:
                found.add(text.split(":")[4])
    return found


def _accounts(text: str) -> tuple[str, ...]:
    """The account ids of a ``CommaDelimitedList`` parameter's value."""
    return tuple(dict.fromkeys(_ACCOUNT_ID.findall(text)))


def _as_int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _raise_if_fatal(exc: AwsCallError) -> None:
    if isinstance(exc, RetryableAwsError) or exc.code in _FATAL_CODES:
        raise exc


def _unknown(name: str, exc: AwsCallError) -> Check:
    return Check(
        name,
        CheckStatus.UNKNOWN,
        f"could not check: {exc.operation}: {exc.code}: {exc.message}",
        f"allow {exc.operation} to whoever runs rotor doctor (docs/operations.md lists them)"
        if "denied" in exc.code.lower()
        or "unauthorized" in exc.code.lower()
        or exc.code == "AuthorizationError"
        else "",
    )


def _trail_consequence(findings: Sequence[_TrailFinding]) -> str:
    if not any(f.logging for f in findings):
        return "no trail here is logging: CloudTrail events never reach rotor"
    logging = [f for f in findings if f.logging]
    if not any(f.coverage.reads for f in logging):
        return (
            "no logging trail logs read events: reads of secrets scheduled for deletion never "
            "reach rotor"
        )
    return (
        "no logging trail logs write management events: rotations, deletions, PutSecretValue "
        "and UpdateSecret never reach rotor"
    )


def _closeness(finding: _TrailFinding) -> int:
    """How near a trail is to what rotor needs: the fix is for the nearest."""
    return 2 * finding.logging + finding.coverage.reads + finding.coverage.writes


def _trail_fix(finding: _TrailFinding) -> str:
    name = f"{finding.name} --region {finding.home}"
    if finding.coverage.reads and finding.coverage.writes and not finding.logging:
        return f"aws cloudtrail start-logging --name {name}"
    fix = (
        f"log read and write management events on trail {finding.name}: aws cloudtrail "
        f"put-event-selectors --trail-name {name} --event-selectors "
        '\'[{"ReadWriteType":"All","IncludeManagementEvents":true}]\' (this replaces its '
        "selectors: keep its data-event selectors in the list, or use --advanced-event-selectors "
        "with eventCategory=Management and no readOnly field)"
    )
    if not finding.logging:
        fix += f"; then aws cloudtrail start-logging --name {name}"
    return fix


def _wrong_state(rule: Rule, rule_name: str, state: str) -> str:
    if rule.state == ALL_MANAGEMENT_EVENTS and state == "ENABLED":
        return (
            f"{rule_name}: ENABLED, not {ALL_MANAGEMENT_EVENTS}: EventBridge gives it no "
            "read-only management events, so reads of secrets scheduled for deletion never "
            "reach rotor"
        )
    return f"{rule_name}: {state}, not {rule.state}: the events it matches never reach rotor"


def _state_fix(rule: Rule, rule_name: str, bus: str) -> str:
    on_bus = f" --event-bus-name {bus}" if bus else ""
    if rule.state == "ENABLED":
        return f"aws events enable-rule --name {rule_name}{on_bus}"
    return (
        f"aws events put-rule --name {rule_name}{on_bus} --state {rule.state} --event-pattern "
        f'"$(aws events describe-rule --name {rule_name}{on_bus} --query EventPattern '
        '--output text)"'
    )
