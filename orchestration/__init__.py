"""rotor's domain: everything but the Lambda entry points (those are in ``handlers``).

The names below are the public API: ``handlers/`` imports nothing else (a test checks it). The
modules behind them may change.
"""

from orchestration.aws.clients import AwsClients
from orchestration.dispatch import process
from orchestration.errors import (
    AwsCallError,
    ConfigurationError,
    InvalidEventError,
    InvalidReferenceError,
    PermanentAwsError,
    RateLimited,
    RetryableAwsError,
    RetryableFailure,
    RotorError,
    UsageError,
)
from orchestration.events.classification import (
    ALARM_KINDS,
    REDEPLOY_KINDS,
    Classification,
    EventKind,
    classify,
)
from orchestration.fanout.consume import JobReport, run_job
from orchestration.fanout.jobs import parse_job
from orchestration.fanout.queue import SqsJobQueue
from orchestration.outcome import (
    INVALID_EVENTS,
    METRIC_UNITS,
    PROCESSING_ERRORS,
    UNTRUSTED_EVENTS,
    EventOutcome,
)
from orchestration.runtime import Runtime, fixed_deadline, lambda_deadline
from orchestration.secrets.references import (
    ReferenceField,
    SecretIdentity,
    SecretReference,
    parse_reference,
)
from orchestration.settings import Settings

__all__ = [
    "ALARM_KINDS",
    "INVALID_EVENTS",
    "METRIC_UNITS",
    "PROCESSING_ERRORS",
    "REDEPLOY_KINDS",
    "UNTRUSTED_EVENTS",
    "AwsCallError",
    "AwsClients",
    "Classification",
    "ConfigurationError",
    "EventKind",
    "EventOutcome",
    "InvalidEventError",
    "InvalidReferenceError",
    "JobReport",
    "PermanentAwsError",
    "RateLimited",
    "ReferenceField",
    "RetryableAwsError",
    "RetryableFailure",
    "RotorError",
    "Runtime",
    "SecretIdentity",
    "SecretReference",
    "Settings",
    "SqsJobQueue",
    "UsageError",
    "classify",
    "fixed_deadline",
    "lambda_deadline",
    "parse_job",
    "parse_reference",
    "process",
    "run_job",
]
