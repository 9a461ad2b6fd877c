"""An invocation's deadline reaches every part of the runtime that calls AWS.

``Runtime.with_deadline`` gives a runtime whose retries stop at the Lambda's deadline. A part
that kept the container's unbounded policy would retry a throttled call ten times, long past
the point where Lambda kills the invocation mid-call. With every call throttled, each part of
the bounded runtime makes exactly one attempt; the unbounded one makes the policy's ten.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import RetryableAwsError
from orchestration.fanout.jobs import RedeployJob
from orchestration.notifications import Notification
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from tests.aws_fakes import ErrorInjector

pytestmark = pytest.mark.integration

SERVICE = "arn:aws:ecs:us-east-1:123456789012:service/prod/api"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-Ab12Cd"


@pytest.fixture
def throttled(clients, sleeps):
    """A runtime with a topic and a queue, whose every SNS and SQS call is throttled."""
    topic = clients.sns.create_topic(Name="rotor")["TopicArn"]
    queue = clients.sqs.create_queue(QueueName="rotor-jobs")["QueueUrl"]
    settings = Settings(topic_arn=topic, redeploy_queue_url=queue)
    runtime = Runtime.build(clients, settings, retry=RetryPolicy(max_attempts=10, sleep=sleeps))
    injector = ErrorInjector(1.0)
    injector.attach(clients.sns)
    injector.attach(clients.sqs)
    return runtime, injector


def _publish(runtime: Runtime) -> None:
    runtime.notifier.publish(Notification("test", "subject", "body", SECRET))


def _enqueue(runtime: Runtime) -> None:
    assert runtime.queue is not None
    job = RedeployJob(
        secret_arn=SECRET,
        rotated_at=datetime(2026, 11, 20, tzinfo=UTC),
        service_arn=SERVICE,
        cluster_arn=CLUSTER,
    )
    runtime.queue.send([job])


@pytest.mark.parametrize(
    ("call", "operation"),
    [(_publish, "Publish"), (_enqueue, "SendMessageBatch")],
    ids=["notifier", "queue"],
)
@pytest.mark.parametrize("bounded", [True, False], ids=["invocation", "container"])
def test_a_throttled_call_stops_at_the_deadline(throttled, call, operation, bounded):
    runtime, injector = throttled
    if bounded:
        runtime = runtime.with_deadline(lambda: 0.0)  # the deadline has come

    with pytest.raises(RetryableAwsError):
        call(runtime)

    assert injector.injected[operation] == (1 if bounded else 10)


def test_the_bounded_runtime_keeps_the_containers_warm_state(clients, sleeps):
    runtime = Runtime.build(clients, Settings(), retry=RetryPolicy(sleep=sleeps))
    bounded = runtime.with_deadline(lambda: 60.0)
    assert bounded.task_definitions is runtime.task_definitions
    assert bounded.rollouts is runtime.rollouts
