"""rotor's domain: everything but the Lambda entry points (those are in ``handlers``).

The names below are the public API; the modules behind them may change.
"""

from orchestration.aws.clients import AwsClients
from orchestration.dispatch import process
from orchestration.errors import (
    AwsCallError,
    ConfigurationError,
    InvalidEventError,
    InvalidReferenceError,
    PermanentAwsError,
    RetryableAwsError,
    RotorError,
)
from orchestration.events.classification import Classification, EventKind, classify
from orchestration.outcome import EventOutcome
from orchestration.runtime import Runtime
from orchestration.secrets.references import (
    ReferenceField,
    SecretIdentity,
    SecretReference,
    parse_reference,
)
from orchestration.settings import Settings

__all__ = [
    "AwsCallError",
    "AwsClients",
    "Classification",
    "ConfigurationError",
    "EventKind",
    "EventOutcome",
    "InvalidEventError",
    "InvalidReferenceError",
    "PermanentAwsError",
    "ReferenceField",
    "RetryableAwsError",
    "RotorError",
    "Runtime",
    "SecretIdentity",
    "SecretReference",
    "Settings",
    "classify",
    "parse_reference",
    "process",
]
