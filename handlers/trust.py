"""The function's own account, which the trust check accepts besides ``ROTOR_TRUSTED_ACCOUNTS``.

Another account's secrets reach this account's default bus only through a forwarding rule and a
bus policy (``infra/forwarder.yaml``); an event from any other account is rejected, logged and
counted (``UntrustedEvents``) before rotor calls AWS on its behalf. The check itself is
``orchestration.handle``'s, shared with ``rotor replay``; what is Lambda's is where the own
account comes from: the invoked function's ARN.
"""

from __future__ import annotations


def own_account(invoked_function_arn: str) -> str | None:
    """The account of ``arn:aws:lambda:REGION:ACCOUNT:function:NAME``."""
    parts = invoked_function_arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else None
