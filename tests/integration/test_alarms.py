"""Alarms against in-process moto: reads of a secret scheduled for deletion, deletions of secrets
still in use, and failed rotations (issue 4).

Every notification is read back the way a subscriber gets it: SNS topic -> SQS queue, the body
being the SNS envelope with "Subject" and "Message". Restores are read back with DescribeSecret.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.dispatch import process
from orchestration.events.classification import classify
from orchestration.outcome import EventOutcome
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from orchestration.state.notify_window import MemoryNotifyWindow
from tests.aws_fakes import ApiCalls, ErrorInjector, FailFor
from tests.conftest import ACCOUNT, REGION, load_event, make_runtime
from tests.integration.conftest import Inbox

pytestmark = pytest.mark.integration

LEGACY = "prod/legacy-token"
LEGACY_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/legacy-token-Lg56Tk"
RESTORE_LEGACY = f"aws secretsmanager restore-secret --secret-id '{LEGACY_ARN}' --region {REGION}"
API_TASK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/api-task-role"
READ_FULL_ARN = "get-secret-value-marked-for-deletion.json"
READ_PARTIAL_ARN = "get-secret-value-marked-for-deletion-partial-arn.json"
READ_BY_NAME = "get-secret-value-marked-for-deletion-by-name.json"
READ_BATCH = "batch-get-secret-value-marked-for-deletion.json"
READ_CROSS_ACCOUNT = "get-secret-value-marked-for-deletion-cross-account.json"
ECS_DISCOVERY_CALLS = ("ListClusters", "ListServices", "DescribeServices", "DescribeTaskDefinition")


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture(autouse=True)
def secret_calls(clients: AwsClients) -> Iterator[ApiCalls]:
    """Every Secrets Manager call rotor makes; rotor must never read a secret value."""
    calls = ApiCalls().attach(clients.secretsmanager)
    yield calls
    assert calls.counts["GetSecretValue"] == 0, "rotor read a secret value"
    assert calls.counts["BatchGetSecretValue"] == 0, "rotor read secret values"


@pytest.fixture
def alarm_runtime(clients: AwsClients, retry: RetryPolicy, inbox: Inbox, world: Any) -> Runtime:
    """A runtime publishing to the real topic (SnsNotifier), with its own in-memory window."""
    return make_runtime(clients, retry, Settings(topic_arn=inbox.topic_arn))


def run(event: dict[str, Any], runtime: Runtime) -> EventOutcome:
    return process(classify(event), runtime)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def deleted_date(clients: AwsClients, secret_id: str) -> datetime | None:
    return clients.secretsmanager.describe_secret(SecretId=secret_id).get("DeletedDate")


def shifted(event: dict[str, Any], delta: timedelta) -> dict[str, Any]:
    """The same event, happening ``delta`` later (EventBridge time and CloudTrail eventTime)."""
    moved = copy.deepcopy(event)
    for holder, key in ((moved, "time"), (moved["detail"], "eventTime")):
        when = datetime.fromisoformat(holder[key].replace("Z", "+00:00")) + delta
        holder[key] = iso(when)
    return moved


def by_caller(event: dict[str, Any], role_name: str, account: str = ACCOUNT) -> dict[str, Any]:
    """The same read made by another assumed role (another principal)."""
    changed = copy.deepcopy(event)
    identity = changed["detail"]["userIdentity"]
    identity["arn"] = f"arn:aws:sts::{account}:assumed-role/{role_name}/session-1"
    identity["accountId"] = account
    identity["sessionContext"]["sessionIssuer"]["arn"] = f"arn:aws:iam::{account}:role/{role_name}"
    return changed


def naming(event: dict[str, Any], secret_id: str) -> dict[str, Any]:
    """The same read, naming another secret."""
    changed = copy.deepcopy(event)
    changed["detail"]["requestParameters"] = {"secretId": secret_id}
    return changed


def rows(body: str) -> dict[str, str]:
    """The "Key: value" rows of a rendered notification (before the first section)."""
    found: dict[str, str] = {}
    for line in body.splitlines()[2:]:
        if not line.strip():
            break
        key, _, value = line.partition(":")
        found[key] = value.strip()
    return found


def section(body: str, heading_start: str) -> list[str]:
    """The indented lines under the section whose heading starts with ``heading_start``."""
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_start))
    items = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        items.append(line[2:])
    return items


def only_message(inbox: Inbox) -> dict[str, Any]:
    envelopes = inbox.drain()
    assert len(envelopes) == 1, [e.get("Subject") for e in envelopes]
    return envelopes[0]


def add_service(
    clients: AwsClients, cluster: str, name: str, value_from: str, *, task_role: str | None = None
) -> None:
    """One more ECS service whose task definition references a secret as ``value_from``."""
    task_definition: dict[str, Any] = {
        "family": name,
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{name}-execution-role",
        "containerDefinitions": [
            {
                "name": "main",
                "image": "public.ecr.aws/docker/library/python:3.12-slim",
                "memory": 256,
                "secrets": [{"name": "TOKEN", "valueFrom": value_from}],
            }
        ],
    }
    if task_role:
        task_definition["taskRoleArn"] = task_role
    clients.ecs.register_task_definition(**task_definition)
    clients.ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=name)


# --------------------------------------------------------------- pending_deletion_access


@pytest.mark.parametrize(
    ("sample", "caller_arn", "caller_type", "source_ip", "role"),
    [
        pytest.param(
            READ_FULL_ARN,
            f"arn:aws:sts::{ACCOUNT}:assumed-role/api-task-role/5f0c2a9e8b7d4c3fa1e6d2b9c8a7f4e1",
            "AssumedRole",
            "10.0.12.34",
            API_TASK_ROLE,
            id="full-arn",
        ),
        pytest.param(
            READ_PARTIAL_ARN,
            f"arn:aws:iam::{ACCOUNT}:user/alice",
            "IAMUser",
            "203.0.113.42",
            None,
            id="partial-arn",
        ),
        pytest.param(
            READ_BY_NAME,
            f"arn:aws:iam::{ACCOUNT}:user/alice",
            "IAMUser",
            "203.0.113.42",
            None,
            id="name",
        ),
        pytest.param(
            READ_BATCH,
            f"arn:aws:iam::{ACCOUNT}:user/alice",
            "IAMUser",
            "203.0.113.42",
            None,
            id="batch-by-name",
        ),
    ],
)
def test_read_of_secret_scheduled_for_deletion_notifies_once_with_everything_needed(
    alarm_runtime: Runtime,
    inbox: Inbox,
    clients: AwsClients,
    sample: str,
    caller_arn: str,
    caller_type: str,
    source_ip: str,
    role: str | None,
) -> None:
    event = load_event(sample)
    deletion = deleted_date(clients, LEGACY_ARN)
    assert deletion is not None  # the world scheduled it

    outcome = run(event, alarm_runtime)

    assert outcome.metrics["PendingDeletionAccess"] == 1
    assert outcome.secret == LEGACY_ARN
    message = only_message(inbox)
    assert LEGACY in message["Subject"]
    assert message["MessageAttributes"]["kind"]["Value"] == "pending_deletion_access"
    assert message["MessageAttributes"]["secret"]["Value"] == LEGACY_ARN
    body = message["Message"]
    fields = rows(body)
    assert fields["Secret"] == LEGACY
    assert fields["ARN"] == LEGACY_ARN
    assert fields["Deletion date"].startswith(iso(deletion))
    assert fields["Caller"] == caller_arn
    assert fields["Caller type"] == caller_type
    assert fields["Source IP"] == source_ip
    assert fields["User agent"] == event["detail"]["userAgent"]
    assert fields["Restored by rotor"] == "no"
    if role:
        assert fields["Role"] == role
    else:
        assert "Role" not in fields
    services = section(body, "ECS services still referencing it")
    assert len(services) == 1
    assert services[0].startswith("prod/api: task definition api:")
    # The API task role is the one reading it: that service is what breaks.
    assert services[0].endswith("- runs as the caller's role") == (role == API_TASK_ROLE)
    assert RESTORE_LEGACY in section(body, "What to do:")[1]
    # No opt-in restore: the secret stays scheduled for deletion.
    assert deleted_date(clients, LEGACY_ARN) == deletion
    assert "placeholder-value" not in body  # rotor never reads (nor prints) a value


def test_cross_account_read_names_the_callers_account(alarm_runtime: Runtime, inbox: Inbox) -> None:
    outcome = run(load_event(READ_CROSS_ACCOUNT), alarm_runtime)

    assert outcome.metrics["PendingDeletionAccess"] == 1
    body = only_message(inbox)["Message"]
    fields = rows(body)
    assert fields["Caller account"] == "210987654321"
    assert fields["Caller"].startswith(
        "arn:aws:sts::210987654321:assumed-role/reporting-task-role/"
    )
    assert fields["Role"] == "arn:aws:iam::210987654321:role/reporting-task-role"
    assert fields["Source IP"] == "44.212.87.130"
    assert fields["ARN"] == LEGACY_ARN
    assert fields["Account / region"] == f"{ACCOUNT} / {REGION}"
    services = section(body, "ECS services still referencing it")
    assert [s.split(":")[0] for s in services] == ["prod/api"]
    assert not services[0].endswith("runs as the caller's role")  # another account's role
    assert RESTORE_LEGACY in body


@pytest.mark.parametrize(
    ("secret_id", "region", "why"),
    [
        pytest.param(
            "arn:aws:secretsmanager:us-east-1:999999999999:secret:prod/shared-key-Zz11Yy",
            "us-east-1",
            "ResourceNotFoundException",
            id="other-account",
        ),
        pytest.param(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/shared-key-Zz11Yy",
            "eu-west-1",
            "secret is in eu-west-1",
            id="other-region",
        ),
    ],
)
def test_read_of_a_secret_rotor_cannot_describe_notifies_with_what_the_event_says(
    clients: AwsClients,
    retry: RetryPolicy,
    inbox: Inbox,
    world: Any,
    secret_calls: ApiCalls,
    secret_id: str,
    region: str,
    why: str,
) -> None:
    # Even with restore on access, rotor does not touch a secret it could not describe.
    runtime = make_runtime(
        clients, retry, Settings(topic_arn=inbox.topic_arn, restore_on_access=True)
    )
    event = naming(load_event(READ_CROSS_ACCOUNT), secret_id)

    outcome = run(event, runtime)

    assert outcome.metrics["PendingDeletionAccess"] == 1
    assert "SecretsRestored" not in outcome.metrics
    assert secret_calls.counts["RestoreSecret"] == 0
    body = only_message(inbox)["Message"]
    fields = rows(body)
    # Only DescribeSecret could tell whether "-Zz11Yy" is the ARN suffix or part of the name
    # (a partial ARN); undescribable, rotor keeps the caller's words whole.
    assert fields["Secret"] == "prod/shared-key-Zz11Yy"
    assert fields["ARN"] == secret_id
    assert fields["Deletion date"] == f"unknown (DescribeSecret not possible: {why})"
    assert fields["Caller account"] == "210987654321"
    assert fields["Restored by rotor"] == "no"
    assert section(body, "ECS services still referencing it") == ["(none)"]
    assert f"aws secretsmanager restore-secret --secret-id '{secret_id}' --region {region}" in body


def test_partial_arn_in_another_account_is_not_mistaken_for_our_secret_of_that_name(
    clients: AwsClients, retry: RetryPolicy, inbox: Inbox, world: Any, secret_calls: ApiCalls
) -> None:
    """moto (like a name lookup) answers a partial ARN by name; rotor must check the account."""
    runtime = make_runtime(
        clients, retry, Settings(topic_arn=inbox.topic_arn, restore_on_access=True)
    )
    foreign = "arn:aws:secretsmanager:us-east-1:999999999999:secret:prod/legacy-token"
    deletion = deleted_date(clients, LEGACY_ARN)

    run(naming(load_event(READ_CROSS_ACCOUNT), foreign), runtime)

    body = only_message(inbox)["Message"]
    fields = rows(body)
    assert fields["ARN"] == foreign
    assert fields["Deletion date"].startswith("unknown")
    assert LEGACY_ARN not in body
    assert section(body, "ECS services still referencing it") == ["(none)"]
    # Our own prod/legacy-token was neither restored nor touched.
    assert secret_calls.counts["RestoreSecret"] == 0
    assert deleted_date(clients, LEGACY_ARN) == deletion


def test_restore_on_access_setting_restores_the_secret_and_says_so(
    clients: AwsClients, retry: RetryPolicy, inbox: Inbox, world: Any, secret_calls: ApiCalls
) -> None:
    runtime = make_runtime(
        clients, retry, Settings(topic_arn=inbox.topic_arn, restore_on_access=True)
    )

    outcome = run(load_event(READ_BY_NAME), runtime)

    assert secret_calls.of("RestoreSecret") == [{"SecretId": LEGACY_ARN}]
    assert deleted_date(clients, LEGACY_ARN) is None  # read back: no longer scheduled
    assert outcome.restored == [LEGACY_ARN]
    assert outcome.metrics["SecretsRestored"] == 1
    assert outcome.metrics["PendingDeletionAccess"] == 1
    body = only_message(inbox)["Message"]
    assert rows(body)["Restored by rotor"] == "yes"
    assert section(body, "What to do:") == [
        "rotor restored the secret (RestoreSecret): the deletion is cancelled."
    ]


def test_failed_restore_still_notifies_with_the_command(
    clients: AwsClients, retry: RetryPolicy, inbox: Inbox, world: Any
) -> None:
    FailFor("RestoreSecret", "AccessDeniedException").attach(clients.secretsmanager)
    runtime = make_runtime(
        clients, retry, Settings(topic_arn=inbox.topic_arn, restore_on_access=True)
    )
    deletion = deleted_date(clients, LEGACY_ARN)

    outcome = run(load_event(READ_FULL_ARN), runtime)

    assert deleted_date(clients, LEGACY_ARN) == deletion  # still scheduled
    assert outcome.restored == []
    assert any("RestoreSecret failed" in note for note in outcome.notes)
    body = only_message(inbox)["Message"]
    assert rows(body)["Restored by rotor"] == "no"
    assert RESTORE_LEGACY in body


@pytest.mark.parametrize(("tag_value", "restored"), [("true", True), ("false", False)])
def test_restore_on_access_tag_restores_without_the_setting(
    clients: AwsClients,
    alarm_runtime: Runtime,
    inbox: Inbox,
    secret_calls: ApiCalls,
    tag_value: str,
    restored: bool,
) -> None:
    sm = clients.secretsmanager
    arn = sm.create_secret(
        Name="prod/tagged-token",
        SecretString="placeholder",
        Tags=[{"Key": "rotor:restore-on-access", "Value": tag_value}],
    )["ARN"]
    sm.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    assert not alarm_runtime.settings.restore_on_access

    outcome = run(naming(load_event(READ_BY_NAME), "prod/tagged-token"), alarm_runtime)

    assert (deleted_date(clients, arn) is None) is restored
    assert secret_calls.counts["RestoreSecret"] == int(restored)
    assert outcome.restored == ([arn] if restored else [])
    body = only_message(inbox)["Message"]
    assert rows(body)["ARN"] == arn
    assert rows(body)["Restored by rotor"] == ("yes" if restored else "no")
    assert ("rotor restored the secret" in body) is restored


@pytest.mark.parametrize(
    "sample", ["get-secret-value-success.json", "get-secret-value-access-denied.json"]
)
def test_successful_or_denied_read_never_notifies(
    alarm_runtime: Runtime, inbox: Inbox, ecs_calls: ApiCalls, sample: str
) -> None:
    outcome = run(load_event(sample), alarm_runtime)

    assert outcome.notifications == []
    assert "PendingDeletionAccess" not in outcome.metrics
    assert inbox.drain() == []
    assert sum(ecs_calls.counts.values()) == 0


# ----------------------------------------------------------------------------------- storms


def test_storm_of_one_caller_counts_every_read_but_notifies_once(
    alarm_runtime: Runtime, inbox: Inbox, ecs_calls: ApiCalls
) -> None:
    event = load_event(READ_FULL_ARN)

    first = run(event, alarm_runtime)
    discovery = {op: ecs_calls.counts[op] for op in ECS_DISCOVERY_CALLS}
    rest = [run(event, alarm_runtime) for _ in range(499)]

    outcomes = [first, *rest]
    assert sum(o.metrics.get("PendingDeletionAccess", 0) for o in outcomes) == 500
    assert sum(o.metrics.get("NotificationsSent", 0) for o in outcomes) == 1
    assert sum(o.metrics.get("NotificationsSuppressed", 0) for o in outcomes) == 499
    assert len(inbox.drain()) == 1
    # Discovery ran for the notifying read only: the 499 suppressed reads made no ECS call.
    assert discovery["ListServices"] > 0 and discovery["DescribeServices"] > 0
    assert {op: ecs_calls.counts[op] for op in ECS_DISCOVERY_CALLS} == discovery
    assert set(ecs_calls.counts) <= set(ECS_DISCOVERY_CALLS)


def test_storm_notifies_once_per_caller_and_again_after_the_window(
    clients: AwsClients, retry: RetryPolicy, inbox: Inbox, world: Any
) -> None:
    window = timedelta(minutes=15)
    runtime = make_runtime(
        clients,
        retry,
        Settings(topic_arn=inbox.topic_arn, notify_window=window),
        notify_window=MemoryNotifyWindow(window),
    )
    api = load_event(READ_FULL_ARN)
    worker = by_caller(api, "worker-task-role")
    # The fleet retries for 14 minutes: one read per caller every few seconds.
    storm = []
    for i in range(500):
        storm.append(shifted(api, timedelta(seconds=i)))
        if i % 10 == 0:
            storm.append(shifted(worker, timedelta(seconds=i)))

    outcomes = [run(e, runtime) for e in storm]

    assert sum(o.metrics["PendingDeletionAccess"] for o in outcomes) == 550
    sent = inbox.drain()
    assert sorted(rows(m["Message"])["Role"] for m in sent) == [
        API_TASK_ROLE,
        f"arn:aws:iam::{ACCOUNT}:role/worker-task-role",
    ]

    # Still inside the window of the first read (14m59s later): nothing new.
    run(shifted(api, window - timedelta(seconds=1)), runtime)
    assert inbox.drain() == []
    # Past it: the still-failing reader is reported again.
    late = run(shifted(api, window + timedelta(seconds=1)), runtime)
    assert late.metrics["NotificationsSent"] == 1
    again = only_message(inbox)
    assert rows(again["Message"])["Role"] == API_TASK_ROLE


def test_same_caller_reading_by_name_and_by_arn_shares_one_window(
    alarm_runtime: Runtime, inbox: Inbox
) -> None:
    """The window key is the resolved secret, not the caller's words for it."""
    by_name = load_event(READ_BY_NAME)
    by_arn = naming(by_name, LEGACY_ARN)
    partial = load_event(READ_PARTIAL_ARN)  # same caller (alice), partial ARN

    outcomes = [run(e, alarm_runtime) for e in (by_name, by_arn, partial)]

    assert [o.metrics.get("NotificationsSent", 0) for o in outcomes] == [1, 0, 0]
    assert len(inbox.drain()) == 1


