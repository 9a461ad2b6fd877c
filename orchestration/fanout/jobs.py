"""Redeploy jobs: what the rotation handler plans and the worker carries out.

A ``RedeployJob`` names one stale consumer of one new secret value: enough for a worker in
another container, minutes later (debounce), to look at the service again and decide by the
freshness rule at run time. A job sent promptly also carries the planner's own look at the
service (``snapshot``, read at ``described_at``): a worker that runs it soon after decides on
that instead of describing the service once more (``ROTOR_SNAPSHOT_MAX_AGE``). A ``PlanJob``
is the part of a plan the rotation handler had no time left to make (clusters not yet
scanned): a worker plans them and enqueues their jobs.

Jobs travel as JSON on the redeploy queue; ``parse_job`` turns a message body back into one,
or raises ``InvalidEventError`` with a clear message (a poison message is dropped, not retried).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    computed_field,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from orchestration.errors import InvalidEventError, InvalidReferenceError
from orchestration.events.classification import Classification
from orchestration.models import ServiceSnapshot
from orchestration.secrets.references import (
    SecretIdentity,
    SecretReference,
)
from orchestration.state.redeploy_ledger import NewValue
from orchestration.times import iso, utc

log = logging.getLogger(__name__)

#: A job carries the planner's snapshot only while its whole body stays within this: ten such
#: jobs (one ``SendMessageBatch``) stay well under SQS's 256 KiB per message and per batch.
#: A usual service's snapshot is under 1 KiB; one with ECS's 50 tags at their longest is not,
#: and goes without (its worker describes it).
MAX_CARRYING_BYTES = 16 * 1024


@pydantic_dataclass(frozen=True, kw_only=True)
class JobReference(SecretReference):
    """One parsed reference to the secret, as the planner found it in the task definition: the
    reference's own fields, and the container it stands in."""

    container: str

    @classmethod
    def of(cls, container: str, ref: SecretReference) -> JobReference:
        return cls(container=container, **_reference_fields(ref))

    def reference(self) -> tuple[str, SecretReference]:
        return self.container, SecretReference(**_reference_fields(self))


def _reference_fields(ref: SecretReference) -> dict[str, Any]:
    return {f.name: getattr(ref, f.name) for f in dataclasses.fields(SecretReference)}


