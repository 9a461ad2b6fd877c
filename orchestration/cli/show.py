"""How the command line shows what processing an event did: the one printer of an outcome
(``rotor replay`` and every step of ``rotor demo``), its JSON form, and tables.

What is printed is sorted: the scan and the redeploys run concurrently, so the order in which
an outcome's lists were filled changes from run to run; two runs of the same replay print the
same text. A dry run wrote nothing, so what it lists is what it *would* have done: "would
redeploy", "would notify", "would count" (and ``would_*`` keys in JSON).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from orchestration import (
    EventOutcome,
    Route,
)
from orchestration.cli.dry_run import WouldCall

#: JSON keys of an outcome that a dry run did not do, and what it says instead.
WOULD_KEYS = {
    "redeployed": "would_redeploy",
    "queued": "would_queue",
    "notifications": "would_notify",
    "restored": "would_restore",
    "metrics": "would_metrics",
}


def outcome_json(outcome: EventOutcome, *, dry: bool = False) -> dict[str, Any]:
    """``outcome.to_dict()`` with every list sorted (and, for a dry run, ``would_*`` keys)."""
    data = {key: stable(value) for key, value in outcome.to_dict().items()}
    if dry:
        data = {WOULD_KEYS.get(key, key): value for key, value in data.items()}
    return data


def stable(value: Any) -> Any:
    """``value`` with its lists sorted and its mappings' keys in order, recursively."""
    if isinstance(value, dict):
        return {key: stable(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return sorted((stable(item) for item in value), key=_sort_key)
    return value


def _sort_key(item: Any) -> tuple[str, str]:
    """What an item is about first (a service, cluster or task definition), then the rest."""
    about = ""
    if isinstance(item, dict):
        about = next((str(item[k]) for k in _ABOUT if isinstance(item.get(k), str)), "")
    return about, json.dumps(item, sort_keys=True, default=str)


_ABOUT = ("cluster", "service", "task_definition", "subject", "secret")


def print_outcome(
    heading: str,
    outcomes: Sequence[EventOutcome],
    out: TextIO,
    *,
    routes: Sequence[Route] = (),
    would_call: Sequence[WouldCall] | None = None,
    dry: bool | None = None,
) -> None:
    """``outcomes``: one event, or the same event delivered several times (counted together).
    ``routes``: the stack's rules that send it to a function. ``would_call``: a dry run's
    writes, which were not sent. ``dry``: a dry run (default: when ``would_call`` is given)."""
    first = outcomes[0]
    c = first.classification
    dry = would_call is not None if dry is None else dry
    print(heading, file=out)
    print(f"  {c.kind.value}: {first.secret or c.secret or '-'}", file=out)
    print(f"  {c.reason}", file=out)
    for r in sorted(routes, key=lambda r: (r.rule, r.function)):
        print(f"  route: {r.describe()}", file=out)
    if first.redeployed:
        print("  would redeploy:" if dry else "  redeployed:", file=out)
        for arn in sorted(first.redeployed):
            print(f"    {service_name(arn)}", file=out)
    if first.queued:
        print("  would queue a redeploy job:" if dry else "  queued a redeploy job:", file=out)
        for arn in sorted(first.queued):
            print(f"    {service_name(arn)}", file=out)
    if first.skipped:
        print("  skipped:", file=out)
        for item in sorted(first.skipped, key=lambda s: (s.service, s.reason)):
            print(f"    {service_name(item.service)}: {item.reason}", file=out)
    for manual in sorted(first.manual, key=lambda m: m.service):
        print(f"  REDEPLOY BY HAND {service_name(manual.service)}: {manual.reason}", file=out)
        print(f"    {manual.command}", file=out)
    for waiting in sorted(first.deferred, key=lambda d: (d.service, d.reason)):
        print(f"  WAITING {service_name(waiting.service)}: {waiting.reason}", file=out)
    for failure in sorted(first.failed, key=lambda f: (f.scope, f.subject, f.error)):
        print(f"  FAILED {service_name(failure.subject)}: {failure.error}", file=out)
    sent = sum(len(o.notifications) for o in outcomes)
    suppressed = sum(o.notifications_suppressed for o in outcomes)
    for subject in sorted(n.subject for n in first.notifications):
        print(f"  {'would notify' if dry else 'notification'}: {subject}", file=out)
    if len(outcomes) > 1 and (sent or suppressed):
        print(f"  notifications: {sent} sent, {suppressed} suppressed by the window", file=out)
    elif suppressed:
        print(f"  notifications suppressed (window): {suppressed}", file=out)
    for arn in sorted(first.restored):
        print(f"  {'would restore' if dry else 'restored'}: {arn}", file=out)
    for note in sorted(first.notes):
        print(f"  note: {note}", file=out)
    metrics: dict[str, float] = {}
    for outcome in outcomes:
        for name, value in outcome.metrics.items():
            metrics[name] = metrics.get(name, 0) + value
    if metrics:
        counts = ", ".join(f"{k}={v:g}" for k, v in sorted(metrics.items()))
        print(f"  {'would count' if dry else 'metrics'}: {counts}", file=out)
    if would_call is not None:
        print(
            "  dry run: nothing was written" + (", it would call:" if would_call else ""), file=out
        )
        for call in sorted(would_call, key=lambda c: (c.service, c.operation, c.target)):
            print(f"    {call.describe()}", file=out)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns padded to their widest cell; the last column as it is."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)]
        print("  " + "  ".join([*cells, str(row[-1])]), file=out)


def service_name(arn: str) -> str:
    """``cluster/service`` of a service ARN (the long form); the ARN's tail otherwise."""
    return arn.split(":service/", 1)[-1]
