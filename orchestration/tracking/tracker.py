"""Follow rotor's own deployments to their end (``ECS Deployment State Change`` events).

* ``SERVICE_DEPLOYMENT_COMPLETED``: the service is fresh; ``TimeToFresh`` is the time from the
  new value to completion.
* ``SERVICE_DEPLOYMENT_FAILED``: the circuit breaker rolled the deployment back, so the service
  again runs tasks holding the old credential: ``RedeployRolledBack`` and a notification.

(The tracker's rule sends only these two: the worker already records ``deploying``.)

Only deployments rotor started (recorded by the worker under their deployment id) are
tracked; every other deployment is noted and left alone. The end of a deployment frees its
slot under the per-cluster cap.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from orchestration.events.classification import Classification
from orchestration.fanout import notices
from orchestration.outcome import REDEPLOY_ROLLED_BACK, TIME_TO_FRESH, EventOutcome
from orchestration.ports import Adapters
from orchestration.state.rollouts import DeploymentRecord, ServiceStatus, Status
from orchestration.times import utc

log = logging.getLogger(__name__)

COMPLETED = "SERVICE_DEPLOYMENT_COMPLETED"
FAILED = "SERVICE_DEPLOYMENT_FAILED"


def handle_deployment_state(event: Classification, runtime: Adapters) -> EventOutcome:
    outcome = EventOutcome(event)
    if not event.deployment_id:
        outcome.notes.append("the event names no deployment")
        return outcome
    latest = _end_superseded(event, runtime, outcome)
    record = runtime.rollouts.deployment(event.deployment_id)
    if record is None:
        outcome.notes.append(f"deployment {event.deployment_id} was not started by rotor")
        return outcome
    outcome.secret = record.secret_arn or None
    now = datetime.now(UTC)
    if event.event_name == COMPLETED:
        seconds = max(0.0, (utc(event.event_time) - utc(record.rotated_at)).total_seconds())
        status = ServiceStatus(
            Status.FRESH,
            f"deployment {record.deployment_id} completed",
            now,
            record.cluster_arn,
            record.deployment_id,
        )
        outcome.count(TIME_TO_FRESH, seconds)
    elif event.event_name == FAILED:
        reason = event.reason.split(": ", 1)[-1]
        status = ServiceStatus(
            Status.FAILED,
            f"deployment {record.deployment_id} rolled back: {reason}",
            now,
            record.cluster_arn,
            record.deployment_id,
        )
        notification = notices.rolled_back(
            record.secret_arn, record.service_arn, record.deployment_id, reason
        )
        runtime.notifier.publish(notification)
        outcome.notifications.append(notification)
        outcome.count(REDEPLOY_ROLLED_BACK)
    else:
        outcome.notes.append(f"{event.event_name}: nothing to track")
        return outcome
    runtime.rollouts.set_status(record.rotation_id, record.service_arn, status)
    # The cluster slot is the service's, not the deployment's: while a later deployment of
    # rotor's runs (this event is late, or delivered again), the slot is that one's.
    if latest is None or latest.deployment_id == record.deployment_id:
        runtime.rollouts.free_rollout_slot(record.cluster_arn, record.service_arn)
    outcome.notes.append(f"{record.service_arn}: {status.status.value} ({status.detail})")
    log.info("%s: %s", record.service_arn, status.detail)
    return outcome


def _end_superseded(
    event: Classification, runtime: Adapters, outcome: EventOutcome
) -> DeploymentRecord | None:
    """Only the PRIMARY deployment of a service ends with an event: a deployment of rotor's
    that another one superseded (someone's UpdateService, a pipeline) is never reported.
    When another deployment of the service ends, rotor's last one ends with it: fresh when
    that one completed (its tasks started after the new value), failed when it rolled back;
    either way its place under the cluster cap is free. Returns rotor's last deployment of
    the service (``None``: none known, or not looked up)."""
    if not event.service_arn or event.event_name not in (COMPLETED, FAILED):
        return None
    latest = runtime.rollouts.latest_deployment(event.service_arn)
    if latest is None or latest.deployment_id == event.deployment_id:
        return latest
    # Events are not delivered in order: the end of a deployment that ended before rotor's
    # began (the one rotor's replaced, say) superseded nothing. An event's time is whole
    # seconds, so only an earlier second tells; within the same second it counts as later
    # (a deployment that superseded rotor's takes far longer than that to end).
    if latest.created_at is not None and utc(event.event_time) < utc(latest.created_at).replace(
        microsecond=0
    ):
        return latest
    completed = event.event_name == COMPLETED
    status = ServiceStatus(
        Status.FRESH if completed else Status.FAILED,
        f"deployment {latest.deployment_id} superseded by {event.deployment_id}, which "
        + ("completed" if completed else "was rolled back"),
        datetime.now(UTC),
        latest.cluster_arn,
        latest.deployment_id,
    )
    # Written only over that deployment's "deploying": a superseded deployment that already
    # ended (or an older one) is left as it is.
    runtime.rollouts.set_status(latest.rotation_id, latest.service_arn, status)
    runtime.rollouts.free_rollout_slot(latest.cluster_arn, latest.service_arn)
    outcome.notes.append(f"{latest.service_arn}: {status.detail}")
    return latest
