"""The composition root: everything a use case needs, built once and passed in.

The use cases never import it: they are typed against the protocols of ``orchestration.ports``
(and ``RotationAdapters``), which ``Runtime`` satisfies.

No module holds state of its own. A Lambda container builds one ``Runtime`` and keeps it (see
``handlers.entry.make_handler``), so its clients, task-definition cache and in-memory windows
and ledger stay warm across invocations; a command-line run builds its own, which starts empty.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.ecs.discovery import ConsumerDiscovery
from orchestration.ecs.redeploy import Redeployer
from orchestration.fanout.queue import JobQueue, SqsJobQueue
from orchestration.notifications import LogOnlyNotifier, Notifier, SnsNotifier
from orchestration.secrets.lookup import SecretLookup
from orchestration.settings import Settings
from orchestration.state.consumer_index import ConsumerIndex
from orchestration.state.notify_window import DynamoDbNotifyWindow, MemoryNotifyWindow, NotifyWindow
from orchestration.state.redeploy_ledger import (
    DynamoDbRedeployLedger,
    MemoryRedeployLedger,
    RedeployLedger,
)
from orchestration.state.rollouts import DynamoDbRolloutStore, MemoryRolloutStore, RolloutStore
from orchestration.state.service_lease import ServiceLeases
from orchestration.state.store import DynamoDbStateStore, MemoryStateStore
from orchestration.state.task_definitions import StoredTaskDefinitionCache, TaskDefinitionCache


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
    #: one rotor job at a time redeploys a service (``orchestration.state.service_lease``)
    leases: ServiceLeases = field(default_factory=lambda: ServiceLeases(MemoryStateStore()))
    #: secret -> services (``orchestration.state.consumer_index``); None: no table, rotor scans
    consumer_index: ConsumerIndex | None = None

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
        leases: ServiceLeases | None = None,
        consumer_index: ConsumerIndex | None = None,
    ) -> Runtime:
        retry = retry or RetryPolicy()
        if settings.ecs_containers > 1:
            clients.ecs_rate_limiter.share_among(settings.ecs_containers)
        if settings.ecs_read_share < 1:
            clients.ecs_rate_limiter.hold_read_share(settings.ecs_read_share)
        if notifier is None:
            notifier = (
                SnsNotifier(clients.sns, settings.topic_arn, retry)
                if settings.topic_arn
                else LogOnlyNotifier()
            )
        if notify_window is None:
            notify_window = (
                DynamoDbNotifyWindow(
                    clients.dynamodb, settings.state_table, settings.notify_window, retry
                )
                if settings.state_table
                else MemoryNotifyWindow(settings.notify_window)
            )
        if ledger is None:
            ledger = (
                DynamoDbRedeployLedger(clients.dynamodb, settings.state_table, retry)
                if settings.state_table
                else MemoryRedeployLedger()
            )
        if rollouts is None:
            rollouts = (
                DynamoDbRolloutStore(clients.dynamodb, settings.state_table, retry)
                if settings.state_table
                else MemoryRolloutStore()
            )
        if leases is None:
            leases = ServiceLeases(
                DynamoDbStateStore(clients.dynamodb, settings.state_table, retry)
                if settings.state_table
                else MemoryStateStore()
            )
        if consumer_index is None and settings.state_table:
            consumer_index = ConsumerIndex.for_table(
                clients.dynamodb, settings.state_table, retry, settings.index_max_age
            )
        if queue is None and settings.redeploy_queue_url:
            queue = SqsJobQueue(clients.sqs, settings.redeploy_queue_url, retry)
        return cls(
            ledger=ledger,
            rollouts=rollouts,
            queue=queue,
            leases=leases,
            consumer_index=consumer_index,
            clients=clients,
            settings=settings,
            retry=retry,
            notifier=notifier,
            notify_window=notify_window,
            task_definitions=(
                task_definitions
                if task_definitions is not None
                else StoredTaskDefinitionCache(clients.dynamodb, settings.state_table, retry)
                if settings.state_table
                else TaskDefinitionCache()
            ),
        )

    def with_deadline(self, remaining: Callable[[], float]) -> Runtime:
        """The same runtime whose retries stop when ``remaining()`` reaches zero: everything
        that calls AWS (notifier, queue, windows, ledger, rollouts, stored task definitions)
        keeps its state and is reached through the bounded policy."""
        retry = self.retry.with_deadline(remaining)
        return dataclasses.replace(
            self,
            retry=retry,
            notifier=self.notifier.with_retry(retry),
            queue=self.queue.with_retry(retry) if self.queue is not None else None,
            notify_window=self.notify_window.with_retry(retry),
            ledger=self.ledger.with_retry(retry),
            rollouts=self.rollouts.with_retry(retry),
            leases=self.leases.with_retry(retry),
            task_definitions=self.task_definitions.with_retry(retry),
            consumer_index=(
                self.consumer_index.with_retry(retry) if self.consumer_index is not None else None
            ),
        )

    def in_region(self, region: str) -> Runtime:
        """The same runtime acting in ``region`` (a replica's consumers): its AWS clients are
        that region's (``AwsClients.in_region``, an ECS rate limiter per region); the state, the
        queue, the notifier and the retry policy stay the stack's own, in its region."""
        clients = self.clients.in_region(region)
        return self if clients is self.clients else dataclasses.replace(self, clients=clients)

    def discovery(self, clusters: Sequence[str] | None = None) -> ConsumerDiscovery:
        """Consumer discovery over ``clusters`` (default: the settings' clusters)."""
        return ConsumerDiscovery(
            self.clients.ecs,
            self.retry,
            clusters=self.settings.clusters if clusters is None else clusters,
            cache=self.task_definitions,
            max_workers=self.settings.max_workers,
            # ROTOR_CLUSTERS names apply in every region: another region may lack one.
            absent_names_ok=self.clients.region != self.clients.home_region,
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
