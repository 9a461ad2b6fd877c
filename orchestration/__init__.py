"""rotor's domain: everything but the Lambda entry points (those are in ``handlers``).

The names below are the public API: ``handlers/`` and the command line (``orchestration.cli``)
import nothing else from ``orchestration`` (a test checks it). The modules behind them may
change.
"""

from orchestration.aws.clients import BOTOCORE_CONFIG, AwsClients
from orchestration.aws.retry import RetryPolicy
from orchestration.dispatch import HANDLER_KINDS, Handled, handle, process
from orchestration.ecs.shapes import primary_created_at
from orchestration.errors import (
    AwsCallError,
    ConfigurationError,
    InvalidEventError,
    InvalidReferenceError,
    OutOfTime,
    PermanentAwsError,
    RateLimited,
    RetryableAwsError,
    RetryableFailure,
    RotorError,
    TryAgainLater,
    UsageError,
)
from orchestration.events.classification import (
    ALARM_KINDS,
    REDEPLOY_KINDS,
    TRACKER_KINDS,
    Classification,
    EventKind,
    classify,
    parse_event_text,
)
from orchestration.events.routing import Route, route, unrouted_note
from orchestration.fanout.consume import JobReport
from orchestration.fanout.jobs import PlanJob, RedeployJob, parse_job
from orchestration.fanout.queue import SqsJobQueue, deferral_delay, queue_url
from orchestration.freshness import plan
from orchestration.notifications import printable
from orchestration.outcome import (
    INVALID_EVENTS,
    METRIC_UNITS,
    PROCESSING_ERRORS,
    UNTRUSTED_EVENTS,
    EventOutcome,
)
from orchestration.prerequisites import (
    DEFAULT_STACK,
    Check,
    CheckStatus,
    DoctorReport,
    DoctorScope,
    check_prerequisites,
)
from orchestration.reconcile.heal import reconcile
from orchestration.reconcile.report import ReconcileReport
from orchestration.rotation.new_value import describe_verdict
from orchestration.rotation.queued import run_job
from orchestration.runtime import Runtime, fixed_deadline, lambda_deadline
from orchestration.secrets.references import (
    ReferenceField,
    SecretIdentity,
    SecretReference,
    parse_reference,
    partition_of,
)
from orchestration.settings import Settings
from orchestration.times import iso, iso_or_none
from orchestration.tracking.status import parse_since, render_status, status_report

__all__ = [
    "ALARM_KINDS",
    "BOTOCORE_CONFIG",
    "DEFAULT_STACK",
    "HANDLER_KINDS",
    "INVALID_EVENTS",
    "METRIC_UNITS",
    "PROCESSING_ERRORS",
    "REDEPLOY_KINDS",
    "TRACKER_KINDS",
    "UNTRUSTED_EVENTS",
    "AwsCallError",
    "AwsClients",
    "Check",
    "CheckStatus",
    "Classification",
    "ConfigurationError",
    "DoctorReport",
    "DoctorScope",
    "EventKind",
    "EventOutcome",
    "Handled",
    "InvalidEventError",
    "InvalidReferenceError",
    "JobReport",
    "OutOfTime",
    "PermanentAwsError",
    "PlanJob",
    "RateLimited",
    "ReconcileReport",
    "RedeployJob",
    "ReferenceField",
    "RetryPolicy",
    "RetryableAwsError",
    "RetryableFailure",
    "RotorError",
    "Route",
    "Runtime",
    "SecretIdentity",
    "SecretReference",
    "Settings",
    "SqsJobQueue",
    "TryAgainLater",
    "UsageError",
    "check_prerequisites",
    "classify",
    "deferral_delay",
    "describe_verdict",
    "fixed_deadline",
    "handle",
    "iso",
    "iso_or_none",
    "lambda_deadline",
    "parse_event_text",
    "parse_job",
    "parse_reference",
    "parse_since",
    "partition_of",
    "plan",
    "primary_created_at",
    "printable",
    "process",
    "queue_url",
    "reconcile",
    "render_status",
    "route",
    "run_job",
    "status_report",
    "unrouted_note",
]
