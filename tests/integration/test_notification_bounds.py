"""Every notification fits SNS, whatever it has to say (issue 14, bug 10), and shows a
caller's words as text, never as lines or terminal codes of their own.

SNS refuses a message whose body and attributes pass 262,144 bytes of UTF-8 (a topic's
default MaximumMessageSize), and a refused warning is a lost one: the event is retried and
dead-lettered. moto counts characters of the body only; ``SnsPublishLimits`` refuses what AWS
refuses and records what was published. A deletion warning about 2,200 services names the
first ones, counts the rest and says how to list them all (``rotor discover``).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.ecs.shapes import DeploymentController
from orchestration.events.classification import classify
from orchestration.notifications import (
    LINE_LIMIT,
    MESSAGE_LIMIT,
    SECTION_ENTRIES,
    Notification,
    SnsNotifier,
    render,
)
from orchestration.outcome import ManualRedeploy
from orchestration.rotation.manual import manual_notification
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from tests.aws_fakes import FailFor, SnsPublishLimits
from tests.conftest import ACCOUNT, REGION, load_event, make_runtime
from tests.integration.conftest import Inbox
from tests.integration.test_alarms import (
    LEGACY_ARN,
    READ_FULL_ARN,
    _unused_secret_deletion,
    only_message,
    rows,
    run,
    section,
)

pytestmark = pytest.mark.integration

MANY = 2_200
DISCOVER_LEGACY = f"rotor discover '{LEGACY_ARN}' --region {REGION}"


@pytest.fixture
def alarm_runtime(clients: AwsClients, retry: RetryPolicy, inbox: Inbox, world: Any) -> Runtime:
    """The world's account, publishing to the real topic (SnsNotifier)."""
    return make_runtime(clients, retry, Settings(topic_arn=inbox.topic_arn))


@pytest.fixture
def sns_limits(clients: AwsClients) -> SnsPublishLimits:
    return SnsPublishLimits().attach(clients.sns)


def many_consumers(clients: AwsClients, count: int = MANY) -> None:
    """``count`` services in cluster ``big``, all running one task definition that references
    the legacy token (made in moto's backend directly: 2,200 create_service calls through
    boto3 take a quarter of a minute)."""
    from moto.ecs.models import ecs_backends

    clients.ecs.create_cluster(clusterName="big")
    clients.ecs.register_task_definition(
        family="big-consumer",
        containerDefinitions=[
            {
                "name": "main",
                "image": "public.ecr.aws/docker/library/python:3.12-slim",
                "memory": 256,
                "secrets": [{"name": "TOKEN", "valueFrom": LEGACY_ARN}],
            }
        ],
    )
    backend = ecs_backends[ACCOUNT][REGION]
    for i in range(count):
        backend.create_service("big", f"consumer-{i:04d}", 1, "big-consumer")


def published_size(message: dict[str, Any]) -> int:
    """What SNS counted: the body and each attribute's name, data type and value."""
    size = len(message["Message"].encode("utf-8"))
    for name, value in message.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["Type"].encode()) + len(value["Value"].encode())
    return size


def test_a_deletion_warning_about_2200_services_fits_sns_and_says_how_to_list_them(
    clients: AwsClients,
    alarm_runtime: Runtime,
    inbox: Inbox,
    sns_limits: SnsPublishLimits,
) -> None:
    many_consumers(clients)

    outcome = run(load_event("delete-secret-recovery-window.json"), alarm_runtime)

    assert sns_limits.refused == []
    assert len(outcome.consumers) == MANY + 1  # and prod/api of the world
    message = only_message(inbox)
    assert published_size(message) <= MESSAGE_LIMIT
    assert sns_limits.sizes and max(sns_limits.sizes) <= MESSAGE_LIMIT
    assert f"{MANY + 1} service(s)" in message["Subject"]
    body = message["Message"]
    listed = section(body, "Still referenced by")
    assert len(listed) == SECTION_ENTRIES + 1
    assert listed[-1] == (
        f"... and {MANY + 1 - SECTION_ENTRIES:,} more, not listed here;"
        f" to list them all: {DISCOVER_LEGACY}"
    )
    # What to do is still there, after the list.
    assert "restore-secret" in " ".join(section(body, "What to do:"))
    assert rows(body)["ARN"] == LEGACY_ARN


