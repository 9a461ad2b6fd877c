"""The ``rotor`` command line: explain, discover, replay, status, demo.

``--output json`` (or ``--json``) prints exactly one JSON object on stdout. Every error is one
line on stderr, with exit status 2 for bad input (a file that is not an event, a secret that
does not exist, bad settings, a malformed option) and 1 for a run that failed (an AWS error,
a redeploy that failed). Only ``replay`` (without ``--dry-run``) and ``demo`` (inside its own
embedded world) write; ``explain`` and ``discover`` only read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    InvalidRegionError,
    NoRegionError,
    ParamValidationError,
    ProfileNotFound,
)

from orchestration import (
    BOTOCORE_CONFIG,
    AwsClients,
    Classification,
    ConfigurationError,
    EventOutcome,
    InvalidEventError,
    InvalidReferenceError,
    PermanentAwsError,
    RotorError,
    Runtime,
    Settings,
    UsageError,
    classify,
    describe_verdict,
    fixed_deadline,
    iso,
    parse_event_text,
    partition_of,
    plan,
    printable,
)
from orchestration.cli.doctor import add_doctor_options
from orchestration.cli.dry_run import DryRun
from orchestration.cli.progress import Progress
from orchestration.cli.show import print_outcome, print_table

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BROKEN_PIPE = 0, 1, 2, 141
CLI_DEADLINE_SECONDS = 600.0
#: The command line talks to AWS from a person's machine: a host that does not answer is
#: given up on quickly (the retry policy then tries again), rather than after Lambda's timeouts.
CLI_TIMEOUTS = Config(connect_timeout=2, read_timeout=15)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of rotor."""

    def error(self, message: str) -> NoReturn:
        _error(f"{message} (see {self.prog} --help)")
        raise SystemExit(EXIT_BAD_INPUT)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("rotor")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout without install
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``rotor demo | head``): stop quietly, as ``cat`` would.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
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
    except (ProfileNotFound, NoRegionError, InvalidRegionError, ParamValidationError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except BotoCoreError as exc:
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except RotorError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug: still one line, the traceback with -v
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        _error(f"unexpected {type(exc).__name__}: {exc} (rerun with -v for the traceback)")
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rotor",
        description="Keep ECS services in step with Secrets Manager rotations.",
    )
    parser.add_argument("--version", action="version", version=f"rotor {version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, aws: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(command=func)
        p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
        if aws:
            p.add_argument("--region", type=_region, help="AWS region (default: profile/env)")
            p.add_argument("--profile", help="AWS named profile")
            p.add_argument(
                "--endpoint-url",
                type=_endpoint_url,
                metavar="URL",
                help="send AWS calls to this endpoint (e.g. a moto server)",
            )
            p.add_argument(
                "--world",
                action="store_true",
                help="run against the embedded world (in-process moto) instead of AWS",
            )
            p.add_argument(
                "--world-file",
                type=Path,
                metavar="WORLD.json",
                help="the embedded world's file (implies --world; default: the sample world)",
            )
        return p

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--output",
            choices=("table", "json"),
            default="table",
            help="table (default) or json: exactly one JSON object on stdout",
        )
        p.add_argument(
            "--json", dest="output", action="store_const", const="json", help="--output json"
        )

    explain = command("explain", _explain, "classify an event offline (reads nothing)", aws=False)
    explain.add_argument("event", metavar="EVENT.json", help="the event file, or - for stdin")
    output(explain)

    discover = command("discover", _discover, "list the ECS services that reference a secret")
    discover.add_argument("secret", metavar="SECRET", help="secret ARN or name")
    output(discover)
    discover.add_argument(
        "--rotated-at",
        type=_timestamp,
        metavar="TIME",
        help="judge freshness as if the new value became current at TIME (ISO 8601; default: now)",
    )

    replay = command(
        "replay", _replay, "run the Lambda's path for one event (writes, unless --dry-run)"
    )
    replay.add_argument("event", metavar="EVENT.json", help="the event file, or - for stdin")
    output(replay)
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="plan and print, but make no UpdateService, Publish, RestoreSecret or state write",
    )

    status = command("status", _status, "recent rotations and each service's progress")
    status.add_argument("--secret", metavar="SECRET", help="only this secret (ARN or name)")
    status.add_argument("--since", default="24h", metavar="AGE", help="24h (default), 90m, 7d")
    output(status)

    demo = command("demo", _demo, "replay the sample events against the embedded world", aws=False)
    demo.add_argument("--events", type=Path, default=None, help="folder of sample events")

    doctor = command(
        "doctor", _doctor, "check the account's prerequisites for rotor (reads only)", aws=False
    )
    add_doctor_options(doctor, region=_region, endpoint_url=_endpoint_url)
    output(doctor)
    return parser


