"""The freshness rule, and the verdict for each consumer of a rotated secret.

A service needs a redeploy for a rotation completed at time T if and only if it references the
secret unpinned and its PRIMARY deployment was created before T (docs/freshness.md).
Duplicate events then find the service fresh, and secrets rotated together coalesce into one
deployment.

A stale service on the CODE_DEPLOY or EXTERNAL deployment controller gets ``Action.MANUAL``:
AWS refuses ``UpdateService(forceNewDeployment)`` for it, so rotor says what to run instead.
"""

from __future__ import annotations

from datetime import datetime

from orchestration.models import Action, Consumer, DeploymentController, Verdict
from orchestration.secrets.references import SecretReference
from orchestration.times import iso, utc, value_current_by

OPT_TAG = "rotor:redeploy"
__all__ = ["MANUAL_HOW", "OPT_TAG", "decide", "plan", "value_current_by"]


def decide(consumer: Consumer, rotated_at: datetime, *, opt_in: bool = False) -> Verdict:
    """The verdict for one consumer of a secret whose new value became current at ``rotated_at``."""
    service = consumer.service

    def skip(reason: str) -> Verdict:
        return Verdict(consumer, Action.SKIP, reason)

    if consumer.pinned:
        pins = sorted({_pin(ref) for _, ref in consumer.references})
        return skip(f"pinned ({', '.join(pins)}): a rotation does not change what it reads")
    if service.status != "ACTIVE":
        return skip(f"service is {service.status}, not ACTIVE")
    if service.desired_count == 0:
        return skip("desired count is 0: no task holds the old value")
    opt = service.tags.get(OPT_TAG, "").strip().lower()
    if opt == "false":
        return skip(f"opted out (tag {OPT_TAG}=false)")
    if opt_in and opt != "true":
        return skip(f"not opted in (ROTOR_OPT_IN=true and no tag {OPT_TAG}=true)")
    created = service.primary_created_at
    if created is not None and utc(created) >= value_current_by(rotated_at):
        return skip(
            f"already fresh: PRIMARY deployment created {iso(created)}, "
            f"at or after the new value ({iso(rotated_at)})"
        )
    when = f"created {iso(created)}" if created else "of unknown age"
    stale = f"PRIMARY deployment {when}, before the new value ({iso(rotated_at)})"
    if not service.rotor_can_redeploy:
        how = MANUAL_HOW[service.controller]
        return Verdict(consumer, Action.MANUAL, f"{stale}; {how}")
    return Verdict(consumer, Action.REDEPLOY, stale)


MANUAL_HOW = {
    DeploymentController.CODE_DEPLOY: (
        "the CODE_DEPLOY controller refuses a forced deployment: start a CodeDeploy deployment"
    ),
    DeploymentController.EXTERNAL: (
        "the EXTERNAL controller refuses a forced deployment: create a new task set"
    ),
}


def plan(consumers: list[Consumer], rotated_at: datetime, *, opt_in: bool = False) -> list[Verdict]:
    return [decide(c, rotated_at, opt_in=opt_in) for c in consumers]


def _pin(ref: SecretReference) -> str:
    return f"version id {ref.version_id}" if ref.version_id else f"stage {ref.version_stage}"
