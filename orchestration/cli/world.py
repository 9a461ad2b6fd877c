"""The embedded world: seed a moto-backed AWS account from ``events/world.json``.

Used by ``rotor demo`` and by tests. The world file lists secrets (full ARNs, so that the sample
events in ``events/`` name them exactly), task definitions in ECS's own shape, and clusters with
services, each with the time its current deployment was made (``deployed_at``), so the freshness
rule has something to decide. Requires moto (``pip install 'rotor[demo]'``) and must run inside
an active ``moto.mock_aws()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestration.aws.clients import AwsClients
from orchestration.errors import ConfigurationError, RotorError
from orchestration.secrets.references import SecretIdentity

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"
WORLD_FILE = EVENTS_DIR / "world.json"
PLACEHOLDER_VALUE = "placeholder-value-rotor-never-reads-it"


@dataclass
class SeededWorld:
    account: str
    region: str
    secrets: dict[str, str] = field(default_factory=dict)  # name -> ARN
    services: dict[str, str] = field(default_factory=dict)  # cluster/service -> ARN


def load_world(path: Path = WORLD_FILE) -> dict[str, Any]:
    try:
        world = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the world file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"world file {path} is not JSON: {exc}") from None
    if not isinstance(world, dict) or not {"account", "region"} <= world.keys():
        raise ConfigurationError(f"world file {path} needs an object with account and region")
    return world


def seed_world(clients: AwsClients, world: dict[str, Any]) -> SeededWorld:
    """Create the world's secrets, task definitions, clusters and services in moto."""
    from moto.ecs.models import ecs_backends
    from moto.secretsmanager.utils import SecretsManagerSecretIdentifier
    from moto.utilities.id_generator import moto_id_manager

    account, region = world["account"], world["region"]
    seeded = SeededWorld(account, region)
    sm, ecs = clients.secretsmanager, clients.ecs
    for secret in world.get("secrets", []):
        identity = SecretIdentity.from_full_arn(secret["arn"])
        # Make moto give the secret the ARN suffix the sample events use.
        moto_id_manager.set_custom_id(
            SecretsManagerSecretIdentifier(account, region, identity.name), identity.suffix or ""
        )
        arn = sm.create_secret(
            Name=identity.name,
            SecretString=PLACEHOLDER_VALUE,
            Tags=[{"Key": k, "Value": v} for k, v in secret.get("tags", {}).items()],
        )["ARN"]
        if arn != identity.arn:
            raise RotorError(f"moto gave {arn}, the world file says {identity.arn}")
        if days := secret.get("scheduled_for_deletion_in_days"):
            sm.delete_secret(SecretId=arn, RecoveryWindowInDays=days)
        seeded.secrets[identity.name] = arn
    for task_definition in world.get("task_definitions", []):
        ecs.register_task_definition(**task_definition)
    backend = ecs_backends[account][region]
    for cluster in world.get("clusters", []):
        ecs.create_cluster(clusterName=cluster["name"])
        for service in cluster.get("services", []):
            created = ecs.create_service(
                cluster=cluster["name"],
                serviceName=service["name"],
                taskDefinition=service["task_definition"],
                desiredCount=service.get("desired_count", 1),
                tags=[{"key": k, "value": v} for k, v in service.get("tags", {}).items()],
            )["service"]
            seeded.services[f"{cluster['name']}/{service['name']}"] = created["serviceArn"]
            if deployed_at := service.get("deployed_at"):
                backdate_deployment(backend, cluster["name"], service["name"], deployed_at)
    return seeded


def backdate_deployment(backend: Any, cluster: str, service: str, when: str | datetime) -> None:
    """Pretend the service's PRIMARY deployment was made at ``when`` (moto stamps 'now')."""
    moment = datetime.fromisoformat(when.replace("Z", "+00:00")) if isinstance(when, str) else when
    for deployment in backend.services[f"{cluster}:{service}"].deployments:
        if deployment.get("status") == "PRIMARY":
            deployment["createdAt"] = moment
            deployment["updatedAt"] = moment