# --- explain -----------------------------------------------------------------------------


def _explain(args: argparse.Namespace) -> int:
    _, event = _read_event(args.event)
    if args.output == "json":
        _print_json(_explanation(event))
        return EXIT_OK
    print(f"{_label(args.event)}: {event.kind.value}")
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
    for key, value in rows:  # what a caller wrote (a user agent) is shown, never run
        print(f"  {key + ':':9} {printable(value)}")
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
    if not args.secret.strip():
        raise UsageError("empty secret id: give a secret name or ARN")
    with _aws(args) as runtime:
        secret = runtime.secret_lookup().identify(args.secret)
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
    if args.output == "json":
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
    if not rows:
        print("  (no service references this secret)")
        return exit_code
    print_table(
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
        sys.stdout,
    )
    return exit_code


# --- replay ------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from orchestration import process, route, unrouted_note

    raw, event = _read_event(args.event)
    # Route as the deployed stack would: the template's own rules (no rule, no function runs).
    routes = route(raw)
    dry_run = DryRun() if args.dry_run else None
    with _aws(args, dry_run) as runtime:
        if routes:
            outcome = process(event, runtime)
        else:
            outcome = EventOutcome(event, notes=[unrouted_note()])
    would_call = dry_run.calls if dry_run else None
    if args.output == "json":
        data = {**outcome.to_dict(), "routes": [r.to_dict() for r in routes]}
        if would_call is not None:
            data["dry_run"] = True
            data["would_call"] = [call.to_dict() for call in would_call]
        _print_json(data)
    else:
        print_outcome(
            _label(args.event), [outcome], sys.stdout, routes=routes, would_call=would_call
        )
    return EXIT_OK if outcome.ok else EXIT_FAILED


# --- status ------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from orchestration import parse_since, render_status, status_report

    since = parse_since(args.since)
    with _aws(args) as runtime:
        if not runtime.settings.state_table:
            raise UsageError("rotor status reads the state table: set ROTOR_STATE_TABLE")
        report = status_report(runtime.rollouts, datetime.now(UTC), since, args.secret)
    if args.output == "json":
        _print_json(report)
    else:
        print("\n".join(render_status(report)))
    return EXIT_OK


# --- demo --------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from orchestration.cli.demo import run_demo

    return run_demo(args.events, sys.stdout)


# --- doctor ------------------------------------------------------------------------------


def _doctor(args: argparse.Namespace) -> int:
    from orchestration.cli.doctor import run_doctor

    return run_doctor(args, sys.stdout)


# --- shared ------------------------------------------------------------------------------