# -------------------------------------------------------------------------- deletion_scheduled


def test_deletion_of_a_secret_still_referenced_names_every_service_and_the_recovery_window(
    clients: AwsClients, alarm_runtime: Runtime, inbox: Inbox
) -> None:
    # Two more consumers of the same secret: a pinned one in another cluster and a partial ARN.
    add_service(clients, "batch", "legacy-report", f"{LEGACY_ARN}::AWSPREVIOUS:")
    add_service(
        clients,
        "prod",
        "legacy-sync",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/legacy-token",
    )
    event = load_event("delete-secret-recovery-window.json")

    outcome = run(event, alarm_runtime)

    assert outcome.metrics["DeletedSecretStillReferenced"] == 1
    message = only_message(inbox)
    assert message["MessageAttributes"]["kind"]["Value"] == "deletion_scheduled"
    assert "3 service(s)" in message["Subject"]
    body = message["Message"]
    fields = rows(body)
    assert fields["Secret"] == LEGACY
    assert fields["ARN"] == LEGACY_ARN
    assert "7-day recovery window" in fields["Deletion"]
    # CloudTrail's "Nov 27, 2026, 11:00:00 AM" is given as ISO 8601 UTC.
    assert event["detail"]["responseElements"]["deletionDate"] == "Nov 27, 2026, 11:00:00 AM"
    assert "2026-11-27T11:00:00Z" in fields["Deletion"]
    assert fields["Deleted by"].startswith(f"arn:aws:iam::{ACCOUNT}:user/alice from 203.0.113.42")
    services = section(body, "Still referenced by")
    assert sorted(s.split(":")[0] for s in services) == [
        "batch/legacy-report",
        "prod/api",
        "prod/legacy-sync",
    ]
    assert RESTORE_LEGACY in section(body, "What to do:")[1]


