"""How the command line shows what processing an event did: the one printer of an outcome
(``rotor replay`` and every step of ``rotor demo``) and of tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from orchestration import (
    EventOutcome,
    Route,
)
from orchestration.cli.dry_run import WouldCall


def print_outcome(
    heading: str,
    outcomes: Sequence[EventOutcome],
    out: TextIO,
    *,
    routes: Sequence[Route] = (),
    would_call: Sequence[WouldCall] | None = None,
) -> None:
    """``outcomes``: one event, or the same event delivered several times (counted together).
    ``routes``: the stack's rules that send it to a function. ``would_call``: a dry run's
    writes, which were not sent."""
    first = outcomes[0]
    c = first.classification
    dry = would_call is not None
    print(heading, file=out)
    print(f"  {c.kind.value}: {first.secret or c.secret or '-'}", file=out)
    print(f"  {c.reason}", file=out)
    for r in routes:
        print(f"  route: {r.describe()}", file=out)
    if first.redeployed:
        print("  would redeploy:" if dry else "  redeployed:", file=out)
        for arn in first.redeployed:
            print(f"    {service_name(arn)}", file=out)
    if first.skipped:
        print("  skipped:", file=out)
        for item in first.skipped:
            print(f"    {service_name(item.service)}: {item.reason}", file=out)
    for manual in first.manual:
        print(f"  REDEPLOY BY HAND {service_name(manual.service)}: {manual.reason}", file=out)
        print(f"    {manual.command}", file=out)
    for failure in first.failed:
        print(f"  FAILED {service_name(failure.subject)}: {failure.error}", file=out)
    sent = sum(len(o.notifications) for o in outcomes)
    suppressed = sum(o.notifications_suppressed for o in outcomes)
    for notification in first.notifications:
        print(f"  {'would notify' if dry else 'notification'}: {notification.subject}", file=out)
    if len(outcomes) > 1 and (sent or suppressed):
        print(f"  notifications: {sent} sent, {suppressed} suppressed by the window", file=out)
    elif suppressed:
        print(f"  notifications suppressed (window): {suppressed}", file=out)
    for arn in first.restored:
        print(f"  {'would restore' if dry else 'restored'}: {arn}", file=out)
    for note in first.notes:
        print(f"  note: {note}", file=out)
    metrics: dict[str, float] = {}
    for outcome in outcomes:
        for name, value in outcome.metrics.items():
            metrics[name] = metrics.get(name, 0) + value
    if metrics:
        print("  metrics: " + ", ".join(f"{k}={v:g}" for k, v in sorted(metrics.items())), file=out)
    if would_call is not None:
        print(
            "  dry run: nothing was written" + (", it would call:" if would_call else ""), file=out
        )
        for call in would_call:
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
