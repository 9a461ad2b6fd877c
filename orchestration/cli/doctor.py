"""``rotor doctor``: read the account and say which of rotor's prerequisites hold.

The checks are ``orchestration.check_prerequisites``; this module parses the options, builds
the clients as every other command does, and prints the report: a table, or with
``--output json`` one JSON object. Exit status 0 when every prerequisite that applies holds, 1
when one is missing (or could not be read), 2 for bad input. It reads only.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from typing import Any, TextIO

from orchestration import (
    DEFAULT_STACK,
    CheckStatus,
    DoctorReport,
    DoctorScope,
    RetryPolicy,
    Settings,
    check_prerequisites,
    fixed_deadline,
)

#: CloudFormation's stack names (or a stack id, an ARN).
_STACK = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,127}|arn:aws[a-z-]*:cloudformation:[^\s]+)$")
_WIDTH = 100


def add_doctor_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``rotor doctor`` beside the command line's AWS options."""
    parser.add_argument(
        "--stack",
        type=_stack_name,
        metavar="NAME",
        help=f"the rotor stack (default: {DEFAULT_STACK}, unless only --forwarder-stack is given)",
    )
    parser.add_argument(
        "--forwarder-stack",
        type=_stack_name,
        metavar="NAME",
        help="check a forwarder stack (infra/forwarder.yaml) in this account, which owns secrets",
    )


def run_doctor(args: argparse.Namespace, out: TextIO) -> int:
    from orchestration.cli import main as cli

    settings = Settings.from_env()
    clients = cli.aws_clients(args)
    stack = args.stack
    if stack is None and args.forwarder_stack is None:
        stack = DEFAULT_STACK
    scope = DoctorScope(
        region=clients.region,
        stack=stack,
        forwarder_stack=args.forwarder_stack,
        state_table=settings.state_table,
        redeploy_queue_url=settings.redeploy_queue_url,
        topic_arn=settings.topic_arn,
        trusted_accounts=tuple(settings.trusted_accounts),
    )
    # A person waits: a few attempts per read, within the command line's deadline.
    retry = RetryPolicy(max_attempts=4).with_deadline(fixed_deadline(cli.CLI_DEADLINE_SECONDS))
    report = check_prerequisites(clients, scope, retry)
    if args.output == "json":
        cli._print_json(report.to_dict())
    else:
        print_report(report, out)
    return cli.EXIT_OK if report.ok else cli.EXIT_FAILED


_LABELS = {
    CheckStatus.OK: "ok",
    CheckStatus.MISSING: "MISSING",
    CheckStatus.UNKNOWN: "UNKNOWN",
    CheckStatus.SKIPPED: "skipped",
}


def print_report(report: DoctorReport, out: TextIO = sys.stdout) -> None:
    scope = report.scope
    what = [f"stack {scope.stack}"] if scope.stack else []
    if scope.forwarder_stack:
        what.append(f"forwarder stack {scope.forwarder_stack}")
    print(f"rotor's prerequisites in {scope.region} ({', '.join(what)}):", file=out)
    for check in report.checks:
        print(f"  {_LABELS[check.status]:8} {check.name}", file=out)
        detail = textwrap.fill(
            check.detail,
            _WIDTH,
            initial_indent=" " * 11,
            subsequent_indent=" " * 11,
            break_long_words=False,
            break_on_hyphens=False,
        )
        print(detail, file=out)
        if check.fix and check.status is not CheckStatus.OK:
            print(f"           fix: {check.fix}", file=out)
    print(_summary(report), file=out)


def _summary(report: DoctorReport) -> str:
    if report.ok:
        return "every prerequisite holds"
    counts: dict[str, Any] = {
        "missing": sum(c.status is CheckStatus.MISSING for c in report.checks),
        "could not be checked": sum(c.status is CheckStatus.UNKNOWN for c in report.checks),
    }
    parts = [f"{n} {what}" for what, n in counts.items() if n]
    return f"{', '.join(parts)}: see each fix above"


def _stack_name(text: str) -> str:
    if not _STACK.match(text):
        raise argparse.ArgumentTypeError(
            f"not a CloudFormation stack name: {text!r} (letters, digits and hyphens, "
            "starting with a letter)"
        )
    return text