def test_forced_deletion_of_a_secret_still_referenced_says_it_cannot_be_restored(
    clients: AwsClients, alarm_runtime: Runtime, inbox: Inbox
) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db-admin-Xy98Zw"
    clients.secretsmanager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)

    outcome = run(load_event("delete-secret-force.json"), alarm_runtime)

    assert outcome.metrics["DeletedSecretStillReferenced"] == 1
    body = only_message(inbox)["Message"]
    fields = rows(body)
    assert fields["ARN"] == arn
    assert "without recovery" in fields["Deletion"]
    assert [s.split(":")[0] for s in section(body, "Still referenced by")] == ["prod/admin-console"]
    assert "cannot be restored" in body
    assert "restore-secret" not in body


def test_deletion_of_a_secret_nobody_references_is_quiet(
    clients: AwsClients, alarm_runtime: Runtime, inbox: Inbox
) -> None:
    event = _unused_secret_deletion(clients)

    outcome = run(event, alarm_runtime)

    assert outcome.secret == event["detail"]["responseElements"]["arn"]  # the created secret
    assert "DeletedSecretStillReferenced" not in outcome.metrics
    assert outcome.notifications == []
    assert inbox.drain() == []


def _unused_secret_deletion(clients: AwsClients) -> dict[str, Any]:
    sm = clients.secretsmanager
    arn = sm.create_secret(Name="prod/unused-token", SecretString="placeholder")["ARN"]
    sm.delete_secret(SecretId=arn, RecoveryWindowInDays=7)
    event = load_event("delete-secret-recovery-window.json")
    event["detail"]["requestParameters"]["secretId"] = "prod/unused-token"
    event["detail"]["responseElements"].update(arn=arn, name="prod/unused-token")
    return event


