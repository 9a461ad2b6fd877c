"""Which accounts' events a rotor function acts on: its own, and ``ROTOR_TRUSTED_ACCOUNTS``.

Another account's secrets reach this account's default bus only through a forwarding rule and a
bus policy (``infra/forwarder.yaml``); an event from any other account is rejected, logged and
counted (``UntrustedEvents``) before rotor calls AWS on its behalf.
"""

from __future__ import annotations

from collections.abc import Collection


def own_account(invoked_function_arn: str) -> str | None:
    """The account of ``arn:aws:lambda:REGION:ACCOUNT:function:NAME``."""
    parts = invoked_function_arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else None


def untrusted_reason(
    event_account: str, invoked_function_arn: str, trusted: Collection[str]
) -> str | None:
    """Why an event from ``event_account`` is not accepted, or None when it is."""
    own = own_account(invoked_function_arn)
    if event_account == own or event_account in trusted:
        return None
    allowed = ", ".join(sorted({*trusted, *([own] if own else [])})) or "none"
    return f"event from account {event_account}, not one of {allowed} (ROTOR_TRUSTED_ACCOUNTS)"
