"""The ``rotor`` command line: explain, discover, replay, status, reconcile, demo, doctor.

``--output json`` (or ``--json``) prints exactly one JSON object on stdout. Every error is one
line on stderr, with exit status 2 for bad input (a file that is not an event, a secret that
does not exist, bad settings, a malformed option) and 1 for a run that failed (an AWS error,
a redeploy that failed); Ctrl-C ends quietly with 130. Only ``replay`` (without ``--dry-run``)
and ``demo`` (inside its own embedded world) write; ``explain`` and ``discover`` only read.

``replay`` runs the routed function's own path (``orchestration.handle``: the trust check, the
kinds the function acts on, the use case), as the Lambda handlers do; only the runtime differs:
the account of the credentials (or the embedded world's) stands for the function's account.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
    HANDLER_KINDS,
    AwsClients,
    Classification,
    ConfigurationError,
    EventOutcome,
    Handled,
    InvalidEventError,
    InvalidReferenceError,
    PermanentAwsError,
    ReconcileReport,
    RotorError,
    Route,
    Runtime,
    SecretIdentity,
    Settings,
    UsageError,
    classify,
    describe_verdict,
    fixed_deadline,
    handle,
    iso,
    parse_event_text,
    partition_of,
    plan,
    printable,
    reconcile,
)
from orchestration.cli.doctor import add_doctor_options
from orchestration.cli.dry_run import DryRun
from orchestration.cli.progress import Progress
from orchestration.cli.redrive import unwrap
from orchestration.cli.show import outcome_json, print_outcome, print_table

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
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
    except KeyboardInterrupt:
        # Ctrl-C, wherever it lands (parsing, start-up, the run): quiet, the shell's 130.
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    with _logging_to_stderr(verbose=args.verbose):
        return _run(args)


@contextmanager
def _logging_to_stderr(*, verbose: bool) -> Iterator[None]:
    """rotor's logs on stderr while a command runs: warnings (``rotor: warning: ...``), and
    with ``-v`` progress too; the logging set-up is as it was afterwards."""
    root, domain = logging.getLogger(), logging.getLogger("orchestration")
    level = logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormat(verbose=verbose))
    handler.setLevel(level)
    # The domain's records reach the root's handlers, unless something in this process (the
    # Lambda's logging set-up, imported alongside) stopped them there: then they get it too.
    attached = [root] if domain.propagate else [root, domain]
    saved = root.level
    for logger in attached:
        logger.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        for logger in attached:
            logger.removeHandler(handler)
        root.setLevel(saved)


def _run(args: argparse.Namespace) -> int:
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
    except (KeyboardInterrupt, BrokenPipeError):
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
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_: str,
        aws: bool = True,
        world: bool = True,
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
        if aws and world:
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
        else:
            p.set_defaults(world=False, world_file=None)
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

    # No --world: each run starts its embedded world afresh, with no rotations to report.
    status = command("status", _status, "recent rotations and each service's progress", world=False)
    status.add_argument("--secret", metavar="SECRET", help="only this secret (ARN or name)")
    status.add_argument("--since", default="24h", metavar="AGE", help="24h (default), 90m, 7d")
    output(status)

    heal = command(
        "reconcile",
        _reconcile,
        "scan the account and redeploy the consumers still holding an old value "
        "(writes, unless --dry-run)",
        world=False,
    )
    heal.add_argument("--secret", metavar="SECRET", help="only this secret (ARN or name)")
    heal.add_argument(
        "--dry-run",
        action="store_true",
        help="decide and print, but queue, redeploy and write nothing",
    )
    output(heal)

    demo = command("demo", _demo, "replay the sample events against the embedded world", aws=False)
    demo.add_argument("--events", type=Path, default=None, help="folder of sample events")

    doctor = command(
        "doctor", _doctor, "check the account's prerequisites for rotor (reads only)", world=False
    )
    add_doctor_options(doctor)
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
        secret, exists = _identify(runtime, args.secret)
        inventory = runtime.discovery().scan()
        consumers = inventory.consumers_of(secret)
        rotated_at = args.rotated_at or datetime.now(UTC)
        verdicts = plan(consumers, rotated_at, opt_in=runtime.settings.opt_in)
    rows = sorted(
        (describe_verdict(v) for v in verdicts), key=lambda r: (r["cluster"], r["service"])
    )
    unreadable = sorted(
        (
            {"task_definition": bad.task_definition, "container": bad.container, "error": bad.error}
            for bad in inventory.unreadable
        ),
        key=lambda bad: (bad["task_definition"], bad["container"]),
    )
    # What the scan could not read: the list above may be incomplete (exit 1). The scan has
    # said so on stderr (a warning each), as it does for services and references it skipped.
    not_read = sorted(f.describe() for f in inventory.failures)
    exit_code = EXIT_FAILED if not_read else EXIT_OK
    if args.output == "json":
        problems: dict[str, Any] = {
            "could_not_check": not_read,
            "skipped_services": sorted(
                ({"service": s.arn, "reason": s.reason} for s in inventory.skipped),
                key=lambda s: s["service"],
            ),
            "missing": sorted(inventory.missing),
        }
        _print_json(
            {
                "secret": secret.arn,
                "rotated_at": iso(rotated_at),
                "consumers": rows,
                "unreadable_references": unreadable,
                **({} if exists else {"exists": False}),  # a secret deleted (or never made)
                **{key: value for key, value in problems.items() if value},  # only when any
            }
        )
        return exit_code
    print(f"{secret.arn}: {len(rows)} consumer(s)" + ("" if exists else " (secret deleted)"))
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


def _identify(runtime: Runtime, secret_id: str) -> tuple[SecretIdentity, bool]:
    """The secret a person named, and whether it exists. A full ARN names a secret by itself:
    one that no longer exists is warned about and its consumers are still listed (who still
    references a deleted secret is what an operator needs to know). A name or partial ARN
    that does not exist is bad input."""
    lookup = runtime.secret_lookup()
    try:
        return lookup.identify(secret_id), True
    except InvalidReferenceError:
        try:
            identity = SecretIdentity.from_full_arn(secret_id)
        except InvalidReferenceError:
            identity = None
        if identity is None or not identity.suffix:
            raise
        facts = lookup.describe(
            secret_id, account=identity.account, region=identity.region, written_by_aws=True
        )
        if facts.described or facts.why_not_described != "ResourceNotFoundException":
            raise
    _warn(
        f"no secret {secret_id} (it does not exist, or no longer): "
        "listing the services that still reference it"
    )
    return identity, False


# --- replay ------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from orchestration import route, unrouted_note

    raw, event = _read_event(args.event)
    # Route as the deployed stack would: the template's own rules (no rule, no function runs).
    routes = route(raw)
    dry_run = DryRun() if args.dry_run else None
    results: list[tuple[Route, Handled]] = []
    aws = _aws(args, dry_run, replay=True)
    if routes:  # no rule, no function: nothing to connect to
        with aws as runtime:
            for routed in _one_per_function(routes):
                # The routed function's own path: the trust check, its kinds, the use case.
                handled = handle(
                    raw,
                    HANDLER_KINDS.get(routed.handler, frozenset()),
                    lambda: runtime,
                    aws.own_account,
                )
                results.append((routed, handled))
    outcomes: list[tuple[str, EventOutcome]] = [
        (h.status, h.as_outcome() or EventOutcome(event)) for _, h in results
    ] or [("unrouted", EventOutcome(event, notes=[unrouted_note()]))]
    status, outcome = outcomes[0]
    would_call = (
        sorted(dry_run.calls, key=lambda c: (c.service, c.operation, c.target)) if dry_run else None
    )
    if args.output == "json":
        data: dict[str, Any] = {"status": status, **outcome_json(outcome, dry=dry_run is not None)}
        data["routes"] = [r.to_dict() for r in routes]
        if would_call is not None:
            data["dry_run"] = True
            data["would_call"] = [call.to_dict() for call in would_call]
        _print_json(data)
    else:
        for number, (_, shown) in enumerate(outcomes):
            print_outcome(
                _label(args.event),
                [shown],
                sys.stdout,
                routes=routes if number == 0 else (),
                would_call=would_call if number == len(outcomes) - 1 else None,
                dry=dry_run is not None,
            )
    return EXIT_OK if all(o.ok for _, o in outcomes) else EXIT_FAILED


def _one_per_function(routes: Sequence[Route]) -> list[Route]:
    """Each function an event reaches runs once, however many of its rules match."""
    seen: dict[str, Route] = {}
    for routed in routes:
        seen.setdefault(routed.handler, routed)
    return list(seen.values())


# --- status ------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from orchestration import parse_since, render_status, status_report

    now = datetime.now(UTC)
    try:
        since = parse_since(args.since)
        _ = now - since  # raises OverflowError for a time before year 1
    except OverflowError:
        raise UsageError(f"--since: {args.since!r} reaches back before the year 1") from None
    with _aws(args) as runtime:
        if not runtime.settings.state_table:
            raise UsageError("rotor status reads the state table: set ROTOR_STATE_TABLE")
        report = status_report(runtime.rollouts, now, since, args.secret)
    if args.output == "json":
        _print_json(report)
    else:
        print("\n".join(render_status(report)))
    return EXIT_OK


# --- reconcile ------------------------------------------------------------------------


def _reconcile(args: argparse.Namespace) -> int:
    if args.secret is not None and not args.secret.strip():
        raise UsageError("empty secret id: give a secret name or ARN")
    # The use case writes nothing in a dry run; the client guard makes sure of it.
    dry_run = DryRun() if args.dry_run else None
    with _aws(args, dry_run) as runtime:
        report = reconcile(runtime, secret=args.secret, dry_run=args.dry_run)
    if args.output == "json":
        _print_json(report.to_dict())
    else:
        _print_reconcile(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_reconcile(report: ReconcileReport) -> None:
    data = report.to_dict()
    consumers = [c for s in data["secrets"] for c in s["consumers"]]
    if report.dry_run:
        healing = ("would queue", "would redeploy")  # not "would queue again": counted before
        said = f"{sum(1 for c in consumers if c['action'] in healing)} would be healed"
    else:
        said = f"{data['healed']} healed"
    print(
        f"reconcile{' (dry run)' if report.dry_run else ''}: {data['services_scanned']} "
        f"service(s) scanned, {len(data['secrets'])} secret(s) referenced, "
        f"{len(consumers)} consumer(s), {said}"
    )
    print(f"  index: {data['index']}")
    for secret in data["secrets"]:
        print(secret["secret"])
        if secret.get("problem"):
            print(f"  left alone: {secret['problem']}")
            continue
        if not secret["consumers"]:
            print("  (no service references this secret)")
            continue
        print(
            f"  version {secret['version']}, created {secret['created_at'] or '?'}, "
            f"current since {secret['became_current_at']} ({secret['evidence']}: "
            f"{secret['evidence_detail']})"
        )
        print_table(
            ["CLUSTER", "SERVICE", "DEPLOYED", "DECIDED BY", "ACTION", "REASON"],
            [
                [
                    c["cluster"].rsplit("/", 1)[-1],
                    c["service"].rsplit("/", 1)[-1],
                    c["deployed_at"] or "?",
                    c["decided_by"] or "-",
                    c["action"],
                    c["reason"],
                ]
                for c in secret["consumers"]
            ],
            sys.stdout,
        )
    for failure in data["failed"]:
        print("failed: " + ", ".join(f"{k}={v}" for k, v in failure.items()))
    for note in data["notes"]:
        print(f"note: {note}")
    counts = data["would_metrics" if report.dry_run else "metrics"]
    if counts:
        print(
            ("would count: " if report.dry_run else "counted: ")
            + ", ".join(f"{name} {value:g}" for name, value in counts.items())
        )


# --- demo --------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from orchestration.cli.demo import run_demo

    return run_demo(args.events, sys.stdout)


# --- doctor ------------------------------------------------------------------------------


def aws_clients(args: argparse.Namespace) -> AwsClients:
    """Clients for ``--region``/``--profile``/``--endpoint-url``, with the command line's
    timeouts. The region is chosen as the AWS CLI and SDKs choose it: ``--region``, then
    ``AWS_REGION``, then ``AWS_DEFAULT_REGION`` and the profile's (boto3 reads those two)."""
    clients = AwsClients.from_options(
        region=args.region or os.environ.get("AWS_REGION", "").strip() or None,
        profile=args.profile,
        endpoint_url=args.endpoint_url,
    )
    clients.config = BOTOCORE_CONFIG.merge(CLI_TIMEOUTS)
    if not clients.region:
        raise UsageError(
            "no AWS region: pass --region, set AWS_REGION, or give the profile a region"
        )
    _check_region(clients.region, known_only=not args.endpoint_url)
    return clients


