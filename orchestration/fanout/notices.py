"""Notifications about rollouts: a stale service rotor only reports, a service redeployed too
often, a redeploy the circuit breaker rolled back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestration.notifications import Notification, render
from orchestration.times import iso

NOTIFY_ONLY = "stale_service"
FLAPPING = "redeploy_flapping"
ROLLED_BACK = "redeploy_rolled_back"
REPLICATION_FAILED = "replication_failed"


def _secret_name(secret_arn: str) -> str:
    name = secret_arn.split(":secret:", 1)[-1]
    head, _, tail = name.rpartition("-")
    return head if head and len(tail) == 6 else name


def stale_service(
    secret_arn: str, service_arn: str, rotated_at: datetime, reason: str
) -> Notification:
    service = _service_name(service_arn)
    return _service_notice(
        NOTIFY_ONLY,
        secret_arn,
        service_arn,
        title=f"{service} still runs tasks started before {_secret_name(secret_arn)} changed",
        subject=f"rotor: {service} holds the old value of {_secret_name(secret_arn)}",
        facts=[("value changed", iso(rotated_at)), ("why", reason)],
        what_to_do=[
            "The service is tagged rotor:redeploy=notify, so rotor did not redeploy it.",
            "Deploy it when convenient; its tasks read the old value until then.",
        ],
        data={"rotated_at": iso(rotated_at)},
    )


def flapping(secret_arn: str, service_arn: str, rotated_at: datetime, limit: int) -> Notification:
    service = _service_name(service_arn)
    return _service_notice(
        FLAPPING,
        secret_arn,
        service_arn,
        title=f"rotor did not redeploy {service}: {limit} forced deployments in the last hour",
        subject=f"rotor: {service} redeployed {limit} times in an hour; skipped",
        facts=[
            ("value changed", iso(rotated_at)),
            ("limit", f"{limit} per hour (ROTOR_MAX_REDEPLOYS_PER_HOUR)"),
        ],
        what_to_do=[
            "Find out why the secret keeps changing (a rotation or writer in a loop?).",
            "The service's tasks read the old value until it is deployed again.",
        ],
        data={"limit": limit},
    )


def rolled_back(secret_arn: str, service_arn: str, deployment_id: str, reason: str) -> Notification:
    service = _service_name(service_arn)
    return _service_notice(
        ROLLED_BACK,
        secret_arn,
        service_arn,
        title=f"rotor's redeploy of {service} failed and was rolled back",
        subject=f"rotor: redeploy of {service} rolled back",
        facts=[("deployment", deployment_id), ("reason", reason)],
        what_to_do=[
            "The service again runs tasks that hold the old credential.",
            "Fix what stops the new tasks from starting, then deploy the service.",
        ],
        data={"deployment": deployment_id, "reason": reason},
    )


def replication_failed(
    replica_arn: str,
    region: str,
    detail: str,
    service_arns: list[str],
    rotated_at: datetime,
) -> Notification:
    """A replica that does not hold the new value (replication ``Failed``, or it never caught
    up): its consumers in ``region`` were not redeployed, and keep the old value."""
    name = _secret_name(replica_arn)
    body = render(
        f"The replica of {name} in {region} does not hold its new value: "
        "its consumers there were not redeployed",
        [
            ("secret", replica_arn),
            ("region", region),
            ("value changed", iso(rotated_at)),
            ("status", detail),
        ],
        [
            ("consumers not redeployed", sorted(service_arns)),
            (
                "what to do",
                [
                    "Fix the replication (Secrets Manager console, or "
                    "aws secretsmanager describe-secret on the primary: ReplicationStatus).",
                    "Once the replica holds the new value, deploy these services (or replay "
                    "the rotation's event with rotor replay).",
                ],
            ),
        ],
        rest=f"rotor discover {replica_arn} --region {region}",
    )
    return Notification(
        kind=REPLICATION_FAILED,
        subject=f"rotor: replica of {name} in {region} not in sync; consumers not redeployed",
        body=body,
        secret=replica_arn,
        data={"region": region, "status": detail, "services": sorted(service_arns)},
    )


def _service_name(service_arn: str) -> str:
    return service_arn.rsplit("/", 1)[-1]


def _service_notice(
    kind: str,
    secret_arn: str,
    service_arn: str,
    *,
    title: str,
    subject: str,
    facts: list[tuple[str, str]],
    what_to_do: list[str],
    data: dict[str, Any],
) -> Notification:
    """A notice about one service and one secret: the secret and service first among the
    facts, and in ``data``."""
    body = render(
        title,
        [("secret", secret_arn), ("service", service_arn), *facts],
        [("what to do", what_to_do)],
    )
    return Notification(
        kind=kind,
        subject=subject,
        body=body,
        secret=secret_arn,
        data={"service": service_arn, **data},
    )
