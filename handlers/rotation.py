"""Lambda: a secret got a new current value → redeploy the services that hold the old one."""

from __future__ import annotations

from handlers.entry import make_handler
from orchestration import HANDLER_KINDS

lambda_handler = make_handler(HANDLER_KINDS["handlers.rotation.lambda_handler"])
