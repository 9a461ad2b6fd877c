"""Lambda: reads of secrets scheduled for deletion, deletions still in use, failed rotations."""

from __future__ import annotations

from handlers.entry import make_handler
from orchestration import HANDLER_KINDS

lambda_handler = make_handler(HANDLER_KINDS["handlers.alarms.lambda_handler"])
