"""Every kind of item in the state table: its key and how long it is kept.

The table (``ROTOR_STATE_TABLE``) has one key, ``pk`` (a string), and one TTL attribute,
``expires_at`` (epoch seconds). Each kind of item names its key with a prefix of its own, and
is kept for as long as something may still read it:

| key | written by | kept |
| --- | --- | --- |
| ``notify#<key>`` | ``notify_window`` | the window, at least a window of wall-clock time |
| ``redeploy#<service ARN>#<value>`` | ``redeploy_ledger`` | 2 days (``REDEPLOY_KEEP``) |
| ``service-lease#<service ARN>`` | ``service_lease`` | 1 hour (``SERVICE_LEASE_KEEP``) |
| ``rotation#<rotation id>`` | ``rollouts`` | 14 days (``ROTATION_KEEP``) |
| ``status#<rotation id>#<service ARN>`` | ``rollouts`` | 14 days (``ROTATION_KEEP``) |
| ``deployment#<deployment id>`` | ``rollouts`` | 2 days (``DEPLOYMENT_KEEP``) |
| ``latest-deployment#<service ARN>`` | ``rollouts`` | 2 days (``DEPLOYMENT_KEEP``) |
| ``flap#<service ARN>`` | ``rollouts`` | the flap window |
| ``rollouts#<cluster ARN>`` | ``rollouts`` | until its last hold may be dropped |
| ``taskdef#<task definition ARN>`` | ``task_definitions`` | 30 days (``TASK_DEFINITION_KEEP``) |
| ``index-service#<service ARN>`` | ``consumer_index`` | until forgotten, then 1 day |
| ``index-secret#<secret>#<shard>`` | ``consumer_index`` | as long as the table (its set empties) |
| ``index-built#<region>`` | ``consumer_index`` | as long as the table |

Keys are built here, never taken apart elsewhere (``rotation_id`` is the one reading back).
"""

from __future__ import annotations

from datetime import timedelta

NOTIFY = "notify#"
REDEPLOY = "redeploy#"
SERVICE_LEASE = "service-lease#"
ROTATION = "rotation#"
STATUS = "status#"
DEPLOYMENT = "deployment#"
LATEST_DEPLOYMENT = "latest-deployment#"
FLAP = "flap#"
ROLLOUTS = "rollouts#"
TASK_DEFINITION = "taskdef#"
INDEX_SERVICE = "index-service#"
INDEX_SECRET = "index-secret#"
INDEX_BUILT = "index-built#"

#: Every prefix, for the check that the table's kinds do not overlap.
PREFIXES = (
    NOTIFY,
    REDEPLOY,
    SERVICE_LEASE,
    ROTATION,
    STATUS,
    DEPLOYMENT,
    LATEST_DEPLOYMENT,
    FLAP,
    ROLLOUTS,
    TASK_DEFINITION,
    INDEX_SERVICE,
    INDEX_SECRET,
    INDEX_BUILT,
)

REDEPLOY_KEEP = timedelta(days=2)  # long after any duplicate delivery of one rotation
SERVICE_LEASE_KEEP = timedelta(hours=1)
ROTATION_KEEP = timedelta(days=14)
DEPLOYMENT_KEEP = timedelta(days=2)
TASK_DEFINITION_KEEP = timedelta(days=30)
#: A forgotten service's tombstone: a rebuild whose scan began before the deletion must not
#: bring it back.
INDEX_FORGOTTEN_KEEP = timedelta(days=1)


def notify(key: str) -> str:
    return NOTIFY + key


def redeploy(service_arn: str, value: str) -> str:
    return f"{REDEPLOY}{service_arn}#{value}"


def service_lease(service_arn: str) -> str:
    return SERVICE_LEASE + service_arn


def rotation(rotation_id: str) -> str:
    return ROTATION + rotation_id


def rotation_id(key: str) -> str:
    """The rotation id of a ``rotation#`` key."""
    return key.removeprefix(ROTATION)


def status(rotation_id: str, service_arn: str) -> str:
    return f"{STATUS}{rotation_id}#{service_arn}"


def deployment(deployment_id: str) -> str:
    return DEPLOYMENT + deployment_id


def latest_deployment(service_arn: str) -> str:
    return LATEST_DEPLOYMENT + service_arn


def flap(service_arn: str) -> str:
    return FLAP + service_arn


def rollouts(cluster_arn: str) -> str:
    return ROLLOUTS + cluster_arn


def task_definition(arn: str) -> str:
    return TASK_DEFINITION + arn


def index_service(service_arn: str) -> str:
    return INDEX_SERVICE + service_arn


def index_secret(secret: str, shard: int) -> str:
    """One shard of the services referencing ``secret`` (``partition:region:account:name``)."""
    return f"{INDEX_SECRET}{secret}#{shard}"


def index_built(region: str) -> str:
    return INDEX_BUILT + region