@pytest.mark.parametrize("operation", ["ListClusters", "ListServices", "DescribeTaskDefinition"])
def test_a_deletion_warning_whose_scan_was_throttled_is_retried_never_an_all_clear(
    clients: AwsClients, alarm_runtime: Runtime, inbox: Inbox, operation: str
) -> None:
    """Throttled to the end of the retry budget: the event fails as retryable (Lambda retries
    it) after saying what it could not check yet; the retry sends the complete warning."""
    injector = ErrorInjector(1.0, operations={operation}).attach(clients.ecs)
    event = load_event("delete-secret-recovery-window.json")

    throttled = run(event, alarm_runtime)

    assert injector.injected[operation] > 0
    assert throttled.retryable_failures
    assert "nothing will break" not in " ".join(throttled.notes)
    partial = only_message(inbox)
    assert "could not check every ECS service for it yet" in partial["Subject"]
    not_checked = section(partial["Message"], "No reference found so far")
    assert not_checked and all("injected ThrottlingException" in line for line in not_checked)

    injector.rate = 0.0
    outcome = run(event, alarm_runtime)
    assert not outcome.failed
    assert outcome.metrics["DeletedSecretStillReferenced"] == 1
    body = only_message(inbox)["Message"]
    assert [s.split(":")[0] for s in section(body, "Still referenced by")] == ["prod/api"]
    assert "Could not check" not in body
    assert "Not checked yet" not in body
    assert "nothing will break" not in " ".join(outcome.notes)