def test_a_pending_deletion_alarm_about_2200_services_fits_sns(
    clients: AwsClients,
    alarm_runtime: Runtime,
    inbox: Inbox,
    sns_limits: SnsPublishLimits,
) -> None:
    many_consumers(clients)

    outcome = run(load_event(READ_FULL_ARN), alarm_runtime)

    assert outcome.metrics["NotificationsSent"] == 1
    assert sns_limits.refused == []
    message = only_message(inbox)
    assert published_size(message) <= MESSAGE_LIMIT
    listed = section(message["Message"], "ECS services still referencing it")
    assert len(listed) == SECTION_ENTRIES + 1
    assert listed[-1].endswith(f"to list them all: {DISCOVER_LEGACY}")


def test_a_manual_redeploy_notice_about_2200_services_fits_sns(
    clients: AwsClients, retry: RetryPolicy, inbox: Inbox, sns_limits: SnsPublishLimits
) -> None:
    event = classify(load_event("rotation-succeeded.json"))
    secret = event.secret_id
    manual = [
        ManualRedeploy(
            f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/prod/blue-green-{i:04d}",
            DeploymentController.CODE_DEPLOY,
            "stale; its deployment controller refuses a forced deployment",
            "aws deploy create-deployment --region us-east-1 --application-name <app>"
            " --deployment-group-name <group> --revision " + "x" * 300,
        )
        for i in range(MANY)
    ]
    notice = manual_notification(event, secret, manual)

    SnsNotifier(clients.sns, inbox.topic_arn, retry).publish(notice)

    assert sns_limits.refused == []
    message = only_message(inbox)
    assert published_size(message) <= MESSAGE_LIMIT
    listed = section(message["Message"], "Stale services")
    # Each service keeps its command under it: 50 services, 100 lines, then the count.
    assert len(listed) == 2 * SECTION_ENTRIES + 1
    assert listed[0].startswith("prod/blue-green-0000 (CODE_DEPLOY controller)")
    assert listed[1].startswith("  aws deploy create-deployment")
    assert listed[-1].startswith(f"... and {MANY - SECTION_ENTRIES:,} more, not listed here;")
    assert "rotor discover" in listed[-1]


def test_a_message_of_long_wide_lines_is_cut_to_fit_saying_so(
    clients: AwsClients, retry: RetryPolicy, inbox: Inbox, sns_limits: SnsPublishLimits
) -> None:
    """Fifty entries per section, each a full line of four-byte characters, in four sections:
    over 800 KB before the last guard cuts it at a line."""
    wide = "\U0001f510" * 5_000
    body = render(
        "rotor: a very wide notification",
        [("Secret", "prod/legacy-token")],
        [(f"Section {n}:", [wide] * 60) for n in range(4)],
        rest="rotor discover prod/legacy-token",
    )
    assert len(body.encode()) > 3 * MESSAGE_LIMIT
    notice = Notification("deletion_scheduled", "rotor: wide", body, LEGACY_ARN)

    SnsNotifier(clients.sns, inbox.topic_arn, retry).publish(notice)

    assert sns_limits.refused == []
    message = only_message(inbox)
    assert published_size(message) <= MESSAGE_LIMIT
    last = message["Message"].splitlines()[-1]
    assert "more line(s) cut" in last
    assert f"rotor discover {LEGACY_ARN}" in last
    # Each line was already cut at LINE_LIMIT characters.
    assert max(len(line) for line in message["Message"].splitlines()) < LINE_LIMIT + 100


