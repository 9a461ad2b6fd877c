"""Shared fixtures. Tests never reach AWS: dummy credentials, moto, loopback only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients
from orchestration.aws.ratelimit import ApiRateLimiter
from orchestration.aws.retry import RetryPolicy
from orchestration.notifications import LogOnlyNotifier
from orchestration.runtime import Runtime
from orchestration.settings import Settings
from orchestration.state.notify_window import MemoryNotifyWindow
from orchestration.state.redeploy_ledger import MemoryRedeployLedger
from orchestration.state.rollouts import MemoryRolloutStore
from orchestration.state.task_definitions import TaskDefinitionCache
from tests.aws_fakes import ApiCalls, enforce_ecs_limits
from tests.botocore_models import share_botocore_models

share_botocore_models()  # each botocore model parsed once per process, not once per test

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
SAMPLE_EVENTS = sorted(p for p in EVENTS.glob("*.json") if p.name != "world.json")
REGION = "us-east-1"
ACCOUNT = "123456789012"
#: The services of events/world.json whose task definitions reference prod/db (admin-console
#: reads prod/db-admin, gateway nothing of it), as cluster/service.
PROD_DB_READERS = frozenset(
    {
        "prod/api",
        "prod/worker",
        "prod/reporting",
        "prod/billing",
        "prod/search",
        "batch/nightly-export",
    }
)


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.fixture(autouse=True)
def _dummy_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real credentials, profiles or rotor settings leak into a test."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("ROTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Rotor")


class Sleeps(list[float]):
    """An injectable sleep that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def retry(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps)


@pytest.fixture
def moto() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def clients(moto: None, sleeps: Sleeps) -> AwsClients:
    """Clients bound to in-process moto, with AWS's ECS paging and limits enforced."""
    aws = AwsClients(region=REGION, ecs_rate_limiter=ApiRateLimiter(sleep=sleeps))
    enforce_ecs_limits(aws.ecs)
    return aws


@pytest.fixture
def ecs_calls(clients: AwsClients) -> ApiCalls:
    return ApiCalls().attach(clients.ecs)


@pytest.fixture
def world(clients: AwsClients) -> Any:
    from orchestration.cli.world import load_world, seed_world

    return seed_world(clients, load_world())


def make_runtime(
    clients: AwsClients, retry: RetryPolicy, settings: Settings | None = None, **overrides: Any
) -> Runtime:
    settings = settings or Settings()
    return Runtime.build(
        clients,
        settings,
        retry=retry,
        notifier=overrides.pop("notifier", None)
        or (None if settings.topic_arn else LogOnlyNotifier()),
        notify_window=overrides.pop("notify_window", None)
        or (None if settings.state_table else MemoryNotifyWindow(timedelta(minutes=15))),
        task_definitions=_or_new(overrides.pop("task_definitions", None)),
        ledger=overrides.pop("ledger", None)
        or (None if settings.state_table else MemoryRedeployLedger()),
        rollouts=overrides.pop("rollouts", None)
        or (None if settings.state_table else MemoryRolloutStore()),
        queue=overrides.pop("queue", None),
    )


def _or_new(cache: TaskDefinitionCache | None) -> TaskDefinitionCache:
    # An empty cache is falsy (len 0): test identity, not truth.
    return cache if cache is not None else TaskDefinitionCache()


@pytest.fixture
def runtime(clients: AwsClients, retry: RetryPolicy) -> Runtime:
    return make_runtime(clients, retry)