class _aws:
    """A runtime against AWS (or ``--endpoint-url``), or inside the embedded world; with
    ``dry_run``, one whose writes are answered and recorded instead of sent."""

    def __init__(self, args: argparse.Namespace, dry_run: DryRun | None = None) -> None:
        self._args = args
        self._dry_run = dry_run
        self._world: Any = None
        self._progress: Progress | None = None

    def __enter__(self) -> Runtime:
        try:
            return self._enter()
        except BaseException:
            self.__exit__()  # a world already started must stop: __exit__ is not called for us
            raise

    def _enter(self) -> Runtime:
        args = self._args
        settings = Settings.from_env()
        if args.world or args.world_file:
            given = [
                flag
                for flag, value in (
                    ("--region", args.region),
                    ("--profile", args.profile),
                    ("--endpoint-url", args.endpoint_url),
                )
                if value
            ]
            if given:
                raise UsageError(f"{', '.join(given)} cannot be used with the embedded world")
            from orchestration.cli.world import EmbeddedWorld

            self._world = EmbeddedWorld(args.world_file)
            clients = self._world.__enter__()
            where = "the embedded world"
        else:
            clients = AwsClients.from_options(
                region=args.region, profile=args.profile, endpoint_url=args.endpoint_url
            )
            clients.config = BOTOCORE_CONFIG.merge(CLI_TIMEOUTS)
            if not clients.region:
                raise UsageError("no AWS region: pass --region or set AWS_REGION")
            _check_region(clients.region, known_only=not args.endpoint_url)
            where = f"AWS in {clients.region}" + (
                f" at {args.endpoint_url}" if args.endpoint_url else ""
            )
            if args.profile:
                where += f" (profile {args.profile})"
        if self._dry_run is not None:
            self._dry_run.attach(clients)
        self._progress = Progress.on_terminal(sys.stderr, where)
        if self._progress is not None:
            self._progress.attach(clients)
        runtime = Runtime.build(clients, settings)
        runtime = runtime.with_deadline(fixed_deadline(CLI_DEADLINE_SECONDS))
        _check_settings(runtime)
        return runtime

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.done()
        if self._world is not None:
            self._world.__exit__(*exc)
            self._world = None


def _check_settings(runtime: Runtime) -> None:
    """Name a state table from the settings that does not exist, before any work. (A cluster
    of ROTOR_CLUSTERS that does not exist is named by the scan, which goes on with the others.)"""
    settings = runtime.settings
    if settings.state_table:
        dynamodb = runtime.clients.dynamodb
        try:
            runtime.retry.call(
                "DescribeTable", dynamodb.describe_table, TableName=settings.state_table
            )
        except PermanentAwsError as exc:
            if exc.code == "ResourceNotFoundException":
                raise ConfigurationError(
                    f"ROTOR_STATE_TABLE: no DynamoDB table {settings.state_table!r} "
                    f"in {runtime.clients.region}"
                ) from None
            # Not allowed to describe it: the run itself will say what it can or cannot do.


def _region(text: str) -> str:
    """A region of some partition botocore knows (aws, aws-cn, aws-us-gov, aws-eusc, …)."""
    if partition_of(text) is None:
        raise argparse.ArgumentTypeError(f"not an AWS region: {text!r} (e.g. eu-west-1)")
    return text


def _check_region(region: str, *, known_only: bool) -> None:
    """A region of the wrong form, or (without ``--endpoint-url``) one botocore does not know,
    is bad input rather than a connection that fails."""
    _region_or_usage_error(region)
    if not known_only:
        return
    import botocore.session

    session = botocore.session.get_session()
    known = {
        r
        for partition in session.get_available_partitions()
        for r in session.get_available_regions("ecs", partition)
    }
    if known and region not in known:
        raise UsageError(
            f"unknown AWS region {region!r} (if it is new, upgrade boto3, or pass --endpoint-url)"
        )


def _region_or_usage_error(region: str) -> None:
    try:
        _region(region)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None


def _endpoint_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"not an http(s) URL: {text!r} (e.g. http://127.0.0.1:5000)"
        )
    return text


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _label(source: str) -> str:
    return "(stdin)" if source == "-" else source


def _read_event(source: str) -> tuple[Any, Classification]:
    """The event in file ``source``, or on standard input for ``-``: as parsed, and classified."""
    try:
        text = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"{source}: {exc.strerror or exc}") from None
    try:
        raw = parse_event_text(text)
        return raw, classify(raw)
    except InvalidEventError as exc:
        raise InvalidEventError(f"{_label(source)}: {exc}") from None


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _error(message: str) -> None:
    print(f"rotor: error: {' '.join(message.split())}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass


if __name__ == "__main__":
    raise SystemExit(main())