@pytest.mark.parametrize(
    "subject",
    [
        "rotor: \x1b[31mred\x1b[0m\nSecond line",
        "rotor: prod/\u00e9t\u00e9 read while scheduled for deletion",
        "rotor: " + "x" * 300,
        "\n\t ",
    ],
    ids=["control", "non-ascii", "long", "blank"],
)
def test_any_subject_is_one_sns_accepts(
    clients: AwsClients,
    retry: RetryPolicy,
    inbox: Inbox,
    sns_limits: SnsPublishLimits,
    subject: str,
) -> None:
    notice = Notification("deletion_scheduled", subject, "body\n", LEGACY_ARN)

    SnsNotifier(clients.sns, inbox.topic_arn, retry).publish(notice)

    assert sns_limits.refused == []
    sent = only_message(inbox)["Subject"]
    assert sent.isascii() and sent.isprintable() and 0 < len(sent) < 100


# ------------------------------------------------------------- a caller's words are text


HOSTILE_AGENT = (
    "aws-cli/2.22.4\n\nWhat to do:\n  Nothing: all is well.\r\n"
    "Restored by rotor: yes\x1b[2J\x1b[31mRED\x1b[0m\u2028\u202eevil" + "A" * 20_000
)


def _with_agent(sample: str, agent: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event(sample))
    event["detail"]["userAgent"] = agent
    return event


@pytest.mark.parametrize(
    ("sample", "row"),
    [(READ_FULL_ARN, "User agent"), ("delete-secret-recovery-window.json", "Deleted by")],
    ids=["pending-deletion-read", "deletion-warning"],
)
def test_a_hostile_user_agent_is_one_bounded_line_of_escaped_text(
    clients: AwsClients,
    retry: RetryPolicy,
    inbox: Inbox,
    world: Any,
    sns_limits: SnsPublishLimits,
    sample: str,
    row: str,
) -> None:
    def notify(agent: str) -> None:  # each in a runtime of its own: a window of its own
        runtime = make_runtime(clients, retry, Settings(topic_arn=inbox.topic_arn))
        run(_with_agent(sample, agent), runtime)

    notify("aws-cli/2.22.4")
    plain = only_message(inbox)["Message"]

    notify(HOSTILE_AGENT)

    body = only_message(inbox)["Message"]
    assert sns_limits.refused == []
    # The same lines as with an ordinary agent: nothing the caller wrote became a line.
    assert len(body.splitlines()) == len(plain.splitlines())
    assert "  Nothing: all is well." not in body.splitlines()
    assert not any(c in body for c in "\x1b\r\u2028\u202e")
    value = rows(body)[row]
    assert "\\n\\nWhat to do:\\n  Nothing: all is well.\\r\\n" in value
    assert "\\x1b[2J\\x1b[31mRED\\x1b[0m\\u2028\\u202eevil" in value
    assert len(value) < LINE_LIMIT + 100
    assert value.endswith("more characters not shown)")


def test_a_could_not_check_warning_about_many_clusters_says_how_to_list_the_rest(
    clients: AwsClients, alarm_runtime: Runtime, inbox: Inbox, sns_limits: SnsPublishLimits
) -> None:
    """No consumer found, and ECS denies every cluster's services: the section of what rotor
    could not check is cut at its first entries like every list, and says how to see the
    rest, as the other warnings do."""
    for i in range(SECTION_ENTRIES + 10):
        clients.ecs.create_cluster(clusterName=f"denied-{i:03d}")
    FailFor("ListServices", "AccessDeniedException").attach(clients.ecs)
    event = _unused_secret_deletion(clients)
    arn = event["detail"]["responseElements"]["arn"]

    run(event, alarm_runtime)

    assert sns_limits.refused == []
    message = only_message(inbox)
    assert "could not check every ECS service" in message["Subject"]
    unchecked = section(message["Message"], "No reference found")
    assert len(unchecked) == SECTION_ENTRIES + 1
    assert unchecked[-1].startswith("... and ")
    assert unchecked[-1].endswith(f"to list them all: rotor discover '{arn}' --region {REGION}")
