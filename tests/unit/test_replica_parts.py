"""The parts the replica path is built of, each on its own: the settings, a replica's identity
and facts, the clients of another region, the jobs that carry a replica, ``rotor status``'s
region column."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestration.aws.clients import AwsClients, region_of_arn
from orchestration.aws.ratelimit import ApiRateLimiter
from orchestration.aws.retry import RetryPolicy
from orchestration.errors import ConfigurationError, InvalidEventError
from orchestration.fanout.jobs import RedeployJob, parse_job
from orchestration.secrets.lookup import SecretLookup, replica_identity
from orchestration.secrets.references import SecretIdentity
from orchestration.settings import Settings
from orchestration.state.rollouts import MemoryRolloutStore, ServiceStatus, Status
from orchestration.tracking.status import render_status, status_report

ACCOUNT = "123456789012"
PRIMARY = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/db-AbCdEf"
REPLICA = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:prod/db-AbCdEf"
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


# --- settings ------------------------------------------------------------------------------


def test_rotor_regions_are_region_names_read_once_each() -> None:
    settings = Settings.from_env({"ROTOR_REGIONS": " eu-west-1, eu-central-1 ,eu-west-1"})
    assert settings.regions == ("eu-west-1", "eu-central-1")
    assert Settings.from_env({}).regions == ()
    assert Settings.from_env({}).replica_max_wait == timedelta(hours=1)
    assert Settings.from_env({"ROTOR_REPLICA_MAX_WAIT": "30m"}).replica_max_wait == timedelta(
        minutes=30
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"ROTOR_REGIONS": "eu-west-1,Ireland"},
        {"ROTOR_REGIONS": "eu_west_1"},
        {"ROTOR_REPLICA_MAX_WAIT": "soon"},
        {"ROTOR_REPLICA_MAX_WAIT": "30d"},
    ],
)
def test_bad_regions_or_waits_are_configuration_errors_naming_the_variable(
    environ: dict[str, str],
) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(environ))):
        Settings.from_env(environ)


# --- a replica's identity and facts --------------------------------------------------------


def test_a_replicas_identity_differs_from_its_primarys_only_in_the_region() -> None:
    primary = SecretIdentity.from_full_arn(PRIMARY)
    replica = replica_identity(primary, "eu-west-1")
    assert replica.arn == REPLICA
    assert (replica.name, replica.suffix, replica.account) == ("prod/db", "AbCdEf", ACCOUNT)


class _Describing:
    """A Secrets Manager client that answers DescribeSecret with ``answer``."""

    def __init__(self, answer: dict[str, Any], region: str = "us-east-1") -> None:
        self.answer = answer
        self.meta = type("Meta", (), {"region_name": region})()

    def describe_secret(self, SecretId: str) -> dict[str, Any]:
        return self.answer


def test_the_facts_of_a_secret_list_its_replicas_as_replication_status_says() -> None:
    answer = {
        "ARN": PRIMARY,
        "VersionIdsToStages": {"v2": ["AWSCURRENT"], "v1": ["AWSPREVIOUS"]},
        "ReplicationStatus": [
            {"Region": "eu-west-1", "KmsKeyId": "alias/aws/secretsmanager", "Status": "InSync"},
            {
                "Region": "eu-central-1",
                "Status": "Failed",
                "StatusMessage": "Secret with this name already exists in this region",
            },
            {"Region": "ap-southeast-2", "Status": "InProgress"},
        ],
    }
    lookup = SecretLookup(_Describing(answer), RetryPolicy())  # type: ignore[arg-type]
    facts = lookup.describe(PRIMARY, account=ACCOUNT, region="us-east-1", written_by_aws=True)

    assert facts.current_version == "v2"
    assert [(r.region, r.status) for r in facts.replicas] == [
        ("eu-west-1", "InSync"),
        ("eu-central-1", "Failed"),
        ("ap-southeast-2", "InProgress"),
    ]
    fra = facts.replica("eu-central-1")
    assert fra is not None and fra.failed and "already exists" in fra.message
    ireland = facts.replica("eu-west-1")
    assert ireland is not None and ireland.in_sync
    assert facts.replica("us-west-2") is None
    # A secret without replicas (or a replica's own description) lists none.
    answer.pop("ReplicationStatus")
    assert lookup.describe(PRIMARY, account=ACCOUNT, region="us-east-1").replicas == ()


# --- the clients of another region ---------------------------------------------------------


def test_another_regions_clients_share_the_session_and_meter_ecs_apart() -> None:
    limiter = ApiRateLimiter()
    limiter.share_among(4)
    home = AwsClients(
        region="us-east-1", endpoint_url="http://localhost:1", ecs_rate_limiter=limiter
    )

    ireland = home.in_region("eu-west-1")
    assert ireland.region == "eu-west-1"
    assert ireland.session is home.session and ireland.config is home.config
    assert ireland.endpoint_url == home.endpoint_url
    assert ireland.ecs_rate_limiter is not home.ecs_rate_limiter  # ECS: per account AND region
    # ... with the same share of each limit as the home region's.
    home_bucket = home.ecs_rate_limiter.buckets["service-writes"]
    ireland_bucket = ireland.ecs_rate_limiter.buckets["service-writes"]
    assert ireland_bucket._rate == home_bucket._rate == 5 / 4
    # Made once per region, whichever region asks, and the home region is home itself.
    assert home.in_region("eu-west-1") is ireland
    assert ireland.in_region("eu-west-1") is ireland
    assert ireland.in_region("us-east-1") is home
    assert home.in_region("us-east-1") is home
    assert ireland.ecs.meta.region_name == "eu-west-1"


@pytest.mark.parametrize(
    ("arn", "region"),
    [
        (f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/prod/api", "eu-west-1"),
        (f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/api", "us-east-1"),  # the old short form
        (REPLICA, "eu-west-1"),
        ("prod/api", ""),
    ],
)
def test_the_region_of_an_arn(arn: str, region: str) -> None:
    assert region_of_arn(arn) == region


# --- jobs that carry a replica ---------------------------------------------------------------

JOB: dict[str, Any] = {
    "kind": "redeploy",
    "secret_arn": REPLICA,
    "version": "v2",
    "rotated_at": "2026-11-21T09:00:00Z",
    "service_arn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/prod/api",
    "cluster_arn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/prod",
    "replica_region": "eu-west-1",
    "primary_secret_arn": PRIMARY,
}


def test_a_replica_job_round_trips_and_is_keyed_by_the_replicas_value() -> None:
    job = parse_job(json.dumps(JOB))
    assert isinstance(job, RedeployJob) and job.is_replica
    assert parse_job(job.model_dump_json()) == job
    assert job.new_value().secret_arn == REPLICA  # the ledger's value: the replica's ARN@v2
    assert job.rotation_id == f"{REPLICA}@v2"
    # A message from before replicas still parses, as a primary's job.
    old = {k: v for k, v in JOB.items() if k not in ("replica_region", "primary_secret_arn")}
    old["secret_arn"] = PRIMARY
    assert not parse_job(json.dumps(old)).is_replica


@pytest.mark.parametrize(
    "change",
    [
        {"primary_secret_arn": None},  # one without the other
        {"replica_region": None},
        {"replica_region": "eu-central-1"},  # not the replica ARN's region
        {"primary_secret_arn": REPLICA},  # the primary in the replica's region
        {"primary_secret_arn": PRIMARY.replace("prod/db", "prod/dx")},  # another secret
        {"primary_secret_arn": PRIMARY.replace(ACCOUNT, "210987654321")},  # another account
        {"primary_secret_arn": "prod/db"},  # not an ARN
        {"version": None},  # the version it must wait for
        {"described": False},
        # a primary's job never waits for a replica
        {
            "replica_region": None,
            "primary_secret_arn": None,
            "replica_waited_at": "2026-11-21T09:01:00Z",
        },
    ],
)
def test_a_replica_job_that_does_not_hold_together_is_rejected(change: dict[str, Any]) -> None:
    body = {k: v for k, v in {**JOB, **change}.items() if v is not None}
    with pytest.raises(InvalidEventError, match="not a rotor job"):
        parse_job(json.dumps(body))


# --- rotor status: the region of each service ------------------------------------------------


def test_rotor_status_shows_each_services_region_and_a_replicas_rotation_apart() -> None:
    store = MemoryRolloutStore()
    home = f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/prod/api"
    away = f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/prod/api"
    store.record_rotation(f"{PRIMARY}@v2", PRIMARY, "v2", NOW - timedelta(minutes=2))
    store.record_rotation(f"{REPLICA}@v2", REPLICA, "v2", NOW - timedelta(minutes=2))
    deploying = ServiceStatus(Status.DEPLOYING, "deployment started", NOW, "cluster")
    store.set_status(f"{PRIMARY}@v2", home, deploying)
    store.set_status(f"{REPLICA}@v2", away, deploying)

    report = status_report(store, NOW, timedelta(hours=1))
    assert {(r["region"], s["region"]) for r in report["rotations"] for s in r["services"]} == {
        ("us-east-1", "us-east-1"),
        ("eu-west-1", "eu-west-1"),
    }
    lines = render_status(report)
    assert any(line.split()[:2] == ["REGION", "SERVICE"] for line in lines)
    assert any(line.split()[:2] == ["eu-west-1", "prod/api"] for line in lines)
    assert any(line.split()[:2] == ["us-east-1", "prod/api"] for line in lines)


def test_rotor_status_of_a_secret_by_its_arn_lists_its_replicas_rotations_too() -> None:
    """``rotor status --secret <the primary's ARN>`` (as the console shows it): its replicas'
    consumers are the secret's too (their rotations are listed apart, under the replica's
    ARN, which differs only in the region); a name already lists every region's."""
    store = MemoryRolloutStore()
    other = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:prod/db-ZzZzZz"  # not a replica
    for arn in (PRIMARY, REPLICA, other):
        store.record_rotation(f"{arn}@v2", arn, "v2", NOW - timedelta(minutes=2))

    def listed(secret: str) -> set[str]:
        report = status_report(store, NOW, timedelta(hours=1), secret)
        return {r["secret"] for r in report["rotations"]}

    assert listed(PRIMARY) == {PRIMARY, REPLICA}
    assert listed(REPLICA) == {PRIMARY, REPLICA}
    assert listed("prod/db-AbCdEf") == {PRIMARY, REPLICA}


@pytest.mark.parametrize("first", [PRIMARY, REPLICA])
def test_rotor_status_lists_one_rotations_regions_in_one_order_whatever_the_tables(
    first: str,
) -> None:
    """A rotation of the primary and of its replica share their time: their order must not
    depend on the order the state table's Scan happens to return items in."""
    store = MemoryRolloutStore()
    for arn in (first, *({PRIMARY, REPLICA} - {first})):
        store.record_rotation(f"{arn}@v2", arn, "v2", NOW - timedelta(minutes=2))
    store.record_rotation(f"{PRIMARY}@v3", PRIMARY, "v3", NOW - timedelta(minutes=1))

    report = status_report(store, NOW, timedelta(hours=1))
    assert [(r["region"], r["version"]) for r in report["rotations"]] == [
        ("us-east-1", "v3"),  # newest first
        ("eu-west-1", "v2"),  # then, at one time, by secret ARN
        ("us-east-1", "v2"),
    ]