def _doctor(args: argparse.Namespace) -> int:
    from orchestration.cli.doctor import run_doctor

    return run_doctor(args, sys.stdout)


# --- shared ------------------------------------------------------------------------------


class _aws:
    """A runtime against AWS (or ``--endpoint-url``), or inside the embedded world; with
    ``dry_run``, one whose writes are answered and recorded instead of sent."""

    def __init__(
        self, args: argparse.Namespace, dry_run: DryRun | None = None, *, replay: bool = False
    ) -> None:
        """``replay``: the run publishes and queues, so the topic and queue of the settings
        must exist."""
        self._args = args
        self._dry_run = dry_run
        self._replay = replay
        self._world: Any = None
        self._progress: Progress | None = None
        self._runtime: Runtime | None = None
        self._own_account: str | None = None

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
            self._own_account = self._world.account
            where = "the embedded world"
        else:
            clients = aws_clients(args)
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
        _check_settings(runtime, replay=self._replay)
        self._runtime = runtime
        return runtime

    def own_account(self) -> str | None:
        """The account a function would run in: the embedded world's, or that of the
        credentials (``GetCallerIdentity``, which needs no permission), asked once."""
        if self._own_account is None and self._runtime is not None:
            sts = self._runtime.clients.sts
            answer = self._runtime.retry.call("GetCallerIdentity", sts.get_caller_identity)
            self._own_account = answer.get("Account")
        return self._own_account

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.done()
        if self._world is not None:
            self._world.__exit__(*exc)
            self._world = None


