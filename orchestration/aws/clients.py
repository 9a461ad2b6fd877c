"""The one place rotor creates boto3 clients.

Everything else receives an ``AwsClients`` and never builds a client of its own, so tests hand
in clients bound to moto (in-process or over loopback) and the command line aims them at
``--endpoint-url``. Clients are made on first use: a Lambda that never publishes to SNS never
pays for an SNS client.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from orchestration.aws.ratelimit import ApiRateLimiter

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

# botocore retries are off: every call goes through orchestration.retry.RetryPolicy, which owns
# backoff, jitter and the deadline, so attempts never multiply (botocore x tenacity).
BOTOCORE_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=5,
    read_timeout=20,
    max_pool_connections=32,
    user_agent_extra="rotor/0.1",
)


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
        return self.session.client(
            service,  # type: ignore[call-overload]
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=self.config,
        )

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
