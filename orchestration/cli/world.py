"""The embedded world: an in-process moto account seeded from ``events/world.json``.

Used by ``rotor demo``, ``--world`` and tests. The world file lists secrets (full ARNs, so that
the sample events name them exactly), task definitions in ECS's own shape, and clusters with
services, each with the time its current deployment was made (``deployed_at``), so the freshness
rule has something to decide; a secret may name its AWSCURRENT version (``current_version``, the
one the sample events name) and the moment it was scheduled for deletion (``deleted_at``).

The world has its own clock: it is seeded at ``seeded_at`` and then stands at ``now`` (the
sample events' day), whatever the machine's clock says, so what moto stamps (a forced
deployment, a deletion date) fits the sample events' dates.

The world is sealed from the user's AWS settings: no ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``,
config or credentials file reaches it. Requires ``pip install 'rotor[demo]'`` (moto,
time-machine).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from orchestration import (
    AwsClients,
    ConfigurationError,
    RotorError,
    SecretIdentity,
)


def events_dir() -> Path:
    """The sample events: shipped in the package (``orchestration/cli/samples``, built from the
    top-level ``events/``), or the checkout's ``events/`` when run from source."""
    here = Path(__file__).resolve().parent
    shipped, checkout = here / "samples", here.parents[1] / "events"
    return shipped if (shipped / "world.json").is_file() else checkout


PLACEHOLDER_VALUE = "placeholder-value-rotor-never-reads-it"
#: Where the embedded world stands when the world file does not say.
DEFAULT_NOW = "2026-11-20T12:00:00Z"


def load_world(path: Path | None = None) -> dict[str, Any]:
    """The world file (default: the sample world), checked enough that seeding cannot fail on
    its shape."""
    path = path or events_dir() / "world.json"
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the world file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"world file {path} is not UTF-8: {exc.reason}") from None
    try:
        world = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"world file {path} is not JSON: {exc}") from None
    problem = _shape_problem(world)
    if problem:
        raise ConfigurationError(f"world file {path}: {problem}")
    return dict(world)


def _shape_problem(world: object) -> str | None:
    if not isinstance(world, dict) or not {"account", "region"} <= world.keys():
        return "needs an object with account and region"
    for key in ("account", "region"):
        if not isinstance(world[key], str) or not world[key]:
            return f"{key} must be a non-empty string"
    if not re.fullmatch(r"\d{12}", world["account"]):
        return f"account must be a 12-digit AWS account id, not {world['account']!r}"
    if world["region"] not in _known_regions():
        return f"region {world['region']!r} is not an AWS region (e.g. us-east-1)"
    for key in ("seeded_at", "now"):
        if key in world and _moment(world[key]) is None:
            return f"{key} must be an ISO 8601 time"
    lists = {"secrets": dict, "task_definitions": dict, "clusters": dict}
    for key, kind in lists.items():
        value = world.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
            return f"{key} must be a list of objects"
    for secret in world.get("secrets", []):
        if not isinstance(secret.get("arn"), str):
            return "each secret needs an arn (string)"
        if problem := _tags_problem(secret.get("tags", {}), f"secret {secret['arn']}"):
            return problem
        version = secret.get("current_version")
        if version is not None and (not isinstance(version, str) or not 32 <= len(version) <= 64):
            return f"current_version of {secret['arn']} must be 32 to 64 characters"
        days = secret.get("scheduled_for_deletion_in_days")
        if days is not None and (type(days) is not int or not 7 <= days <= 30):
            return f"scheduled_for_deletion_in_days of {secret['arn']} must be 7 to 30"
    for cluster in world.get("clusters", []):
        if not isinstance(cluster.get("name"), str):
            return "each cluster needs a name (string)"
        services = cluster.get("services", [])
        if not isinstance(services, list) or not all(isinstance(s, dict) for s in services):
            return f"services of cluster {cluster['name']} must be a list of objects"
        for service in services:
            if not isinstance(service.get("name"), str) or not isinstance(
                service.get("task_definition"), str
            ):
                return f"each service of {cluster['name']} needs a name and a task_definition"
            if "desired_count" in service and type(service["desired_count"]) is not int:
                return f"desired_count of {cluster['name']}/{service['name']} must be a number"
            if "deployed_at" in service and _moment(service["deployed_at"]) is None:
                return f"deployed_at of {cluster['name']}/{service['name']} must be a time"
            where = f"service {cluster['name']}/{service['name']}"
            if problem := _tags_problem(service.get("tags", {}), where):
                return problem
    return None


