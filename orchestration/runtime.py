"""Everything a use case needs, built once and passed in (no module-level clients)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.ecs.discovery import (
    PROCESS_TASK_DEFINITION_CACHE,
    ConsumerDiscovery,
    TaskDefinitionCache,
)
from orchestration.ecs.redeploy import Redeployer
from orchestration.fanout.queue import JobQueue, SqsJobQueue
from orchestration.notifications import LogOnlyNotifier, Notifier, SnsNotifier
from orchestration.secrets.lookup import SecretLookup
from orchestration.settings import Settings
from orchestration.state.notify_window import DynamoDbNotifyWindow, MemoryNotifyWindow, NotifyWindow
from orchestration.state.redeploy_ledger import (
    DynamoDbRedeployLedger,
    MemoryRedeployLedger,
    RedeployLedger,
)
from orchestration.tracking.store import DynamoDbRolloutStore, MemoryRolloutStore, RolloutStore

# What a warm Lambda container remembers between invocations when there is no state table.
_PROCESS_WINDOWS: dict[timedelta, MemoryNotifyWindow] = {}
_PROCESS_LEDGER = MemoryRedeployLedger()
_PROCESS_ROLLOUTS = MemoryRolloutStore()


@dataclass(frozen=True)
class Runtime:
    clients: AwsClients
    settings: Settings
    retry: RetryPolicy
    notifier: Notifier
    notify_window: NotifyWindow
    task_definitions: TaskDefinitionCache
    ledger: RedeployLedger
    rollouts: RolloutStore
    queue: JobQueue | None = None  # the redeploy queue; None: jobs run inline

    @classmethod
    def build(
        cls,
        clients: AwsClients,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        notifier: Notifier | None = None,
        notify_window: NotifyWindow | None = None,
        task_definitions: TaskDefinitionCache | None = None,
        ledger: RedeployLedger | None = None,
        rollouts: RolloutStore | None = None,
        queue: JobQueue | None = None,
    ) -> Runtime:
        retry = retry or RetryPolicy()
        if notifier is None:
            notifier = (
                SnsNotifier(clients.sns, settings.topic_arn, retry)
                if settings.topic_arn
                else LogOnlyNotifier()
            )
        if notify_window is None:
            if settings.state_table:
                notify_window = DynamoDbNotifyWindow(
                    clients.dynamodb, settings.state_table, settings.notify_window, retry
                )
            else:
                # One in-memory window per process, so a warm Lambda remembers it.
                notify_window = _PROCESS_WINDOWS.setdefault(
                    settings.notify_window, MemoryNotifyWindow(settings.notify_window)
                )
        if ledger is None:
            ledger = (
                DynamoDbRedeployLedger(clients.dynamodb, settings.state_table, retry)
                if settings.state_table
                else _PROCESS_LEDGER
            )
        if rollouts is None:
            rollouts = (
                DynamoDbRolloutStore(clients.dynamodb, settings.state_table, retry)
                if settings.state_table
                else _PROCESS_ROLLOUTS
            )
        if queue is None and settings.redeploy_queue_url:
            queue = SqsJobQueue(clients.sqs, settings.redeploy_queue_url, retry)
        return cls(
            ledger=ledger,
            rollouts=rollouts,
            queue=queue,
            clients=clients,
            settings=settings,
            retry=retry,
            notifier=notifier,
            notify_window=notify_window,
            task_definitions=(
                task_definitions if task_definitions is not None else PROCESS_TASK_DEFINITION_CACHE
            ),
        )

    @classmethod
    def build_for_one_run(cls, clients: AwsClients, settings: Settings, **kwargs: Any) -> Runtime:
        """A runtime for one command-line run: without a state table, its window and ledger
        start empty instead of being the process-wide ones a warm Lambda keeps."""
        if not settings.state_table:
            kwargs.setdefault("notify_window", MemoryNotifyWindow(settings.notify_window))
            kwargs.setdefault("ledger", MemoryRedeployLedger())
            kwargs.setdefault("rollouts", MemoryRolloutStore())
        return cls.build(clients, settings, **kwargs)

    def with_deadline(self, remaining: Callable[[], float]) -> Runtime:
        """The same runtime whose retries stop when ``remaining()`` reaches zero."""
        return dataclasses.replace(self, retry=self.retry.with_deadline(remaining))

    def discovery(self) -> ConsumerDiscovery:
        return ConsumerDiscovery(
            self.clients.ecs,
            self.retry,
            clusters=self.settings.clusters,
            cache=self.task_definitions,
            max_workers=self.settings.max_workers,
        )

    def secret_lookup(self) -> SecretLookup:
        return SecretLookup(self.clients.secretsmanager, self.retry)

    def redeployer(self) -> Redeployer:
        return Redeployer(
            self.clients.ecs, self.retry, self.ledger, max_workers=min(5, self.settings.max_workers)
        )


def lambda_deadline(
    remaining_millis: Callable[[], int], margin_seconds: float = 10.0
) -> Callable[[], float]:
    """Seconds left before a Lambda must wrap up, keeping a margin to report and flush."""
    return lambda: remaining_millis() / 1000.0 - margin_seconds


def fixed_deadline(seconds: float) -> Callable[[], float]:
    end = time.monotonic() + seconds
    return lambda: end - time.monotonic()
