"""``rotor replay`` runs what the Lambda runs: the routed function's handler path (the trust
check, the kinds it acts on, the use case), each in a fresh embedded world; only the runtime
differs. Also: re-driving a dead-letter record, dry runs that say "would", and stable output.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from handlers.entry import make_handler
from orchestration import HANDLER_KINDS, Runtime, Settings, route
from orchestration.cli.main import main
from orchestration.cli.world import EmbeddedWorld
from orchestration.events.routing import deployed_rules
from tests.conftest import ACCOUNT, EVENTS, SAMPLE_EVENTS, load_event
from tests.integration.workers import FakeLambdaContext

pytestmark = pytest.mark.integration

UNTRUSTED = "999999999999"
#: What a function did, as the handler returns it and as ``replay --json`` prints it.
COMPARED = (
    "kind",
    "secret",
    "redeployed",
    "skipped",
    "failed",
    "deferred",
    "queued",
    "manual",
    "missing",
    "restored",
    "notifications_suppressed",
    "metrics",
)


def _normal(value: Any) -> Any:
    """Lists in one order (the handler keeps the order of the work; replay sorts)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_normal(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _by_the_handler(event: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> list[dict]:
    """What each function the event is routed to returns, in a fresh embedded world."""
    results: list[dict] = []
    if not route(event):
        return results
    with EmbeddedWorld() as clients:
        runtime = Runtime.build(clients, Settings.from_env())
        for routed in route(event):
            handler = make_handler(HANDLER_KINDS[routed.handler], lambda: runtime)
            results.append(
                handler(copy.deepcopy(event), FakeLambdaContext(remaining_millis=300_000))
            )
    capsys.readouterr()  # the handler's EMF and logs
    return results


def _by_replay(path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, Any]:
    status = main(["replay", str(path), "--world", "--json", *flags])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    data: dict[str, Any] = json.loads(captured.out)
    return data


def _assert_same(handled: list[dict[str, Any]], replayed: dict[str, Any]) -> None:
    if not handled:  # no rule routes it: the stack runs no function, and replay says so
        assert replayed["status"] == "unrouted"
        assert replayed["routes"] == []
        return
    (by_handler,) = handled  # every sample reaches at most one function
    assert replayed["status"] == by_handler["status"]
    assert len(replayed["routes"]) == 1
    if by_handler["status"] == "processed":
        for key in COMPARED:
            assert _normal(replayed[key]) == _normal(by_handler[key]), key
    else:
        assert replayed["kind"] == by_handler["kind"]
        assert replayed["notes"] == [f"{by_handler['status']}: {by_handler['reason']}"]


@pytest.mark.parametrize("path", SAMPLE_EVENTS, ids=lambda p: p.name)
def test_replay_gives_the_handlers_outcome_for_every_sample(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handled = _by_the_handler(json.loads(path.read_text()), capsys)

    _assert_same(handled, _by_replay(path, capsys))


@pytest.fixture
def untrusted(tmp_path: Path) -> Path:
    event = load_event("rotation-succeeded.json")
    event["account"] = UNTRUSTED
    path = tmp_path / "untrusted.json"
    path.write_text(json.dumps(event))
    return path


def test_an_untrusted_accounts_event_is_rejected_by_both(
    untrusted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handled = _by_the_handler(json.loads(untrusted.read_text()), capsys)
    replayed = _by_replay(untrusted, capsys)

    _assert_same(handled, replayed)
    assert replayed["status"] == "rejected"
    assert replayed["redeployed"] == []
    assert replayed["metrics"] == {"UntrustedEvents": 1}


def test_a_dry_run_of_an_untrusted_event_would_redeploy_nothing(
    untrusted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["replay", str(untrusted), "--world", "--dry-run"])

    out = capsys.readouterr().out
    assert status == 0
    assert "would redeploy" not in out and "UpdateService" not in out
    assert f"rejected: event from account {UNTRUSTED}, not one of {ACCOUNT}" in out
    assert "would count: UntrustedEvents=1" in out


def test_a_trusted_account_is_processed_by_both(
    untrusted: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROTOR_TRUSTED_ACCOUNTS", UNTRUSTED)
    handled = _by_the_handler(json.loads(untrusted.read_text()), capsys)
    replayed = _by_replay(untrusted, capsys)

    _assert_same(handled, replayed)
    assert replayed["status"] == "processed" and len(replayed["redeployed"]) == 2


def test_every_routed_handler_of_the_template_has_its_kinds() -> None:
    """The kinds replay looks up are the ones the deployed handler modules are built with."""
    import importlib

    routed = {h for rule in deployed_rules() for h in rule.handlers}
    assert routed == set(HANDLER_KINDS)
    for handler in routed:
        module, name = handler.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))


# --- re-driving what failed ------------------------------------------------------------------

REDRIVE = EVENTS / "redrive"


@pytest.mark.parametrize(
    ("record", "layers"),
    [("on-failure-destination-record.json", 1), ("dead-letter-queue-message.json", 2)],
)
def test_replay_unwraps_a_dead_letter_record_and_says_so(
    capsys: pytest.CaptureFixture[str], record: str, layers: int
) -> None:
    status = main(["replay", str(REDRIVE / record), "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = json.loads(captured.out)
    assert data["event_id"] == load_event("rotation-succeeded.json")["id"]
    assert data["status"] == "processed" and len(data["redeployed"]) == 2
    notes = captured.err.splitlines()
    assert len(notes) == layers
    assert all(n.startswith("rotor: note: ") and "taking the event inside" in n for n in notes)
    assert "RetriesExhausted" in notes[-1] and "rotor-RotationFunction" in notes[-1]


def test_an_sqs_body_that_is_the_event_itself_is_unwrapped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """EventBridge's dead-letter queue holds the event itself, as Lambda's SQS source has it."""
    event = load_event("rotation-failed.json")
    message = {"messageId": "m-1", "body": json.dumps(event), "eventSource": "aws:sqs"}
    path = tmp_path / "message.json"
    path.write_text(json.dumps({"Messages": [{"MessageId": "m-1", "Body": json.dumps(message)}]}))

    status = main(["explain", str(path), "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert json.loads(captured.out)["kind"] == "rotation_failed"
    assert captured.err.count("rotor: note: ") == 3


def test_a_record_holding_no_event_is_still_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"requestContext": {}, "requestPayload": {"ORDER": 1}}))

    status = main(["replay", str(path), "--world"])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("rotor: note: ")  # what was unwrapped, then why it fails
    assert "rotor: error: " in captured.err and "malformed event" in captured.err


# --- stable output --------------------------------------------------------------------------


def test_replay_prints_the_same_text_whatever_order_the_work_finished_in(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lists of an outcome are filled as concurrent work finishes: the use case's outcome
    with every list reversed (as another run might fill them) must not change a byte of the
    output, text or JSON. (Reversed at the source, so both printers see it.)"""
    import dataclasses

    from orchestration import dispatch

    path = str(EVENTS / "rotation-succeeded.json")
    original = dispatch.process
    outputs = []
    for reverse in (False, True):

        def process(event: Any, runtime: Any, _reverse: bool = reverse) -> Any:
            outcome = original(event, runtime)
            if _reverse:
                for f in dataclasses.fields(outcome):
                    value = getattr(outcome, f.name)
                    if isinstance(value, list):
                        value.reverse()
                outcome.metrics = dict(reversed(list(outcome.metrics.items())))
            return outcome

        monkeypatch.setattr(dispatch, "process", process)
        texts = []
        for output in (["--json"], []):
            assert main(["replay", path, "--world", *output]) == 0
            texts.append(capsys.readouterr().out)
        assert len(json.loads(texts[0])["redeployed"]) == 2  # an order to lose
        outputs.append(texts)
    assert outputs[0][0] == outputs[1][0]  # JSON
    assert outputs[0][1] == outputs[1][1]  # text