def _tags_problem(tags: object, where: str) -> str | None:
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        return f"tags of {where} must be an object of strings, not {json.dumps(tags)}"
    return None


def _known_regions() -> set[str]:
    """The regions botocore knows (ECS's; every region has ECS), read from its endpoint data
    alone: no session, so no profile or config file is consulted."""
    from botocore.loaders import create_loader
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(create_loader().load_data("endpoints"))
    return {
        region
        for partition in resolver.get_available_partitions()
        for region in resolver.get_available_endpoints("ecs", partition)
    }


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seed_world(clients: AwsClients, world: Mapping[str, Any]) -> None:
    """Create the world's secrets, task definitions, clusters and services in moto.

    A secret scheduled for deletion is deleted as of ``deleted_at`` (default: now), so its
    deletion date is that moment plus the recovery window.
    """
    from moto.ecs.models import ecs_backends
    from moto.secretsmanager.utils import SecretsManagerSecretIdentifier
    from moto.utilities.id_generator import moto_id_manager

    account, region = world["account"], world["region"]
    sm, ecs = clients.secretsmanager, clients.ecs
    for secret in world.get("secrets", []):
        identity = SecretIdentity.from_full_arn(secret["arn"])
        # Make moto give the secret the ARN suffix the sample events use.
        moto_id_manager.set_custom_id(
            SecretsManagerSecretIdentifier(account, region, identity.name), identity.suffix or ""
        )
        version = secret.get("current_version")  # the AWSCURRENT version the events name
        arn = sm.create_secret(
            Name=identity.name,
            SecretString=PLACEHOLDER_VALUE,
            Tags=[{"Key": k, "Value": v} for k, v in secret.get("tags", {}).items()],
            **({"ClientRequestToken": version} if version else {}),
        )["ARN"]
        if arn != identity.arn:
            raise RotorError(f"moto gave {arn}, the world file says {identity.arn}")
        if days := secret.get("scheduled_for_deletion_in_days"):
            with _clock_at(_moment(secret.get("deleted_at"))):
                sm.delete_secret(SecretId=arn, RecoveryWindowInDays=days)
    for task_definition in world.get("task_definitions", []):
        ecs.register_task_definition(**task_definition)
    backend = ecs_backends[account][region]
    for cluster in world.get("clusters", []):
        ecs.create_cluster(clusterName=cluster["name"])
        for service in cluster.get("services", []):
            ecs.create_service(
                cluster=cluster["name"],
                serviceName=service["name"],
                taskDefinition=service["task_definition"],
                desiredCount=service.get("desired_count", 1),
                tags=[{"key": k, "value": v} for k, v in service.get("tags", {}).items()],
            )
            if deployed_at := service.get("deployed_at"):
                backdate_deployment(backend, cluster["name"], service["name"], deployed_at)


def backdate_deployment(backend: Any, cluster: str, service: str, when: str | datetime) -> None:
    """Pretend the service's PRIMARY deployment was made at ``when`` (moto stamps 'now')."""
    moment = _moment(when)
    for deployment in backend.services[f"{cluster}:{service}"].deployments:
        if deployment.get("status") == "PRIMARY":
            deployment["createdAt"] = moment
            deployment["updatedAt"] = moment


@contextmanager
def _clock_at(moment: datetime | None) -> Iterator[None]:
    if moment is None:
        yield
        return
    import time_machine

    with time_machine.travel(moment, tick=True):
        yield


