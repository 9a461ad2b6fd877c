"""The one place rotor creates boto3 clients.

Everything else receives an ``AwsClients`` and never builds a client of its own, so tests hand
in clients bound to moto (in-process or over loopback) and the command line aims them at
``--endpoint-url``. Clients are made on first use: a Lambda that never publishes to SNS never
pays for an SNS client.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from orchestration.aws.ratelimit import (
    CALLER_TIME_LEFT,
    CLOUDTRAIL_LIMITS,
    CLOUDTRAIL_OPERATION_BUCKETS,
    ApiRateLimiter,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudtrail import CloudTrailClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sts import STSClient

#: Per attempt. AWS endpoints answer a connection in milliseconds; a short connect timeout leaves
#: the time to the read. The read timeout is cut, attempt by attempt, to the caller's time left.
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 20.0
MIN_READ_TIMEOUT_SECONDS = 1.0

# botocore retries are off: every call goes through orchestration.retry.RetryPolicy, which owns
# backoff, jitter and the deadline, so attempts never multiply (botocore x tenacity).
BOTOCORE_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
    max_pool_connections=32,
    user_agent_extra="rotor/0.1",
)


def fit_attempt_in_time_left(context: dict[str, Any], **_: Any) -> None:
    """``before-call`` hook, registered last (after the rate limiter's wait): cut the attempt's
    read timeout so that its connect and read fit in the time its caller has left (the retry
    policy's deadline, which keeps the Lambda's margin to report and flush metrics). An attempt
    made with less than ``connect + MIN_READ`` left (a first attempt: the policy starts no
    retry past its deadline) may run that long, well inside the margin."""
    time_left = CALLER_TIME_LEFT.get()
    if time_left is None:
        return
    config = context.get("client_config")
    connect = float(getattr(config, "connect_timeout", None) or CONNECT_TIMEOUT_SECONDS)
    read = float(getattr(config, "read_timeout", None) or READ_TIMEOUT_SECONDS)
    # botocore >= 1.43.72 reads a per-request read timeout from the request context.
    context["read_timeout"] = max(MIN_READ_TIMEOUT_SECONDS, min(read, time_left() - connect))


def region_of_arn(arn: str) -> str:
    """The region of an ARN (``arn:PARTITION:SERVICE:REGION:...``); "" when it names none."""
    parts = arn.split(":", 4)
    return parts[3] if len(parts) == 5 and parts[0] == "arn" else ""


class AwsClients:
    """Lazily created boto3 clients sharing one session, config and endpoint."""

    def __init__(
        self,
        session: boto3.Session | None = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        config: Config = BOTOCORE_CONFIG,
        ecs_rate_limiter: ApiRateLimiter | None = None,
    ) -> None:
        self.session = session or boto3.Session(region_name=region)
        self.region = region or self.session.region_name
        self.endpoint_url = endpoint_url
        self.config = config
        self.ecs_rate_limiter = (
            ecs_rate_limiter if ecs_rate_limiter is not None else (ApiRateLimiter())
        )
        #: LookupEvents (the reconciler) is paced to CloudTrail's 2 per second; the other
        #: CloudTrail calls (``rotor doctor``'s) pass unmetered.
        self.cloudtrail_rate_limiter = ApiRateLimiter(
            CLOUDTRAIL_LIMITS, CLOUDTRAIL_OPERATION_BUCKETS
        )
        #: the region of the clients every ``in_region`` one was made from (the stack's own)
        self.home_region = self.region
        #: every region's clients made from this one (``in_region``), shared by all of them
        self._regions: dict[str, AwsClients] = {}
        self._regions_lock = threading.Lock()
        if self.region:
            self._regions[self.region] = self

    def in_region(self, region: str) -> AwsClients:
        """The same clients acting in ``region``: one session, endpoint and config, made once
        per region and kept (so are their clients), each region's ECS calls metered by a rate
        limiter of its own (ECS's limits are per account and region) with this one's share."""
        if region == self.region:
            return self
        with self._regions_lock:
            found = self._regions.get(region)
            if found is None:
                found = AwsClients(
                    self.session,
                    region=region,
                    endpoint_url=self.endpoint_url,
                    config=self.config,
                    ecs_rate_limiter=self.ecs_rate_limiter.fresh(),
                )
                found.home_region = self.home_region
                found._regions = self._regions
                found._regions_lock = self._regions_lock
                self._regions[region] = found
            return found

    @classmethod
    def from_options(
        cls,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
    ) -> AwsClients:
        session = boto3.Session(profile_name=profile, region_name=region)
        return cls(session, region=region or session.region_name, endpoint_url=endpoint_url)

    def _client(self, service: str) -> Any:
        client = self.session.client(
            service,  # type: ignore[call-overload]
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=self.config,
        )
        prefix = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_last(f"before-call.{prefix}", fit_attempt_in_time_left)
        return client

    @cached_property
    def ecs(self) -> ECSClient:
        client: ECSClient = self._client("ecs")
        self.ecs_rate_limiter.attach(client)
        return client

    @cached_property
    def secretsmanager(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self._client("secretsmanager")
        return client

    @cached_property
    def sns(self) -> SNSClient:
        client: SNSClient = self._client("sns")
        return client

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb")
        return client

    @cached_property
    def sqs(self) -> SQSClient:
        client: SQSClient = self._client("sqs")
        return client

    # The account's prerequisites (``rotor doctor``) and the reconciler's LookupEvents: read only.

    @cached_property
    def cloudtrail(self) -> CloudTrailClient:
        client: CloudTrailClient = self._client("cloudtrail")
        self.cloudtrail_rate_limiter.attach(client)
        return client

    @cached_property
    def cloudformation(self) -> CloudFormationClient:
        client: CloudFormationClient = self._client("cloudformation")
        return client

    @cached_property
    def events(self) -> EventBridgeClient:
        client: EventBridgeClient = self._client("events")
        return client

    @cached_property
    def lambda_(self) -> LambdaClient:
        client: LambdaClient = self._client("lambda")
        return client

    @cached_property
    def sts(self) -> STSClient:
        """Only ``GetCallerIdentity`` (no permission needed): the command line's own account."""
        client: STSClient = self._client("sts")
        return client
