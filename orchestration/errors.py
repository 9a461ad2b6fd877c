"""rotor's exception tree.

    RotorError                      every error rotor raises on purpose
    ├── InvalidEventError           the input is not a well-formed event: drop it, never retry
    ├── InvalidReferenceError       a string is not a secret reference rotor can parse
    ├── ConfigurationError          a ROTOR_* setting is missing or malformed
    └── AwsCallError                an AWS call failed (carries the service, operation and code)
        ├── RetryableAwsError       throttling or a transient fault: retry with backoff
        └── PermanentAwsError       access denied, not found, invalid input: retrying cannot help

The adapter in ``orchestration.aws.retry`` maps botocore's ``ClientError`` and connection
errors onto ``AwsCallError`` so domain code never inspects botocore error codes itself.
"""

from __future__ import annotations


class RotorError(Exception):
    """Base class of every error rotor raises on purpose."""


class InvalidEventError(RotorError):
    """The input is not an event rotor can act on (not JSON, no detail, no secret…)."""


class InvalidReferenceError(RotorError):
    """A string is not a Secrets Manager reference rotor can parse."""


class ConfigurationError(RotorError):
    """A ROTOR_* setting is missing or malformed."""


class AwsCallError(RotorError):
    """An AWS API call failed."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message


class RetryableAwsError(AwsCallError):
    """Throttling or a transient fault: the same call may succeed later."""


class PermanentAwsError(AwsCallError):
    """Retrying the same call cannot succeed (access denied, not found, bad input)."""
