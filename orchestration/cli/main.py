"""The ``rotor`` command line: explain, discover, replay, status, demo.

``--json`` prints exactly one JSON object on stdout. Errors go to stderr as one line, with exit
status 2 for bad input (a file that is not an event, a malformed secret id, bad settings) and 1
for a run that failed (an AWS error, a redeploy that failed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

from orchestration.aws.clients import AwsClients
from orchestration.errors import (
    AwsCallError,
    ConfigurationError,
    InvalidEventError,
    InvalidReferenceError,
    PermanentAwsError,
    RotorError,
    UsageError,
)
from orchestration.events.classification import Classification, classify, parse_event_text
from orchestration.outcome import EventOutcome
from orchestration.rotation.freshness import plan
from orchestration.rotation.new_value import describe_verdict
from orchestration.runtime import Runtime, fixed_deadline
from orchestration.secrets.references import SecretIdentity
from orchestration.settings import Settings
from orchestration.times import iso

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
CLI_DEADLINE_SECONDS = 600.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except (InvalidEventError, InvalidReferenceError, ConfigurationError, UsageError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except (ProfileNotFound, NoRegionError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except BotoCoreError as exc:
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except (AwsCallError, RotorError) as exc:
        _error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotor",
        description="Keep ECS services in step with Secrets Manager rotations.",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, aws: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(command=func)
        p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
        if aws:
            p.add_argument("--region", help="AWS region (default: from profile/environment)")
            p.add_argument("--profile", help="AWS named profile")
            p.add_argument("--endpoint-url", help="send AWS calls to this endpoint (e.g. moto)")
        return p

    explain = command("explain", _explain, "classify an event offline", aws=False)
    explain.add_argument("event", type=Path, metavar="EVENT.json")
    explain.add_argument("--json", action="store_true", help="print one JSON object")

    discover = command("discover", _discover, "list the ECS services that reference a secret")
    discover.add_argument("secret", metavar="SECRET", help="secret ARN or name")
    discover.add_argument("--json", action="store_true", help="print one JSON object")
    discover.add_argument(
        "--rotated-at",
        type=_timestamp,
        metavar="TIME",
        help="judge freshness as if the new value became current at TIME (ISO 8601; default: now)",
    )
    discover.add_argument(
        "--world",
        nargs="?",
        const="default",
        metavar="WORLD.json",
        help="run against the embedded world instead of AWS",
    )

    replay = command("replay", _replay, "run the Lambda's path for one event")
    replay.add_argument("event", type=Path, metavar="EVENT.json")
    replay.add_argument("--json", action="store_true", help="print one JSON object")
    replay.add_argument(
        "--world",
        nargs="?",
        const="default",
        metavar="WORLD.json",
        help="run against the embedded world instead of AWS",
    )

    status = command("status", _status, "recent rotations and each service's progress")
    status.add_argument("--secret", metavar="SECRET", help="only this secret (ARN or name)")
    status.add_argument("--since", default="24h", metavar="AGE", help="24h (default), 90m, 7d")
    status.add_argument("--json", action="store_true", help="print one JSON object")

    demo = command("demo", _demo, "replay the sample events against the embedded world", aws=False)
    demo.add_argument("--events", type=Path, default=None, help="folder of sample events")
    return parser


# --- explain -----------------------------------------------------------------------------


def _explain(args: argparse.Namespace) -> int:
    event = _classify_file(args.event)
    if args.json:
        _print_json(_explanation(event))
        return EXIT_OK
    print(f"{args.event}: {event.kind.value}")
    rows = [
        ("reason", event.reason),
        ("secret", event.secret or "-"),
        ("account", event.account),
        ("region", event.region),
        ("event", f"{event.event_name or event.detail_type} at {iso(event.event_time)}"),
    ]
    if event.caller:
        rows.append(("caller", event.caller.describe()))
    if event.service_arn:
        rows.append(("service", event.service_arn))
    for key, value in rows:
        print(f"  {key + ':':9} {value}")
    return EXIT_OK


def _explanation(event: Classification) -> dict[str, Any]:
    data = event.to_dict()
    return {
        "kind": data.pop("kind"),
        "secret": data.pop("secret"),
        "account": data.pop("account"),
        "region": data.pop("region"),
        "reason": data.pop("reason"),
        **data,
    }


# --- discover ----------------------------------------------------------------------------


def _discover(args: argparse.Namespace) -> int:
    with _aws(args) as runtime:
        secret = _resolve_cli_secret(runtime, args.secret)
        inventory = runtime.discovery().scan()
        consumers = inventory.consumers_of(secret)
        rotated_at = args.rotated_at or datetime.now(UTC)
        verdicts = plan(consumers, rotated_at, opt_in=runtime.settings.opt_in)
    rows = [describe_verdict(v) for v in verdicts]
    unreadable = [
        {"task_definition": bad.task_definition, "container": bad.container, "error": bad.error}
        for bad in inventory.unreadable
    ]
    # What the scan could not read: the list above may be incomplete (exit 1).
    not_read = [f.describe() for f in inventory.failures]
    exit_code = EXIT_FAILED if not_read else EXIT_OK
    if args.json:
        problems = {
            "could_not_check": not_read,
            "skipped_services": [{"service": s.arn, "reason": s.reason} for s in inventory.skipped],
            "missing": inventory.missing,
        }
        _print_json(
            {
                "secret": secret.arn,
                "rotated_at": iso(rotated_at),
                "consumers": rows,
                "unreadable_references": unreadable,
                **{key: value for key, value in problems.items() if value},  # only when any
            }
        )
        return exit_code
    for problem in not_read:
        print(f"rotor: warning: {problem}", file=sys.stderr)
    for skipped in inventory.skipped:
        print(
            f"rotor: warning: service {skipped.arn} not scanned: {skipped.reason}", file=sys.stderr
        )
    for bad in unreadable:
        print(
            f"rotor: warning: unreadable reference in {bad['task_definition']} container "
            f"{bad['container']}: {bad['error']}",
            file=sys.stderr,
        )
    print(f"{secret.arn}: {len(rows)} consumer(s)")
    print(f"  actions as if it got a new value at {iso(rotated_at)} (--rotated-at to change)")
    _table(
        ["CLUSTER", "SERVICE", "TASK DEFINITION", "ACTION", "REASON"],
        [
            [
                r["cluster"],
                r["service"],
                r["task_definition"].rsplit("/", 1)[-1],
                r["action"],
                r["reason"],
            ]
            for r in rows
        ],
    )
    return exit_code


def _resolve_cli_secret(runtime: Runtime, secret_id: str) -> SecretIdentity:
    """DescribeSecret decides what the user meant (``…:secret:prod/api-signer`` may be a partial
    ARN); an ARN that cannot be described (another account's) is taken as a full ARN."""
    client = runtime.clients.secretsmanager
    try:
        answer = runtime.retry.call("DescribeSecret", client.describe_secret, SecretId=secret_id)
    except PermanentAwsError as exc:
        if secret_id.startswith("arn:"):
            try:
                return SecretIdentity.from_full_arn(secret_id)
            except InvalidReferenceError:
                pass
        if exc.code == "ResourceNotFoundException":
            raise UsageError(f"no secret {secret_id!r}: {exc.message}") from None
        raise
    return SecretIdentity.from_full_arn(answer["ARN"])


# --- replay ------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from orchestration.dispatch import process
    from orchestration.events.routing import route, unrouted_note

    event = _classify_file(args.event)
    # Route as the deployed stack would: the template's own rules (no rule, no function runs).
    routes = route(parse_event_text(args.event.read_bytes()))
    with _aws(args) as runtime:
        if routes:
            outcome = process(event, runtime)
        else:
            outcome = EventOutcome(event, notes=[unrouted_note()])
    if args.json:
        _print_json({**outcome.to_dict(), "routes": [r.to_dict() for r in routes]})
    else:
        _print_outcome(str(args.event), outcome, sys.stdout)
        for r in routes:
            print(f"  route: {r.describe()}")
    return EXIT_OK if outcome.ok else EXIT_FAILED


# --- status ------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from orchestration.tracking.status import parse_since, render_status, status_report

    since = parse_since(args.since)
    with _aws(args) as runtime:
        if not runtime.settings.state_table:
            raise UsageError("rotor status reads the state table: set ROTOR_STATE_TABLE")
        report = status_report(runtime.rollouts, datetime.now(UTC), since, args.secret)
    if args.json:
        _print_json(report)
    else:
        print("\n".join(render_status(report)))
    return EXIT_OK


# --- demo --------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from orchestration.cli.demo import run_demo

    return run_demo(args.events, sys.stdout)


# --- shared ------------------------------------------------------------------------------


class _aws:
    """A runtime against AWS (or ``--endpoint-url``), or inside the embedded world."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._world: Any = None

    def __enter__(self) -> Runtime:
        settings = Settings.from_env()
        world_arg = getattr(self._args, "world", None)
        if world_arg:
            from orchestration.cli.demo import EmbeddedWorld

            path = None if world_arg == "default" else Path(world_arg)
            self._world = EmbeddedWorld(path)
            clients = self._world.__enter__()
        else:
            clients = AwsClients.from_options(
                region=self._args.region,
                profile=self._args.profile,
                endpoint_url=self._args.endpoint_url,
            )
            if not clients.region:
                raise UsageError("no AWS region: pass --region or set AWS_REGION")
        runtime = Runtime.build(clients, settings)
        return runtime.with_deadline(fixed_deadline(CLI_DEADLINE_SECONDS))

    def __exit__(self, *exc: object) -> None:
        if self._world is not None:
            self._world.__exit__(*exc)


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _classify_file(path: Path) -> Classification:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    try:
        return classify(parse_event_text(text))
    except InvalidEventError as exc:
        raise InvalidEventError(f"{path}: {exc}") from None


def _print_outcome(label: str, outcome: EventOutcome, out: TextIO) -> None:
    c = outcome.classification
    secret = outcome.secret or c.secret or "-"
    print(f"{label}", file=out)
    print(f"  {c.kind.value}: {secret}", file=out)
    print(f"  {c.reason}", file=out)
    if outcome.redeployed:
        print("  redeployed:", file=out)
        for arn in outcome.redeployed:
            print(f"    {_service_name(arn)}", file=out)
    if outcome.skipped:
        print("  skipped:", file=out)
        for item in outcome.skipped:
            print(f"    {_service_name(item.service)}: {item.reason}", file=out)
    for manual in outcome.manual:
        print(f"  REDEPLOY BY HAND {_service_name(manual.service)}: {manual.reason}", file=out)
        print(f"    {manual.command}", file=out)
    for failure in outcome.failed:
        print(f"  FAILED {_service_name(failure.subject)}: {failure.error}", file=out)
    for notification in outcome.notifications:
        print(f"  notification: {notification.subject}", file=out)
    if outcome.notifications_suppressed:
        print(f"  notifications suppressed (window): {outcome.notifications_suppressed}", file=out)
    for arn in outcome.restored:
        print(f"  restored: {arn}", file=out)
    for note in outcome.notes:
        print(f"  note: {note}", file=out)


def _service_name(arn: str) -> str:
    return arn.split(":service/", 1)[-1]


def _table(header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("  (no service references this secret)")
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)]
        print("  " + "  ".join([*cells, str(row[-1])]))


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _error(message: str) -> None:
    print(f"rotor: error: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
