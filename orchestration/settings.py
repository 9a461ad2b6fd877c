"""rotor's configuration: ``ROTOR_*`` environment variables, the same in Lambda and on the
command line, validated once at start (pydantic-settings, ``env_prefix="ROTOR_"``).

A ``ROTOR_`` variable that names no setting is an error that suggests the closest name: a typo
must not silently leave a safety setting at its default.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from orchestration.errors import ConfigurationError
from orchestration.secrets.references import partition_of

PREFIX = "ROTOR_"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_MAX_WINDOW_SECONDS = 7 * 86400
MAX_DEBOUNCE_SECONDS = 900  # SQS DelaySeconds maximum
#: arn:PARTITION:sns:REGION:ACCOUNT:NAME (topic names: letters, digits, - and _, up to 256).
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
#: http(s)://HOST/ACCOUNT/NAME: SQS's own endpoints, and any other endpoint (a local stand-in).
_QUEUE_URL = re.compile(r"https?://[^/\s]+/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?")


class Settings(BaseSettings):
    """Every knob rotor has. Environment names are ``ROTOR_`` + the field name upper-cased."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True)

    #: ROTOR_CLUSTERS: comma-separated names or ARNs; empty = every cluster
    clusters: Annotated[tuple[str, ...], NoDecode] = ()
    opt_in: bool = False  # ROTOR_OPT_IN: only services tagged rotor:redeploy=true
    topic_arn: str | None = None  # ROTOR_TOPIC_ARN: SNS topic for notifications
    restore_on_access: bool = False  # ROTOR_RESTORE_ON_ACCESS
    notify_window: timedelta = timedelta(minutes=15)  # ROTOR_NOTIFY_WINDOW: 900, 15m, 1h
    state_table: str | None = None  # ROTOR_STATE_TABLE: DynamoDB table for rotor's state
    max_workers: int = 8  # ROTOR_MAX_WORKERS: concurrent ECS calls
    # ROTOR_REDEPLOY_QUEUE_URL: SQS queue of redeploy jobs; without it jobs run inline
    redeploy_queue_url: str | None = None
    debounce_seconds: int = 0  # ROTOR_DEBOUNCE_SECONDS: delay each job (SQS, at most 900)
    # ROTOR_SNAPSHOT_MAX_AGE: a queued job that runs within this long of the planner's
    # DescribeServices decides on the planner's look at the service instead of describing it
    # again (0: always describe); same format as ROTOR_NOTIFY_WINDOW
    snapshot_max_age: timedelta = timedelta(seconds=60)
    max_redeploys_per_hour: int = 6  # ROTOR_MAX_REDEPLOYS_PER_HOUR: flap guard; 0 = no limit
    max_rollouts_per_cluster: int = 0  # ROTOR_MAX_ROLLOUTS_PER_CLUSTER: 0 = no cap
    # ROTOR_ECS_CONTAINERS: containers sharing ECS's account limits (the function's reserved
    # concurrency); each meters 1/N of every rate and burst
    ecs_containers: int = 1
    # ROTOR_ECS_READ_SHARE: the share (0 < x <= 1) of its part of ECS's read limits a
    # container meters; the stack's event-driven functions leave the reconciler its share
    ecs_read_share: float = 1.0
    # ROTOR_INDEX_MAX_AGE: a consumer index not rebuilt by a full scan for this long is not
    # trusted (rotor scans instead); same format as ROTOR_NOTIFY_WINDOW
    index_max_age: timedelta = timedelta(hours=2)
    # ROTOR_TRUSTED_ACCOUNTS: comma-separated account ids whose events the handlers accept
    # besides their own account's (the accounts that forward their secrets' events)
    trusted_accounts: Annotated[tuple[str, ...], NoDecode] = ()
    # ROTOR_REGIONS: comma-separated regions rotor may act in besides its own (the consumers
    # of a secret's replicas there); a replica in any other region is reported, not touched
    regions: Annotated[tuple[str, ...], NoDecode] = ()
    # ROTOR_REPLICA_MAX_WAIT: how long after the new value a replica consumer's job waits for
    # its replica to hold it; past it, the job fails as a replication failure (1h, 30m, ...)
    replica_max_wait: timedelta = timedelta(hours=1)
    # ROTOR_RECONCILE_READ_SHARE: the share (0 < x <= 1) of the account's ECS read limits the
    # reconciler's paced scan may use, so other deployers in the account keep the rest
    reconcile_read_share: float = 0.25

    @field_validator("clusters", "trusted_accounts", "regions", mode="before")
    @classmethod
    def _split_clusters(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("opt_in", "restore_on_access", mode="before")
    @classmethod
    def _boolean(cls, value: object) -> object:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        return value

    @field_validator(
        "notify_window", "replica_max_wait", "index_max_age", "snapshot_max_age", mode="before"
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            match = _DURATION.match(value)
            if not match:
                raise ValueError(f"expected seconds or a number with s/m/h/d, got {value!r}")
            seconds = int(match.group(1)) * _UNITS[match.group(2)]
            if seconds > _MAX_WINDOW_SECONDS:
                raise ValueError("at most 7 days (7d)")
            return timedelta(seconds=seconds)
        return value

    @field_validator("topic_arn", "state_table", "redeploy_queue_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("topic_arn")
    @classmethod
    def _topic_arn(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC_ARN.fullmatch(value):
            raise ValueError(
                f"expected an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME), got {value!r}"
            )
        return value

    @field_validator("redeploy_queue_url")
    @classmethod
    def _queue_url(cls, value: str | None) -> str | None:
        if value is not None and not _QUEUE_URL.fullmatch(value):
            raise ValueError(
                "expected an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), "
                f"got {value!r}"
            )
        return value

    @field_validator("trusted_accounts")
    @classmethod
    def _account_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not re.fullmatch(r"\d{12}", v)]
        if bad:
            raise ValueError(f"expected 12-digit account ids, got {', '.join(bad)}")
        return value

    @field_validator("regions")
    @classmethod
    def _region_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if partition_of(v) is None]
        if bad:
            raise ValueError(f"expected AWS region names (eu-west-1), got {', '.join(bad)}")
        return tuple(dict.fromkeys(value))

    @field_validator("max_workers", "ecs_containers")
    @classmethod
    def _positive(cls, value: int) -> int:
        if not 1 <= value <= 64:
            raise ValueError("must be between 1 and 64")
        return value

    @field_validator("reconcile_read_share", "ecs_read_share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("must be more than 0 and at most 1 (0.25: a quarter)")
        return value

    @field_validator("debounce_seconds")
    @classmethod
    def _sqs_delay(cls, value: int) -> int:
        if not 0 <= value <= MAX_DEBOUNCE_SECONDS:
            raise ValueError(
                f"must be between 0 and {MAX_DEBOUNCE_SECONDS} (the SQS maximum delay)"
            )
        return value

    @field_validator("max_redeploys_per_hour", "max_rollouts_per_cluster")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (no limit) or more")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment: no dotenv or secrets files."""
        return (init_settings, _EnvironSource(settings_cls, os.environ))

    @classmethod
    def variable_names(cls) -> list[str]:
        return [PREFIX + name.upper() for name in cls.model_fields]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (default ``os.environ``); ``ConfigurationError`` names
        every variable that is malformed or unknown."""
        environ = os.environ if environ is None else environ
        problems = _unknown_variables(environ, cls.variable_names())
        try:
            settings = cls.model_validate(_EnvironSource(cls, environ)())
        except ValidationError as exc:
            problems += [
                f"{PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
            ]
        if problems:
            raise ConfigurationError(f"invalid configuration: {'; '.join(problems)}")
        return settings


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping, matching names exactly:
    ``ROTOR_OPT_IN`` is a setting, ``rotor_opt_in`` is not (Linux names are case-sensitive)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        names = {PREFIX + name.upper() for name in self.settings_cls.model_fields}
        # Lower-cased because the source matches case-insensitively once names are exact.
        return {name.lower(): value for name, value in self._environ.items() if name in names}


def _unknown_variables(environ: Mapping[str, Any], known: list[str]) -> list[str]:
    problems = []
    for name in sorted(n for n in environ if n.startswith(PREFIX) and n not in known):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; rotor reads {', '.join(known)}"
        problems.append(f"{name} is not a rotor setting{hint}")
    return problems
