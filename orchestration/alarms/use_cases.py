"""Alarms: reads of a secret scheduled for deletion, deletions of secrets still in use, and
failed rotations. Each says who, what, when, what will break and what to do.

Reads of a deleted secret come in storms (a fleet retrying); every read counts in the metric,
but at most one notification goes out per (secret, caller) per ``ROTOR_NOTIFY_WINDOW``, and
the expensive part (discovery) runs only for the read that notifies.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from orchestration.ecs.discovery import Inventory
from orchestration.errors import AwsCallError, RetryableAwsError
from orchestration.events.classification import Caller, Classification
from orchestration.models import Consumer
from orchestration.notifications import Notification, render
from orchestration.outcome import (
    DELETED_SECRET_STILL_REFERENCED,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_SUPPRESSED,
    PENDING_DELETION_ACCESS,
    ROTATION_FAILURES,
    SECRETS_RESTORED,
    EventOutcome,
    Failure,
)
from orchestration.runtime import Runtime
from orchestration.secrets.lookup import SecretFacts
from orchestration.secrets.references import SecretIdentity
from orchestration.times import iso_or_none, utc

log = logging.getLogger(__name__)

RESTORE_TAG = "rotor:restore-on-access"
#: The state-store item of one deletion event: what the warnings of its attempts said.
_EVENT_PREFIX = "deletion-warning#"
#: How long the attempts of one event share that item: every attempt may come, Lambda's
#: retries (6 hours), EventBridge's (24 hours) and a redrive from the dead-letter queue within
#: its retention (14 days). Not ROTOR_NOTIFY_WINDOW, which spaces notifications of separate
#: events; and long enough that DynamoDB's TTL cannot sweep the item before then.
_EVENT_ATTEMPTS = timedelta(days=14)
#: A consumer named by a warning is kept as the first 16 hex digits of its service ARN's
#: SHA-256, in one string: 20,000 of them (320 KB) stay under DynamoDB's 400 KB per item.
_DIGEST_CHARS = 16
_MAX_NAMED = 20_000


def handle_pending_deletion_access(event: Classification, runtime: Runtime) -> EventOutcome:
    """A call failed because its secret is scheduled for deletion: count, notify once, restore.

    A read that the window suppresses costs one DescribeSecret and the claim: no discovery.
    """
    outcome = EventOutcome(event)
    outcome.count(PENDING_DELETION_ACCESS)
    lookup = runtime.secret_lookup()
    caller = event.caller or Caller()
    for secret_id in event.secrets:
        # Reads carry only the caller's words (name, partial or full ARN): DescribeSecret
        # gives the one identity all three share, so they share one window.
        facts = lookup.describe(secret_id, account=event.account, region=event.region)
        identity = facts.identity
        if facts.described and not facts.scheduled_for_deletion and len(event.secrets) > 1:
            continue  # one of several secrets in a batch read; not the one being deleted
        outcome.secret = outcome.secret or identity.arn
        key = f"{identity.arn}|{caller.principal}"
        if not runtime.notify_window.claim(key, event.event_time):
            outcome.notifications_suppressed += 1
            outcome.count(NOTIFICATIONS_SUPPRESSED)
            continue
        # Not sent: the window is given back so the retried event (or the next read) notifies.
        with runtime.notify_window.released_on_failure(key):
            consumers, discovery_note = _consumers(runtime, facts.identity)
            restored = _maybe_restore(runtime, facts, outcome)
            notification = _pending_access_notification(
                event, facts, caller, consumers, discovery_note, restored
            )
            _send(runtime, notification, outcome)
    return outcome


def handle_deletion_scheduled(event: Classification, runtime: Runtime) -> EventOutcome:
    """DeleteSecret succeeded: warn, naming every service that still references the secret.

    A scan that a retry may complete (throttled, timed out) fails the event as retryable, so
    Lambda retries it; but what it found goes out at once, naming what it could not check yet,
    since every retry may stay throttled and the event end in the dead-letter queue. The first
    attempt always warns; a later attempt warns again only when it names a consumer no earlier
    warning of the event named (whatever else failed), so attempts that know the same or less
    stay quiet. A ``DescribeSecret`` that stays throttled warns too (once), with what the event
    says. The attempt that reads everything sends the complete warning, or, when a warning went
    out and nothing references the secret, says so. What the attempts said is one item per
    event in the state store (``_EventWarnings``), written before each warning is sent.
    """
    outcome = EventOutcome(event)
    try:
        facts = runtime.secret_lookup().describe(
            event.secret_id,
            account=event.account,
            region=event.region,
            written_by_aws=event.secret_written_by_aws,
        )
    except RetryableAwsError as exc:
        return _describe_failed(event, runtime, exc, outcome)
    outcome.secret = facts.identity.arn
    scan = _scan_for_warning(runtime, facts.identity, outcome)
    consumers = scan.consumers
    outcome.consumers = [c.to_dict() for c in consumers]
    warnings = _EventWarnings(runtime, event)
    if scan.retrying:
        decision = warnings.decide("partial", consumers)
        if not decision.send:
            outcome.notifications_suppressed += 1
            outcome.count(NOTIFICATIONS_SUPPRESSED)
            outcome.notes.append(
                "an earlier attempt of this event already warned, naming every consumer found now"
            )
            return outcome
        if consumers:
            warning = _still_referenced_notification(event, facts, scan, decision.named_before)
        else:
            warning = _could_not_check_notification(event, facts, scan)
        warnings.send(decision, warning, outcome)
        return outcome
    if not consumers and not scan.not_checked:
        outcome.notes.append("no ECS service references this secret; nothing will break")
        cleared = warnings.decide("all-clear", consumers)
        if cleared.send:
            warnings.send(cleared, _all_clear_notification(event, facts), outcome)
        return outcome
    if not consumers:
        # Never a false all-clear: say what rotor could not check, and how to check it.
        _send(runtime, _could_not_check_notification(event, facts, scan), outcome)
        return outcome
    warnings.send(
        warnings.decide("complete", consumers),
        _still_referenced_notification(event, facts, scan),
        outcome,
    )
    return outcome


def _describe_failed(
    event: Classification, runtime: Runtime, exc: RetryableAwsError, outcome: EventOutcome
) -> EventOutcome:
    """DescribeSecret failed for a reason a retry may fix: warn once with what the event says
    (the secret, who deleted it, when), then fail the event as retryable. Every retry may fail
    the same way, and the event end in the dead-letter queue: this warning is then all there is.
    """
    log.warning("could not describe deleted secret %s: %s", event.secret_id, exc)
    identity = event.secret_identity()
    secret = identity.arn if identity else event.secret_id
    outcome.secret = secret
    outcome.failed.append(Failure(secret, str(exc), retryable=True, scope="secret"))
    warnings = _EventWarnings(runtime, event)
    decision = warnings.decide("unread", [])
    if not decision.send:
        outcome.notifications_suppressed += 1
        outcome.count(NOTIFICATIONS_SUPPRESSED)
        outcome.notes.append("an earlier attempt of this event already warned")
        return outcome
    warnings.send(decision, _unread_notification(event, identity, exc), outcome)
    return outcome


def _unread_notification(
    event: Classification, identity: SecretIdentity | None, exc: AwsCallError
) -> Notification:
    name = identity.name if identity else (event.secret_name or event.secret_id)
    arn = identity.arn if identity else event.secret_id
    state = "was deleted" if event.force_delete else "is scheduled for deletion"
    if event.force_delete:
        when = "deleted immediately, without recovery (forceDeleteWithoutRecovery)"
    else:
        date = _cloudtrail_date(event.deletion_date) or "unknown"
        when = (
            f"scheduled for deletion on {date} ({event.recovery_window_days}-day recovery window)"
        )
    discover = f"rotor discover '{arn}' --region {event.region}"
    restore = f"aws secretsmanager restore-secret --secret-id '{arn}' --region {event.region}"
    body = render(
        f"rotor: secret {name} {state}; rotor could not read it yet to check ECS services",
        [
            ("Secret", name),
            ("ARN", arn),
            ("Deletion", when),
            ("Deleted by", (event.caller or Caller()).describe()),
            ("At", iso_or_none(event.event_time) or "?"),
            ("Account / region", f"{event.account} / {event.region}"),
        ],
        [
            (
                "Not checked yet:",
                [
                    f"rotor could not read the secret: {exc}",
                    "So it has not checked which ECS services reference it. rotor retries the"
                    " event and warns again, naming them, once it can; if every retry fails,"
                    " this is the only warning.",
                ],
            ),
            (
                "What to do:",
                [
                    "List the ECS services that reference it:",
                    f"  {discover}",
                    *(
                        []
                        if event.force_delete
                        else ["If the deletion is a mistake, cancel it:", f"  {restore}"]
                    ),
                ],
            ),
        ],
        rest=discover,
    )
    return Notification(
        kind=event.kind.value,
        subject=f"rotor: {name} deleted; could not check ECS services for it yet",
        body=body,
        secret=arn,
        data={
            "services": [],
            "recoverable": not event.force_delete,
            "could_not_check": [f"DescribeSecret: {exc}"],
            "complete": False,
        },
    )


def _still_referenced_notification(
    event: Classification, facts: SecretFacts, scan: _WarningScan, named_before: int = 0
) -> Notification:
    name = facts.identity.name
    consumers = scan.consumers
    if event.force_delete:
        when = "deleted immediately, without recovery (forceDeleteWithoutRecovery)"
        todo = [
            "The secret cannot be restored. Recreate it (same name, new ARN suffix) and update",
            "every task definition above to the new ARN, then redeploy those services.",
        ]
    else:
        date = _cloudtrail_date(event.deletion_date) or iso_or_none(facts.deleted_date) or "unknown"
        when = (
            f"scheduled for deletion on {date} ({event.recovery_window_days}-day recovery window)"
        )
        todo = [
            "If the deletion is a mistake, cancel it before that date:",
            f"  {_restore_command(facts.identity)}",
            "Otherwise move every service above off the secret before that date.",
        ]
    state = "was deleted" if event.force_delete else "is scheduled for deletion"
    count = f"at least {len(consumers) + named_before}" if scan.retrying else f"{len(consumers)}"
    earlier = (
        [
            (
                "Also named by an earlier warning of this deletion (not read this time):",
                [f"{named_before} service(s): see that warning, or list them as below"],
            )
        ]
        if named_before
        else []
    )
    if scan.retrying:
        not_checked = (
            "Not checked yet (a retry may read it; rotor retries the event and sends a complete"
            " warning once it can; if every retry fails, this is all rotor found):"
        )
        todo += [
            "To list every service that references it, once ECS answers again:",
            f"  {_discover_command(facts.identity)}",
        ]
    else:
        not_checked = "Could not check (more services may reference it):"
    body = render(
        f"rotor: secret {name} {state} but {count} ECS service(s) still reference it",
        [
            ("Secret", name),
            ("ARN", facts.identity.arn),
            ("Deletion", when),
            ("Deleted by", (event.caller or Caller()).describe()),
            ("At", iso_or_none(event.event_time) or "?"),
            ("Account / region", f"{event.account} / {event.region}"),
        ],
        [
            (
                "Still referenced by (new tasks of these services will fail to start):",
                _consumer_lines(consumers, event.caller),
            ),
            *earlier,
            *([(not_checked, scan.not_checked)] if scan.not_checked else []),
            ("What to do:", todo),
        ],
        rest=_discover_command(facts.identity),
    )
    return Notification(
        kind=event.kind.value,
        subject=(
            f"rotor: {name} ({'deleted' if event.force_delete else 'scheduled for deletion'})"
            f" is still used by {count} service(s)"
        ),
        body=body,
        secret=facts.identity.arn,
        data={
            "services": [c.service.arn for c in consumers],
            "recoverable": not event.force_delete,
            "could_not_check": scan.not_checked,
            "complete": not scan.retrying,
        },
    )


def handle_rotation_failed(event: Classification, runtime: Runtime) -> EventOutcome:
    """RotationFailed / RotationAbandoned: the old value stays current; someone must look."""
    arn = event.secret_id
    outcome = EventOutcome(event, secret=arn)
    outcome.count(ROTATION_FAILURES)
    secret = event.secret_identity()
    name = secret.name if secret else arn
    body = render(
        f"rotor: rotation of {name} did not complete ({event.event_name})",
        [
            ("Secret", name),
            ("ARN", arn),
            ("Event", f"{event.event_name} at {iso_or_none(event.event_time)}"),
            ("Error", event.error_message or "(the event gives none)"),
            ("Account / region", f"{event.account} / {event.region}"),
        ],
        [
            (
                "What it means:",
                [
                    "AWSCURRENT still holds the previous value; no service was redeployed.",
                    "A version may be left labelled AWSPENDING; the next rotation retries it.",
                ],
            ),
            (
                "What to do:",
                [
                    "Read the rotation function's CloudWatch logs for the step that failed, then:",
                    f"  aws secretsmanager rotate-secret --secret-id '{arn}'"
                    f" --region {event.region}",
                ],
            ),
        ],
    )
    _send(
        runtime,
        Notification(
            kind=event.kind.value,
            subject=f"rotor: {event.event_name} for {name}",
            body=body,
            secret=arn,
            data={"event_name": event.event_name, "error": event.error_message},
        ),
        outcome,
    )
    return outcome


def _pending_access_notification(
    event: Classification,
    facts: SecretFacts,
    caller: Caller,
    consumers: list[Consumer],
    discovery_note: str | None,
    restored: bool,
) -> Notification:
    identity = facts.identity
    if facts.deleted_date:
        deletion = f"{iso_or_none(facts.deleted_date)} ({_from_now(facts.deleted_date)})"
    elif facts.described:
        deletion = "not scheduled any more (restored since the read)"
    else:
        deletion = f"unknown (DescribeSecret not possible: {facts.why_not_described})"
    caller_rows = [
        ("Caller", caller.arn or caller.principal),
        ("Caller type", caller.type or "?"),
        ("Caller account", caller.account or "?"),
    ]
    if caller.role_arn:
        caller_rows.append(("Role", caller.role_arn))
    if caller.session_name:
        caller_rows.append(("Session", caller.session_name))
    caller_rows += [
        ("Source IP", caller.source_ip or "?"),
        ("User agent", caller.user_agent or "?"),
    ]
    runs_as_caller = [c.service.arn for c in consumers if _runs_as(c, caller)]
    todo = []
    if restored:
        todo.append("rotor restored the secret (RestoreSecret): the deletion is cancelled.")
    elif facts.scheduled_for_deletion or not facts.described:
        todo += [
            "If the secret is still needed, cancel the deletion:",
            f"  {_restore_command(identity)}",
            "Otherwise stop the caller from reading it, and move the services above off it.",
        ]
    # What rotor could not check first: a long list is cut, never this.
    services = [discovery_note] if discovery_note else []
    services += _consumer_lines(consumers, caller)
    body = render(
        f"rotor: {identity.name} was read while scheduled for deletion",
        [
            ("Secret", identity.name),
            ("ARN", identity.arn),
            ("Deletion date", deletion),
            (
                "Attempt",
                f"{event.event_name} at {iso_or_none(event.event_time)} failed: "
                f"{event.error_code or 'error'}",
            ),
            *caller_rows,
            ("Account / region", f"{event.account} / {event.region}"),
            ("Restored by rotor", "yes" if restored else "no"),
        ],
        [
            ("ECS services still referencing it (they break when it is deleted):", services),
            ("What to do:", todo or ["Nothing: the secret is no longer scheduled for deletion."]),
        ],
        rest=_discover_command(identity),
    )
    return Notification(
        kind=event.kind.value,
        subject=f"rotor: {identity.name} read while scheduled for deletion",
        body=body,
        secret=identity.arn,
        data={
            "caller": caller.principal,
            "services": [c.service.arn for c in consumers],
            "services_running_as_caller": runs_as_caller,
            "restored": restored,
            "deletion_date": iso_or_none(facts.deleted_date),
        },
    )


def _consumers(runtime: Runtime, secret: SecretIdentity) -> tuple[list[Consumer], str | None]:
    try:
        inventory = runtime.discovery().scan()
    except AwsCallError as exc:
        log.warning("could not list the consumers of %s: %s", secret.arn, exc)
        return [], f"(could not list ECS services: {exc})"
    note = "; ".join(f.describe() for f in inventory.failures)
    return inventory.consumers_of(secret), f"(could not check all: {note})" if note else None


@dataclass(frozen=True, slots=True)
class _WarningScan:
    """What a deletion warning knows: the consumers found, and what could not be read."""

    consumers: list[Consumer]
    not_checked: list[str]  # what rotor could not check, as a person reads it
    unchecked: tuple[str, ...]  # the same, as stable subjects (no error text)
    retrying: bool  # part of it failed for a reason a retry may fix: the event is retried


def _scan_for_warning(
    runtime: Runtime, secret: SecretIdentity, outcome: EventOutcome
) -> _WarningScan:
    """The consumers of a secret being deleted, and what rotor could not check.

    Whatever failed is in ``outcome.failed``: a part that failed for a reason a retry may fix
    (throttled, timed out) makes the event retryable (Lambda's retries, then its on-failure
    destination); a part that failed for a reason a retry cannot fix (access denied, a
    cluster that does not exist) is only reported.
    """
    try:
        inventory: Inventory = runtime.discovery().scan()
    except AwsCallError as exc:
        log.warning("could not list the consumers of %s: %s", secret.arn, exc)
        retryable = isinstance(exc, RetryableAwsError)
        outcome.failed.append(Failure("(all)", str(exc), retryable=retryable, scope="cluster"))
        return _WarningScan([], [f"could not list ECS clusters: {exc}"], ("(all)",), retryable)
    outcome.report_scan(inventory)
    return _WarningScan(
        inventory.consumers_of(secret),
        [f.describe() for f in inventory.failures],
        tuple(sorted(f"{f.scope} {f.subject}" for f in inventory.failures)),
        any(f.retryable for f in inventory.failures),
    )


Moment = Literal["unread", "partial", "complete", "all-clear"]


@dataclass(frozen=True, slots=True)
class _Decision:
    """Whether an attempt sends its warning, decided (and recorded) before it is sent."""

    send: bool
    #: The first warning of the event naming a consumer: it counts DeletedSecretStillReferenced.
    count: bool = False
    #: Consumers earlier warnings named that this one does not (read in another attempt).
    named_before: int = 0
    #: What the write added, to give back if the send fails (``None``: nothing was written).
    token: str | None = None
    before: dict[str, Any] | None = None
    added: frozenset[str] = frozenset()


class _EventWarnings:
    """What the warnings of one deletion event said, as one item in the state store.

    The item (``deletion-warning#<event id>``) holds whether a warning went out (``warned``),
    the consumers warnings named (digests of their service ARNs, ``named``), whether the
    deletion was counted (``counted``) and whether the all-clear went out (``cleared``). Each
    decision to send is one read and, when it sends, one write conditional on the item's
    version (``StateStore.update``): two attempts cannot both take the same decision, and
    the cost does not grow with the number of consumers. The write comes before the send;
    a send that fails gives it back, so the next attempt decides again. Across containers
    this needs ``ROTOR_STATE_TABLE``, like every notify window; without it the item lives in
    the container's memory.
    """

    def __init__(self, runtime: Runtime, event: Classification) -> None:
        self._runtime = runtime
        self._store = runtime.notify_window.store
        self._key = f"{_EVENT_PREFIX}{event.event_id}"
        self._event = event

    def decide(self, moment: Moment, consumers: Collection[Consumer]) -> _Decision:
        """Whether this attempt sends the warning of ``moment``:

        * ``unread`` (DescribeSecret failed) and ``partial`` (the scan failed in part): the
          first warning of the event always goes out; a later partial one only when it names
          a consumer no earlier warning named;
        * ``complete`` (the whole scan read): always;
        * ``all-clear`` (the whole scan read, no consumer): once, when a warning went out.

        A warning the state store cannot record goes out anyway (it may then go out twice);
        an all-clear it cannot read raises, and the retry asks again.
        """
        mine = frozenset(_digest(c.service.arn) for c in consumers)
        token = uuid.uuid4().hex

        def change(held: dict[str, Any] | None) -> tuple[dict[str, Any] | None, _Decision]:
            item = {k: v for k, v in (held or {}).items() if k not in ("pk", "revision")}
            named = _parse_digests(item.get("named", ""))
            warned = bool(item.get("warned"))
            counted = bool(item.get("counted"))
            if moment == "all-clear":
                if not warned or item.get("cleared"):
                    return None, _Decision(False)
                return {**item, **self._stamp(token), "cleared": True}, _Decision(
                    True, token=token, before=held
                )
            added = mine - named
            if moment in ("unread", "partial") and warned:
                overflow = bool(item.get("overflow"))
                if not added or (overflow and len(mine) <= int(item.get("most", 0))):
                    return None, _Decision(False)
            count = bool(mine) and not counted
            decision = _Decision(
                True,
                count=count,
                named_before=len(named - mine),
                token=token,
                before=held,
                added=added,
            )
            if moment == "complete" and not count:
                # Nothing to record: the complete warning always goes, and was counted before.
                return None, _Decision(True, named_before=decision.named_before)
            union = sorted(named | mine)
            written = {
                **item,
                **self._stamp(token),
                "warned": True,
                "counted": counted or count,
                "most": max(int(item.get("most", 0)), len(mine)),
                "overflow": bool(item.get("overflow")) or len(union) > _MAX_NAMED,
            }
            if union:
                written["named"] = "".join(union[:_MAX_NAMED])
            return written, decision

        try:
            return self._store.update(self._key, change)
        except AwsCallError as exc:
            if moment == "all-clear":
                raise  # the retry asks again: an all-clear is never sent unasked
            # Rather twice than never: warn without a record (a later attempt may warn again).
            log.error("could not record the warning of %s, sending it anyway: %s", self._key, exc)
            return _Decision(True, count=bool(mine))

    def send(self, decision: _Decision, notification: Notification, outcome: EventOutcome) -> None:
        """Send the warning decided on; a send that fails gives the decision back, then raises."""
        with self._given_back_on_failure(decision):
            _send(self._runtime, notification, outcome)
        if decision.count:
            outcome.count(DELETED_SECRET_STILL_REFERENCED)

    def _stamp(self, token: str) -> dict[str, Any]:
        keep_until = max(utc(self._event.event_time), datetime.now(UTC)) + _EVENT_ATTEMPTS
        return {
            "kind": "deletion-warning",
            "writer": token,
            "expires_at": int(keep_until.timestamp()),
        }

    @contextmanager
    def _given_back_on_failure(self, decision: _Decision) -> Iterator[None]:
        try:
            yield
        except Exception:
            if decision.token is not None:
                try:
                    self._store.update(self._key, lambda held: (_given_back(held, decision), None))
                except AwsCallError as exc:
                    log.error("could not give back the warning state of %s: %s", self._key, exc)
            raise


def _given_back(held: dict[str, Any] | None, decision: _Decision) -> dict[str, Any] | None:
    """The item without what ``decision`` wrote: as it was, when nobody wrote since; else
    without the consumers it added and, if it counted the deletion, not counted."""
    if held is None or decision.token is None:
        return None
    if held.get("writer") == decision.token:
        before = {k: v for k, v in (decision.before or {}).items() if k != "writer"}
        return {**before, "kind": "deletion-warning", "expires_at": held.get("expires_at", 0)}
    if not decision.added and not decision.count:
        return None
    item = dict(held)
    named = sorted(_parse_digests(item.pop("named", "")) - decision.added)
    if named:
        item["named"] = "".join(named)
    if decision.count:
        item["counted"] = False
    return item


def _digest(service_arn: str) -> str:
    return hashlib.sha256(service_arn.encode()).hexdigest()[:_DIGEST_CHARS]


def _parse_digests(text: object) -> frozenset[str]:
    value = text if isinstance(text, str) else ""
    return frozenset(value[i : i + _DIGEST_CHARS] for i in range(0, len(value), _DIGEST_CHARS))


def _all_clear_notification(event: Classification, facts: SecretFacts) -> Notification:
    name = facts.identity.name
    body = render(
        f"rotor: secret {name}: no ECS service references it (scan now complete)",
        [
            ("Secret", name),
            ("ARN", facts.identity.arn),
            ("Deleted by", (event.caller or Caller()).describe()),
            ("At", iso_or_none(event.event_time) or "?"),
            ("Account / region", f"{event.account} / {event.region}"),
        ],
        [
            (
                "What it means:",
                [
                    "An earlier warning said rotor could not check every ECS service yet.",
                    "rotor has now read every cluster: no service references this secret.",
                ],
            )
        ],
    )
    return Notification(
        kind=event.kind.value,
        subject=f"rotor: {name} deleted; no ECS service references it (scan complete)",
        body=body,
        secret=facts.identity.arn,
        data={"services": [], "recoverable": not event.force_delete, "complete": True},
    )


def _could_not_check_notification(
    event: Classification, facts: SecretFacts, scan: _WarningScan
) -> Notification:
    name = facts.identity.name
    state = "was deleted" if event.force_delete else "is scheduled for deletion"
    if scan.retrying:
        heading = (
            "No reference found so far, but rotor could not check yet (a retry may read it;"
            " rotor retries the event and says what it finds):"
        )
        fix = "If the retries fail too, check those services by hand before the secret is gone:"
    else:
        heading = "No reference found in what rotor could read, but it could not check:"
        fix = "or check those services by hand before the secret is gone:"
    body = render(
        f"rotor: secret {name} {state}; rotor could not check every ECS service for it"
        + (" yet" if scan.retrying else ""),
        [
            ("Secret", name),
            ("ARN", facts.identity.arn),
            ("Deleted by", (event.caller or Caller()).describe()),
            ("At", iso_or_none(event.event_time) or "?"),
            ("Account / region", f"{event.account} / {event.region}"),
        ],
        [
            (heading, scan.not_checked),
            (
                "What to do:",
                [
                    *(
                        []
                        if scan.retrying
                        else [
                            "Give rotor read access to what it could not check"
                            " (or fix ROTOR_CLUSTERS),"
                        ]
                    ),
                    fix,
                    f"  {_discover_command(facts.identity)}",
                    *(
                        []
                        if event.force_delete
                        else ["To cancel the deletion:", f"  {_restore_command(facts.identity)}"]
                    ),
                ],
            ),
        ],
        rest=_discover_command(facts.identity),
    )
    return Notification(
        kind=event.kind.value,
        subject=f"rotor: {name} deleted; could not check every ECS service for it"
        + (" yet" if scan.retrying else ""),
        body=body,
        secret=facts.identity.arn,
        data={
            "services": [],
            "recoverable": not event.force_delete,
            "could_not_check": scan.not_checked,
            "complete": False,
        },
    )


def _maybe_restore(runtime: Runtime, facts: SecretFacts, outcome: EventOutcome) -> bool:
    wanted = runtime.settings.restore_on_access or (
        facts.tags.get(RESTORE_TAG, "").strip().lower() == "true"
    )
    if not (wanted and facts.described and facts.scheduled_for_deletion):
        return False
    try:
        runtime.secret_lookup().restore(facts.identity)
    except AwsCallError as exc:
        outcome.notes.append(f"RestoreSecret failed: {exc}")
        return False
    outcome.restored.append(facts.identity.arn)
    outcome.count(SECRETS_RESTORED)
    log.warning("restored %s after a read while scheduled for deletion", facts.identity.arn)
    return True


def _consumer_lines(consumers: list[Consumer], caller: Caller | None) -> list[str]:
    lines = []
    for consumer in consumers:
        service = consumer.service
        where = ", ".join(sorted({f"{c} ({ref.field.value})" for c, ref in consumer.references}))
        line = (
            f"{service.cluster_name}/{service.name}: task definition "
            f"{consumer.task_definition.arn.rsplit('/', 1)[-1]}, container {where}"
        )
        if caller and _runs_as(consumer, caller):
            line += " - runs as the caller's role"
        lines.append(line)
    return lines


def _runs_as(consumer: Consumer, caller: Caller) -> bool:
    role = caller.role_arn
    td = consumer.task_definition
    return bool(role) and role in (td.task_role_arn, td.execution_role_arn)


def _send(runtime: Runtime, notification: Notification, outcome: EventOutcome) -> None:
    runtime.notifier.publish(notification)
    outcome.notifications.append(notification)
    outcome.count(NOTIFICATIONS_SENT)


def _discover_command(secret: SecretIdentity) -> str:
    return f"rotor discover '{secret.arn}' --region {secret.region}"


def _restore_command(secret: SecretIdentity) -> str:
    return f"aws secretsmanager restore-secret --secret-id '{secret.arn}' --region {secret.region}"


def _cloudtrail_date(text: str | None) -> str | None:
    """CloudTrail renders dates as 'Nov 27, 2026, 11:00:00 AM' (older: no comma after the
    year); give them as ISO 8601 UTC, or as written when the form is unknown."""
    if not text:
        return None
    cleaned = " ".join(text.replace("\u202f", " ").split())
    for form in ("%b %d, %Y, %I:%M:%S %p", "%b %d, %Y %I:%M:%S %p"):
        try:
            return iso_or_none(datetime.strptime(cleaned, form).replace(tzinfo=UTC))
        except ValueError:
            continue
    return text


def _from_now(moment: datetime) -> str:
    hours = (utc(moment) - datetime.now(UTC)).total_seconds() / 3600
    if hours <= 0:
        return "due now"
    return f"in {round(hours)} hours" if hours < 48 else f"in {round(hours / 24)} days"