def test_a_deletion_warning_whose_scan_was_denied_is_sent_saying_what_was_not_checked(
    clients: AwsClients, alarm_runtime: Runtime, inbox: Inbox
) -> None:
    """Access denied on one cluster: a retry cannot help, so the warning goes out now, naming
    the consumers found elsewhere and the cluster rotor could not check."""
    batch = clients.ecs.describe_clusters(clusters=["batch"])["clusters"][0]["clusterArn"]
    FailFor("ListServices", "AccessDeniedException", cluster=batch).attach(clients.ecs)

    outcome = run(load_event("delete-secret-recovery-window.json"), alarm_runtime)

    body = only_message(inbox)["Message"]
    assert [s.split(":")[0] for s in section(body, "Still referenced by")] == ["prod/api"]
    (not_checked,) = section(body, "Could not check")
    assert not_checked.startswith(f"could not read cluster {batch}")
    assert "AccessDeniedException" in not_checked
    assert [(f.scope, f.subject, f.retryable) for f in outcome.failed] == [
        ("cluster", batch, False)
    ]


@pytest.mark.parametrize("operation", ["ListClusters", "ListServices"])
def test_a_deletion_nobody_seems_to_reference_says_could_not_check_when_the_scan_was_denied(
    clients: AwsClients, alarm_runtime: Runtime, inbox: Inbox, operation: str
) -> None:
    FailFor(operation, "AccessDeniedException").attach(clients.ecs)

    outcome = run(_unused_secret_deletion(clients), alarm_runtime)

    assert not any("nothing will break" in note for note in outcome.notes)
    message = only_message(inbox)
    assert "could not check" in message["Subject"]
    not_checked = section(message["Message"], "No reference found in what rotor could read")
    assert not_checked and all("AccessDeniedException" in line for line in not_checked)
    assert "restore-secret" in message["Message"]
    assert outcome.failed and not outcome.retryable_failures