class Rotation(BaseModel):
    """One new value of one secret."""

    model_config = ConfigDict(frozen=True)

    secret_arn: str
    version: str | None = None  # the version that became AWSCURRENT, when known
    #: True: ``version`` is what rotor found AWSCURRENT when it described the secret. False:
    #: rotor could not describe it; ``rotated_at`` pairs the deliveries of one rotation.
    described: bool = True
    rotated_at: datetime
    event_id: str = ""
    #: A replica's rotation: ``secret_arn`` is the replica's ARN in ``replica_region``, and
    #: ``version`` the primary's new version, which the replica holds once replicated. The
    #: worker redeploys its consumers only then (``primary_secret_arn`` says where to ask).
    #: Both absent in a primary's rotation (and in messages older than replicas).
    replica_region: str | None = None
    primary_secret_arn: str | None = None
    #: A replica's rotation: when rotor last found the replica not yet holding the new value
    #: (planning: the primary said it was still replicating; the worker: the job was sent
    #: again to wait). A deployment made until the replica holds it started tasks with the
    #: old value there, however long after the primary's event: not fresh.
    replica_waited_at: datetime | None = None

    @model_validator(mode="after")
    def _replica_fields(self) -> Rotation:
        if self.replica_region is None and self.primary_secret_arn is None:
            if self.replica_waited_at is not None:
                raise ValueError("replica_waited_at is a replica's")
            return self
        if self.replica_region is None or self.primary_secret_arn is None:
            raise ValueError("replica_region and primary_secret_arn go together")
        try:
            replica = SecretIdentity.from_full_arn(self.secret_arn)
            primary = SecretIdentity.from_full_arn(self.primary_secret_arn)
        except InvalidReferenceError as exc:
            raise ValueError(str(exc)) from None
        if replica.region != self.replica_region or primary.region == self.replica_region:
            raise ValueError("a replica's secret_arn is in replica_region, its primary is not")
        if (replica.account, replica.name, replica.suffix) != (
            primary.account,
            primary.name,
            primary.suffix,
        ):
            raise ValueError("a replica's ARN differs from its primary's only in the region")
        if not self.described or not self.version:
            raise ValueError("a replica's rotation names the primary's version")
        return self

    @property
    def is_replica(self) -> bool:
        return self.replica_region is not None

    @property
    def fresh_from(self) -> datetime:
        """For the freshness rule, when the new value became current where the consumers read
        it, as far as rotor knows: the event's time, or, for a replica found lagging, not
        before that moment."""
        if self.replica_waited_at is None:
            return self.rotated_at
        return max(utc(self.rotated_at), utc(self.replica_waited_at))

    @classmethod
    def of(cls, value: NewValue, event: Classification) -> Rotation:
        return cls(
            secret_arn=value.secret_arn,
            version=value.version_id,
            described=value.described,
            rotated_at=event.event_time,
            event_id=event.event_id,
        )

    @classmethod
    def unresolved(cls, secret_arn: str, event: Classification) -> Rotation:
        """Named by the event alone (nothing to deploy, so the secret was not described)."""
        return cls(
            secret_arn=secret_arn,
            version=event.version_id,
            described=False,
            rotated_at=event.event_time,
            event_id=event.event_id,
        )

    def new_value(self) -> NewValue:
        """The ledger's name for the new value."""
        return NewValue(
            self.secret_arn,
            self.version,
            described=self.described,
            became_current_at=None if self.described else self.rotated_at,
        )

    def rotation_fields(self) -> dict[str, Any]:
        """This rotation's own fields, to make a job about it."""
        return self.model_dump(
            include={
                "secret_arn",
                "version",
                "described",
                "rotated_at",
                "event_id",
                "replica_region",
                "primary_secret_arn",
                "replica_waited_at",
            }
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rotation_id(self) -> str:
        """One id per new value: deliveries of one rotation share it."""
        if self.described and self.version:
            return f"{self.secret_arn}@{self.version}"
        return f"{self.secret_arn}@{iso(self.rotated_at)}"


class RedeployJob(Rotation):
    kind: Literal["redeploy"] = "redeploy"
    service_arn: str
    cluster_arn: str
    references: tuple[JobReference, ...] = ()
    #: The planner's look at the service (its DescribeServices answer as rotor maps it), and a
    #: moment no later than that DescribeServices call. Both absent in a job that must look
    #: again when it runs (debounced, sent again to wait, too big) and in older messages.
    snapshot: ServiceSnapshot | None = None
    described_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _snapshot_fields(self) -> RedeployJob:
        if (self.snapshot is None) != (self.described_at is None):
            raise ValueError("snapshot and described_at go together")
        if self.snapshot is not None and (
            self.snapshot.arn != self.service_arn or self.snapshot.cluster_arn != self.cluster_arn
        ):
            raise ValueError("the snapshot is of another service than service_arn/cluster_arn")
        return self

    @property
    def key(self) -> str:
        """Jobs with one key are one job: (service, new value)."""
        return f"{self.service_arn}#{self.rotation_id}"

    def carrying(self, snapshot: ServiceSnapshot, described_at: datetime) -> RedeployJob:
        """This job with the planner's look at its service, read no earlier than
        ``described_at``; the job as it is when that look would make its message too big
        (``MAX_CARRYING_BYTES``: then the worker describes the service, as for any job)."""
        carried = RedeployJob.model_validate(
            {
                **self.model_dump(exclude={"rotation_id"}),
                "snapshot": snapshot,
                "described_at": utc(described_at),
            }
        )
        size = len(carried.model_dump_json().encode())
        if size > MAX_CARRYING_BYTES:
            log.info(
                "job for %s sent without its snapshot: %d bytes with it (at most %d)",
                self.service_arn,
                size,
                MAX_CARRYING_BYTES,
            )
            return self.without_snapshot()
        return carried

    def without_snapshot(self) -> RedeployJob:
        """The job to run later: it describes the service when it runs."""
        if self.snapshot is None and self.described_at is None:
            return self
        return self.model_copy(update={"snapshot": None, "described_at": None})


class PlanJob(Rotation):
    kind: Literal["plan"] = "plan"
    secret: SecretIdentity
    clusters: tuple[str, ...] | None = None  # None: every cluster rotor scans

    @property
    def key(self) -> str:
        return f"plan#{self.rotation_id}#{','.join(self.clusters or ('*',))}"


Job = Annotated[RedeployJob | PlanJob, Field(discriminator="kind")]


class _Message(RootModel[Job]):
    """A message body: one job of either kind."""


def parse_job(body: str) -> RedeployJob | PlanJob:
    try:
        return _Message.model_validate_json(body).root
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise InvalidEventError(f"not a rotor job: {problems}") from None


def message_id(job: RedeployJob | PlanJob) -> str:
    """A batch entry id (letters, digits, ``-``, ``_``; at most 80) unique per job key."""
    return hashlib.sha256(job.key.encode()).hexdigest()[:40]
