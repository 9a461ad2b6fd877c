"""Lambda: follows the deployments rotor started to their end (ECS Deployment State Change)."""

from __future__ import annotations

from handlers.entry import make_handler
from orchestration import HANDLER_KINDS

lambda_handler = make_handler(HANDLER_KINDS["handlers.tracker.lambda_handler"])