# ---------------------------------------------------------------------------- rotation_failed


@pytest.mark.parametrize(
    ("sample", "name"),
    [("rotation-failed.json", "prod/api-signer"), ("rotation-abandoned.json", "prod/db")],
)
def test_failed_rotation_notifies_with_the_secret_and_the_events_error(
    alarm_runtime: Runtime, inbox: Inbox, ecs_calls: ApiCalls, sample: str, name: str
) -> None:
    event = load_event(sample)
    arn = event["detail"]["additionalEventData"]["SecretId"]

    outcome = run(event, alarm_runtime)

    assert outcome.metrics["RotationFailures"] == 1
    message = only_message(inbox)
    assert message["MessageAttributes"]["kind"]["Value"] == "rotation_failed"
    assert event["detail"]["eventName"] in message["Subject"]
    body = message["Message"]
    fields = rows(body)
    assert fields["Secret"] == name
    assert fields["ARN"] == arn
    assert fields["Error"] == event["detail"].get("errorMessage", "(the event gives none)")
    assert f"aws secretsmanager rotate-secret --secret-id '{arn}' --region {REGION}" in body
    assert ecs_calls.counts["UpdateService"] == 0  # a failed rotation redeploys nothing


# ------------------------------------------------------------------------------- never a value


def test_no_alarm_path_ever_reads_a_secret_value(
    clients: AwsClients, retry: RetryPolicy, inbox: Inbox, world: Any
) -> None:
    calls = ApiCalls().attach(clients.secretsmanager)  # after the world was seeded
    runtime = make_runtime(
        clients, retry, Settings(topic_arn=inbox.topic_arn, restore_on_access=True)
    )
    samples = [
        READ_FULL_ARN,
        READ_PARTIAL_ARN,
        READ_BY_NAME,
        READ_BATCH,
        READ_CROSS_ACCOUNT,
        "delete-secret-recovery-window.json",
        "delete-secret-force.json",
        "rotation-failed.json",
        "rotation-abandoned.json",
        "get-secret-value-success.json",
        "get-secret-value-access-denied.json",
    ]

    kinds = Counter(run(load_event(s), runtime).classification.kind.value for s in samples)

    assert kinds["pending_deletion_access"] == 5
    subjects = sorted(m["Subject"] for m in inbox.drain())
    assert len(subjects) == 7, subjects
    assert calls.counts["GetSecretValue"] == 0
    assert calls.counts["BatchGetSecretValue"] == 0
    assert set(calls.counts) <= {"DescribeSecret", "RestoreSecret"}
