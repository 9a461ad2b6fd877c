"""Notifications about rollouts: a stale service rotor only reports, a service redeployed too
often, a redeploy the circuit breaker rolled back."""

from __future__ import annotations

from datetime import datetime

from orchestration.notifications import Notification, render
from orchestration.times import iso

NOTIFY_ONLY = "stale_service"
FLAPPING = "redeploy_flapping"
ROLLED_BACK = "redeploy_rolled_back"


def _secret_name(secret_arn: str) -> str:
    name = secret_arn.split(":secret:", 1)[-1]
    head, _, tail = name.rpartition("-")
    return head if head and len(tail) == 6 else name


def stale_service(
    secret_arn: str, service_arn: str, rotated_at: datetime, reason: str
) -> Notification:
    service = service_arn.rsplit("/", 1)[-1]
    body = render(
        f"{service} still runs tasks started before {_secret_name(secret_arn)} changed",
        [
            ("secret", secret_arn),
            ("service", service_arn),
            ("value changed", iso(rotated_at)),
            ("why", reason),
        ],
        [
            (
                "what to do",
                [
                    "The service is tagged rotor:redeploy=notify, so rotor did not redeploy it.",
                    "Deploy it when convenient; its tasks read the old value until then.",
                ],
            )
        ],
    )
    return Notification(
        kind=NOTIFY_ONLY,
        subject=f"rotor: {service} holds the old value of {_secret_name(secret_arn)}",
        body=body,
        secret=secret_arn,
        data={"service": service_arn, "rotated_at": iso(rotated_at)},
    )


def flapping(secret_arn: str, service_arn: str, rotated_at: datetime, limit: int) -> Notification:
    service = service_arn.rsplit("/", 1)[-1]
    body = render(
        f"rotor did not redeploy {service}: {limit} forced deployments in the last hour",
        [
            ("secret", secret_arn),
            ("service", service_arn),
            ("value changed", iso(rotated_at)),
            ("limit", f"{limit} per hour (ROTOR_MAX_REDEPLOYS_PER_HOUR)"),
        ],
        [
            (
                "what to do",
                [
                    "Find out why the secret keeps changing (a rotation or writer in a loop?).",
                    "The service's tasks read the old value until it is deployed again.",
                ],
            )
        ],
    )
    return Notification(
        kind=FLAPPING,
        subject=f"rotor: {service} redeployed {limit} times in an hour; skipped",
        body=body,
        secret=secret_arn,
        data={"service": service_arn, "limit": limit},
    )


def rolled_back(secret_arn: str, service_arn: str, deployment_id: str, reason: str) -> Notification:
    service = service_arn.rsplit("/", 1)[-1]
    body = render(
        f"rotor's redeploy of {service} failed and was rolled back",
        [
            ("secret", secret_arn),
            ("service", service_arn),
            ("deployment", deployment_id),
            ("reason", reason),
        ],
        [
            (
                "what to do",
                [
                    "The service again runs tasks that hold the old credential.",
                    "Fix what stops the new tasks from starting, then deploy the service.",
                ],
            )
        ],
    )
    return Notification(
        kind=ROLLED_BACK,
        subject=f"rotor: redeploy of {service} rolled back",
        body=body,
        secret=secret_arn,
        data={"service": service_arn, "deployment": deployment_id, "reason": reason},
    )
