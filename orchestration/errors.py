"""rotor's exception tree. Every exception rotor raises on purpose is one of these.

    RotorError                      every error rotor raises on purpose
    ├── InvalidEventError           the input is not a well-formed event: drop it, never retry
    ├── InvalidReferenceError       a string is not a secret reference rotor can parse
    ├── ConfigurationError          a ROTOR_* setting is missing or malformed
    ├── UsageError                  bad command-line input (exit status 2)
    ├── RetryableFailure            the event was handled in part; what failed may succeed on a
    │                               retry of the whole event (Lambda's async retry does that)
    ├── OutOfTime                   the planner is short of time: the rest of the plan goes to
    │                               the worker as a plan job (never leaves the planner)
    ├── TryAgainLater               a redeploy job goes back on the queue (a batch item failure)
    └── AwsCallError                an AWS call failed (carries the service, operation and code)
        ├── RetryableAwsError       throttling or a transient fault: retry with backoff
        │   └── RateLimited         rotor's own rate limiter would wait past the deadline
        └── PermanentAwsError       access denied, not found, invalid input: retrying cannot help
            ├── ConditionFailed     a conditional write found the item changed (DynamoDB)
            └── ClusterNotFound     ECS: the cluster does not exist (any more)

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


class UsageError(RotorError):
    """Bad command-line input: a file that cannot be read, a missing region, an unknown secret."""


class RetryableFailure(RotorError):
    """Part of an event failed in a way a later retry of the event may fix (a redeploy that was
    throttled past its budget). Raised so Lambda retries the event, and finally hands it to the
    on-failure destination: nothing is lost, and the ledger makes the retry safe."""


class OutOfTime(RotorError):
    """Less time is left than planning one more part takes: the planner hands the rest of the
    plan to the worker (``orchestration.rotation.new_value.plan_to_queue``)."""


class TryAgainLater(RotorError):
    """A redeploy job goes back on the queue: reported to Lambda's SQS event source as a batch
    item failure, so the message comes back and, after maxReceiveCount, is dead-lettered."""


class AwsCallError(RotorError):
    """An AWS API call failed."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation = operation
        self.code = code
        self.message = message


class RetryableAwsError(AwsCallError):
    """Throttling or a transient fault: the same call may succeed later."""


class RateLimited(RetryableAwsError):
    """The call would wait for a rate-limit token past the caller's deadline: not made."""

    def __init__(self, wait: float, max_wait: float) -> None:
        super().__init__(
            "RateLimit",
            "RateLimited",
            f"a token is {wait:.1f} s away, the deadline {max_wait:.1f} s",
        )


class PermanentAwsError(AwsCallError):
    """Retrying the same call cannot succeed (access denied, not found, bad input)."""


class ConditionFailed(PermanentAwsError):
    """A conditional write was refused: the item is not as the caller last read it. ``item``
    is the item as it is (when the call asked for it), in DynamoDB's attribute-value form."""

    def __init__(
        self, operation: str, code: str, message: str, item: dict[str, object] | None = None
    ) -> None:
        super().__init__(operation, code, message)
        self.item = item


class ClusterNotFound(PermanentAwsError):
    """ECS answered that the cluster does not exist (deleted, or never created)."""