def _check_settings(runtime: Runtime, *, replay: bool = False) -> None:
    """Name a state table from the settings that does not exist, before any work, and for
    ``replay`` the topic and the redeploy queue. A resource rotor may not describe is left to
    the run, which says what it can or cannot do. (A cluster of ROTOR_CLUSTERS that does not
    exist is named by the scan, which goes on with the others: the run fails, exit 1.)"""
    settings = runtime.settings
    clients = runtime.clients
    if replay and settings.topic_arn:
        _must_exist(
            runtime,
            "ROTOR_TOPIC_ARN",
            f"no SNS topic {settings.topic_arn!r}",
            {"NotFound", "NotFoundException"},
            "GetTopicAttributes",
            lambda: clients.sns.get_topic_attributes(TopicArn=settings.topic_arn or ""),
        )
    if replay and settings.redeploy_queue_url:
        _must_exist(
            runtime,
            "ROTOR_REDEPLOY_QUEUE_URL",
            f"no SQS queue {settings.redeploy_queue_url!r}",
            {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"},
            "GetQueueAttributes",
            lambda: clients.sqs.get_queue_attributes(
                QueueUrl=settings.redeploy_queue_url or "", AttributeNames=["QueueArn"]
            ),
        )
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


def _must_exist(
    runtime: Runtime,
    setting: str,
    problem: str,
    codes: set[str],
    operation: str,
    call: Callable[[], object],
) -> None:
    try:
        runtime.retry.call(operation, call)
    except PermanentAwsError as exc:
        if exc.code in codes:
            raise ConfigurationError(f"{setting}: {problem} in {runtime.clients.region}") from None


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


#: Times rotor can reason about: from the epoch to a year before datetime's end (a rotation
#: time is compared and stepped by seconds and days).
_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        in_range = _EARLIEST <= moment < _LATEST
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if not in_range:
        raise argparse.ArgumentTypeError(
            f"out of range: {text!r} (from {iso(_EARLIEST)} to before {iso(_LATEST)})"
        )
    return moment


def _label(source: str) -> str:
    return "(stdin)" if source == "-" else source


def _read_event(source: str) -> tuple[Any, Classification]:
    """The event in file ``source``, or on standard input for ``-``: as parsed, and classified.
    A dead-letter queue's message or an on-failure destination's record is unwrapped (and
    stderr says so): the event inside is what the function failed on."""
    try:
        text = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"{source}: {exc.strerror or exc}") from None
    try:
        raw, taken = unwrap(parse_event_text(text))
        for layer in taken:
            _note(f"{_label(source)}: {layer}: taking the event inside")
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


def _warn(message: str) -> None:
    print(f"rotor: warning: {' '.join(message.split())}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"rotor: note: {' '.join(message.split())}", file=sys.stderr)


class _LogFormat(logging.Formatter):
    """rotor's domain logs on stderr: ``rotor: warning: ...`` like the command's own words;
    with ``-v``, the level and the module too."""

    def __init__(self, *, verbose: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s" if verbose else None)
        self._verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self._verbose:
            return super().format(record)
        return f"rotor: {record.levelname.lower()}: {record.getMessage()}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass


if __name__ == "__main__":
    raise SystemExit(main())