#: Environment variables that would aim boto3 elsewhere than the in-process moto.
_SEALED_OUT = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION")
_WORLD_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "embedded-world",
    "AWS_SECRET_ACCESS_KEY": "embedded-world",
    "AWS_SESSION_TOKEN": "embedded-world",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class EmbeddedWorld:
    """Context manager: an in-process moto account seeded from a world file, on its own clock
    and sealed from the user's AWS settings; gives the world's ``AwsClients``."""

    def __init__(self, path: Path | None = None, *, stay_at_seeding: bool = False) -> None:
        """``stay_at_seeding``: the clock stays at ``seeded_at`` rather than moving to the
        world's ``now`` (the demo moves it along its story)."""
        self.path = path or events_dir() / "world.json"
        self._stay_at_seeding = stay_at_seeding
        self._mock: Any = None
        self._clock: Any = None
        self._saved_environment: dict[str, str | None] = {}
        self.account: str | None = None  # the world's account, once started

    def __enter__(self) -> AwsClients:
        try:
            import time_machine  # noqa: F401 - the world's clock
            from moto import mock_aws
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RotorError(
                f"the embedded world needs {exc.name}: pip install 'rotor[demo]'"
            ) from None
        world = load_world(self.path)
        self.account = world["account"]
        self._seal_environment(world["region"])
        try:
            self.move_clock_to(_moment(world.get("seeded_at")) or _moment(DEFAULT_NOW))
            self._mock = mock_aws()
            self._mock.start()
            # The world's own session: nothing from the user's profile or config.
            session = boto3.Session(region_name=world["region"])
            clients = AwsClients(session, region=world["region"])
            try:
                seed_world(clients, world)
            except RotorError:
                raise
            except Exception as exc:  # the world file asked for something moto refused
                raise ConfigurationError(f"world file {self.path}: {exc}") from None
            if not self._stay_at_seeding:
                self.move_clock_to(_moment(world.get("now", DEFAULT_NOW)))
        except BaseException:
            self.__exit__()
            raise
        return clients

    def move_clock_to(self, moment: datetime | None) -> None:
        """The world's clock jumps to ``moment`` and runs on from there."""
        import time_machine

        if moment is None:
            return
        if self._clock is not None:
            self._clock.stop()
        self._clock = time_machine.travel(moment, tick=True)
        self._clock.start()

    def __exit__(self, *exc: object) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        if self._clock is not None:
            self._clock.stop()
            self._clock = None
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment = {}

    def _seal_environment(self, region: str) -> None:
        wanted: dict[str, str | None] = dict.fromkeys(_SEALED_OUT)
        wanted.update(_WORLD_ENVIRONMENT)
        wanted["AWS_DEFAULT_REGION"] = region
        self._saved_environment = {name: os.environ.get(name) for name in wanted}
        for name, value in wanted.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Inbox:
    """An SQS queue subscribed to an SNS topic: what a subscriber (an operator's e-mail)
    receives. Used by the demo and by tests."""

    sqs: Any
    url: str
    topic_arn: str

    @classmethod
    def subscribe(cls, clients: AwsClients, topic: str, queue: str | None = None) -> Inbox:
        """Create the topic (or take it, if it exists) and a queue subscribed to it."""
        topic_arn = clients.sns.create_topic(Name=topic)["TopicArn"]
        sqs = clients.session.client(
            "sqs", region_name=clients.region, endpoint_url=clients.endpoint_url
        )
        url = sqs.create_queue(QueueName=queue or f"{topic}-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        clients.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        return cls(sqs, url, topic_arn)

    def drain(self) -> list[dict[str, Any]]:
        """Every SNS envelope waiting on the queue (consumed: a second drain sees only new ones)."""
        envelopes: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=600,
                MessageAttributeNames=["All"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                return envelopes
            for message in messages:
                envelopes.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
