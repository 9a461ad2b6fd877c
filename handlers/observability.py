"""The one place that owns Logger, Tracer and Metrics for every rotor function.

Configured by environment, as the SAM template sets it: ``POWERTOOLS_SERVICE_NAME`` (the
``service`` dimension of every metric), ``POWERTOOLS_METRICS_NAMESPACE`` and
``POWERTOOLS_LOG_LEVEL``; the defaults are the template's values.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "rotor"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Rotor"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
