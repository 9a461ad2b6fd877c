"""Stale consumers rotor cannot redeploy, and what people must run instead.

AWS refuses ``UpdateService(forceNewDeployment)`` for services on the CODE_DEPLOY (blue/green) and
EXTERNAL deployment controllers (UpdateService, ECS API reference). New tasks, which are what
read the new secret value, come only from the controller:

* CODE_DEPLOY: a new CodeDeploy deployment (``aws deploy create-deployment``) whose AppSpec names
  the task definition the service already runs; the replacement task set starts new tasks.
* EXTERNAL: a new task set (``aws ecs create-task-set``) with the same task definition, made
  primary (``aws ecs update-service-primary-task-set``) by the controller that owns the service.

rotor reports each such service (``EventOutcome.manual``, metric ``ManualRedeploysNeeded``) and
sends one notification per change saying what to run.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from orchestration.events.classification import Classification
from orchestration.models import DeploymentController, ServiceSnapshot, Verdict
from orchestration.notifications import Notification, render
from orchestration.outcome import ManualRedeploy
from orchestration.times import iso_or_none


def manual_redeploy(verdict: Verdict) -> ManualRedeploy:
    service = verdict.consumer.service
    return ManualRedeploy(
        service=service.arn,
        controller=service.controller.value,
        reason=verdict.reason,
        command=command_for(service),
    )


def command_for(service: ServiceSnapshot) -> str:
    """The command that starts new tasks of ``service`` with the task definition it runs."""
    region = _region(service.arn)
    task_definition = _current_task_definition(service)
    if service.controller is DeploymentController.CODE_DEPLOY:
        properties: dict[str, Any] = {"TaskDefinition": task_definition}
        if service.load_balancers:
            target = service.load_balancers[0]
            properties["LoadBalancerInfo"] = {
                "ContainerName": target.container_name,
                "ContainerPort": target.container_port,
            }
        appspec = {
            "version": 0.0,
            "Resources": [
                {"TargetService": {"Type": "AWS::ECS::Service", "Properties": properties}}
            ],
        }
        revision = {
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": json.dumps(appspec, separators=(",", ":"))},
        }
        return (
            f"aws deploy create-deployment --region {region}"
            " --application-name <CodeDeploy application>"
            " --deployment-group-name <deployment group of this service>"
            f" --revision {shlex.quote(json.dumps(revision, separators=(',', ':')))}"
        )
    return (
        f"aws ecs create-task-set --region {region} --cluster {shlex.quote(service.cluster_name)}"
        f" --service {shlex.quote(service.name)} --task-definition {shlex.quote(task_definition)}"
        " (with the network and load balancer settings your controller uses), then"
        f" aws ecs update-service-primary-task-set --region {region}"
        f" --cluster {shlex.quote(service.cluster_name)} --service {shlex.quote(service.name)}"
        " --primary-task-set <the new task set's id>"
    )


def manual_notification(
    event: Classification, secret_arn: str, manual: list[ManualRedeploy]
) -> Notification:
    name = secret_arn.split(":secret:", 1)[-1]
    lines: list[str] = []
    for item in manual:
        lines += [
            f"{_service_path(item.service)} ({item.controller} controller): {item.reason}",
            f"  {item.command}",
        ]
    codedeploy = any(m.controller == DeploymentController.CODE_DEPLOY for m in manual)
    todo = [
        "Start new tasks of each service above with the task definition it already runs;",
        "new tasks read the new value (ECS injects secrets only when a task starts).",
    ]
    if codedeploy:
        todo += [
            "For CODE_DEPLOY services, find the application and deployment group with",
            "  aws deploy list-applications",
            "  aws deploy list-deployment-groups --application-name <application>",
        ]
    body = render(
        f"rotor: {len(manual)} ECS service(s) hold the old value of {name}; rotor cannot "
        "redeploy them",
        [
            ("Secret", name),
            ("ARN", secret_arn),
            ("New value", f"current since {iso_or_none(event.event_time) or '?'}"),
            ("Account / region", f"{event.account} / {event.region}"),
        ],
        [
            (
                "Stale services (their deployment controller refuses a forced deployment):",
                lines,
            ),
            ("What to do:", todo),
        ],
        rest=f"rotor discover '{secret_arn}' --region {_region(secret_arn)}",
    )
    return Notification(
        kind="manual_redeploy",
        subject=f"rotor: redeploy {len(manual)} service(s) by hand for {name}",
        body=body,
        secret=secret_arn,
        data={"manual": [m.to_dict() for m in manual]},
    )


def _current_task_definition(service: ServiceSnapshot) -> str:
    if service.task_definition:
        return service.task_definition
    primary = next((ts for ts in service.task_sets if ts.status == "PRIMARY"), None)
    chosen = primary or (service.task_sets[0] if service.task_sets else None)
    return chosen.task_definition if chosen else "<task definition>"


def _region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else "<region>"


def _service_path(arn: str) -> str:
    return arn.split(":service/", 1)[-1]
