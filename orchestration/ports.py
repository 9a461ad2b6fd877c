"""What a use case is given: the adapters it reaches AWS and rotor's state through.

The use cases (``fanout``, ``rotation``, ``tracking``) are typed against these protocols, never
against the composition root that builds the adapters (``orchestration.runtime.Runtime``,
which satisfies them): so the root may import the use cases' packages without a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self

from orchestration.aws.clients import AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.ecs.discovery import ConsumerDiscovery
from orchestration.ecs.redeploy import Redeployer
from orchestration.notifications import Notifier
from orchestration.secrets.lookup import SecretLookup
from orchestration.settings import Settings
from orchestration.state.consumer_index import ConsumerIndex
from orchestration.state.notify_window import NotifyWindow
from orchestration.state.rollouts import RolloutStore
from orchestration.state.service_lease import ServiceLeases


class Adapters(Protocol):
    """Clients, settings, the retry policy and the state a job or an event is handled with."""

    @property
    def clients(self) -> AwsClients: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def retry(self) -> RetryPolicy: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def notify_window(self) -> NotifyWindow: ...

    @property
    def rollouts(self) -> RolloutStore: ...

    @property
    def leases(self) -> ServiceLeases: ...

    @property
    def consumer_index(self) -> ConsumerIndex | None:
        """The consumer index; None without a state table (rotor then scans)."""
        ...

    def in_region(self, region: str) -> Self:
        """The same adapters acting in ``region`` (AWS clients there; state shared)."""
        ...

    def discovery(self, clusters: Sequence[str] | None = None) -> ConsumerDiscovery:
        """Consumer discovery over ``clusters`` (default: the settings' clusters)."""
        ...

    def secret_lookup(self) -> SecretLookup: ...

    def redeployer(self) -> Redeployer: ...
