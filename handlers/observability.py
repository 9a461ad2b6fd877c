"""The one place that owns Logger, Tracer and Metrics for every rotor function.

Configured by environment, as the SAM template sets it: ``POWERTOOLS_SERVICE_NAME`` (the
``service`` dimension of every metric), ``POWERTOOLS_METRICS_NAMESPACE`` and
``POWERTOOLS_LOG_LEVEL``; the defaults are the template's values.

rotor's domain modules log through the standard library (``orchestration`` knows nothing of
Lambda); here their records are routed through the Powertools logger's handler, so in Lambda
they are JSON lines with the same keys (correlation id included) as the handler's own.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from orchestration import METRIC_UNITS, PROCESSING_ERRORS, AwsCallError, RetryableAwsError

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "rotor"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Rotor"
DOMAIN_LOGGER = "orchestration"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

# An event that counts nothing (one a function ignores, a deletion nothing references) has no
# metric to publish, and that is right: Powertools' warning about it is noise in every log.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

logging.getLogger(DOMAIN_LOGGER)  # registered, so that the copy below finds it
copy_config_to_registered_loggers(source_logger=logger, include={DOMAIN_LOGGER})


def add_counts(counts: Mapping[str, float]) -> None:
    """Publish what a use case counted, each in its own unit (a count unless said otherwise)."""
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=METRIC_UNITS.get(name, MetricUnit.Count), value=value)


def aws_call_failed(exc: AwsCallError, then: str) -> None:
    """Count and log an AWS error that stops the work; ``then`` says what happens next."""
    metrics.add_metric(name=PROCESSING_ERRORS, unit=MetricUnit.Count, value=1)
    logger.error(
        f"AWS call failed; {then}",
        extra={
            "operation": exc.operation,
            "code": exc.code,
            "retryable": isinstance(exc, RetryableAwsError),
        },
    )
