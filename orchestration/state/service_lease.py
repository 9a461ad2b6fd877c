"""A short lease per service: one rotor job at a time redeploys a service.

The redeploy ledger keeps one deployment per (service, new value). Two jobs for two secrets of
one service (say debounced jobs for secrets rotated together) have two ledger keys: run at the
same moment by two workers, both would see the service stale and both would deploy. So, after
its policies and before its ledger claim, a job takes the service's lease
(``service-lease#<service ARN>`` in the state store):

* while another job holds it (pending, its lease not yet run out) the job waits, then comes
  back later;
* a job that deployed leaves the lease confirmed with the time of its deployment: the next job
  to take the lease learns that the service was deployed since it looked (``deployed_since``),
  and does not deploy again on its older snapshot;
* a job that did not deploy gives the lease back, still naming the deployment it learnt of
  when it took the lease (if any), so that a third job learns it too.

The lease of a job that died runs out when the job's time would have; a confirmed lease is
kept an hour (the state table's TTL), long after any job that could have read the service
before its deployment.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestration.aws.retry import RetryPolicy
from orchestration.errors import AwsCallError
from orchestration.state import keys
from orchestration.state.store import Record, StateStore, Won
from orchestration.times import utc

KEEP_FOR = keys.SERVICE_LEASE_KEEP
MAX_LEASE = timedelta(minutes=15)
LEASE_MARGIN = timedelta(seconds=30)
DEPLOYED_AT = "deployed_at"


@dataclass(frozen=True, slots=True)
class ServiceLease:
    record: Record
    #: A deployment made by the job that held the lease before (``None``: none known).
    deployed_since: datetime | None = None


def lease_key(service_arn: str) -> str:
    return keys.service_lease(service_arn)


class ServiceLeases:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def take(self, service_arn: str, now: datetime, lease: timedelta) -> ServiceLease | None:
        """The service's lease for ``lease`` (the job's time left), or ``None`` while another
        job holds it."""
        replaced: list[Record] = []

        def replaces(old: Record) -> bool:  # a confirmed lease: its job is done
            replaced.append(old)
            return True

        answer = self._store.claim(
            lease_key(service_arn),
            uuid.uuid4().hex,
            now=now,
            lease_until=utc(now) + min(max(lease, timedelta(0)), MAX_LEASE) + LEASE_MARGIN,
            expires_at=utc(now) + KEEP_FOR,
            replaces=replaces,
        )
        if not isinstance(answer, Won):
            return None
        deployed = replaced[-1].data.get(DEPLOYED_AT) if replaced else None
        return ServiceLease(answer.record, deployed if isinstance(deployed, datetime) else None)

    def give_back(self, lease: ServiceLease, deployed_at: datetime | None) -> None:
        """The job is done: confirmed with its deployment's time, or, when it made none, with
        the time of the deployment it learnt of when it took the lease (the next job must learn
        it too: three jobs for three secrets of one service read it before the first deployed),
        or released when it knows of none."""
        kept = deployed_at if deployed_at is not None else lease.deployed_since
        if kept is not None:
            try:
                self._store.confirm(lease.record, {DEPLOYED_AT: kept})
                return
            except AwsCallError:
                pass  # not kept: released, so it holds up no one (the ledger still answers)
        self._store.release(lease.record)

    def with_retry(self, retry: RetryPolicy) -> ServiceLeases:
        return ServiceLeases(self._store.with_retry(retry))
