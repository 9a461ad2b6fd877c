"""`rotor explain EVENT.json [--json]`: offline classification on the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration.cli.main import main
from orchestration.events.classification import classify
from tests.conftest import SAMPLE_EVENTS, load_event

EXIT_BAD_INPUT = 2


def sample_id(path: Path) -> str:
    return path.stem


@pytest.mark.parametrize("path", SAMPLE_EVENTS, ids=sample_id)
def test_explain_json_matches_classify(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(path), "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    data = json.loads(out)  # exactly one JSON document: anything else fails to parse
    assert isinstance(data, dict)
    assert list(data)[:5] == ["kind", "secret", "account", "region", "reason"]
    expected = classify(path.read_text())
    assert data["kind"] == expected.kind.value
    assert data["secret"] == expected.secret
    assert data["account"] == expected.account
    assert data["region"] == expected.region
    assert data["reason"] == expected.reason
    assert data["event_id"] == expected.event_id
    assert data["event_time"].endswith("Z")


def test_explain_json_carries_caller_and_deletion_details(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = next(p for p in SAMPLE_EVENTS if p.name == "delete-secret-recovery-window.json")
    assert main(["explain", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "deletion_scheduled"
    assert data["recovery_window_days"] == 7
    assert data["force_delete"] is False
    assert data["event_time"] == "2026-11-20T11:00:00Z"
    assert data["caller"]["arn"] == "arn:aws:iam::123456789012:user/alice"


@pytest.mark.parametrize("path", SAMPLE_EVENTS, ids=sample_id)
def test_explain_text_summary(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    expected = classify(path.read_text())
    lines = out.splitlines()
    assert lines[0] == f"{path}: {expected.kind.value}"
    assert f"reason:   {expected.reason}" in out
    assert f"secret:   {expected.secret or '-'}" in out
    assert f"account:  {expected.account}" in out
    assert f"region:   {expected.region}" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_explain_text_names_caller_and_service(capsys: pytest.CaptureFixture[str]) -> None:
    by_name = {p.name: p for p in SAMPLE_EVENTS}
    main(["explain", str(by_name["get-secret-value-marked-for-deletion.json"])])
    out = capsys.readouterr().out
    assert "pending_deletion_access" in out
    assert "caller:   arn:aws:iam::123456789012:role/api-task-role (session " in out
    main(["explain", str(by_name["ecs-deployment-failed.json"])])
    out = capsys.readouterr().out
    assert "service:  arn:aws:ecs:us-east-1:123456789012:service/prod/api" in out


def test_explain_text_shows_a_hostile_user_agent_as_one_escaped_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_event("get-secret-value-marked-for-deletion.json")
    event["detail"]["userAgent"] = "cli\n  secret:   prod/other\x1b[2J\x1b]0;owned\x07" + "A" * 5000
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(event))

    main(["explain", str(path)])

    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07")
    assert "  secret:   prod/other" not in out.splitlines()
    (caller,) = [line for line in out.splitlines() if line.startswith("  caller:")]
    assert "via cli\\n  secret:   prod/other\\x1b[2J\\x1b]0;owned\\x07AAA" in caller
    assert len(caller) < 1_100


def _without_detail(tmp_path: Path) -> Path:
    event = load_event("rotation-succeeded.json")
    del event["detail"]
    path = tmp_path / "no-detail.json"
    path.write_text(json.dumps(event))
    return path


Maker = Callable[[Path], Path]


def _write(name: str, text: str | bytes) -> Maker:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return make


def _out_of_range_time(tmp_path: Path) -> Path:
    event = load_event("s3-object-created.json")
    event["time"] = "0001-01-01T00:00:00+01:00"
    path = tmp_path / "ancient.json"
    path.write_text(json.dumps(event))
    return path


INVALID_INPUTS = [
    pytest.param(_write("bad.json", "not json"), "not JSON", id="not-json"),
    pytest.param(_write("empty.json", ""), "not JSON", id="empty-file"),
    pytest.param(_write("binary.json", b"\xff\xfe\x00garbage"), "not JSON", id="binary"),
    pytest.param(_write("list.json", "[1, 2, 3]"), "not list", id="json-list"),
    pytest.param(_write("number.json", "42"), "not int", id="json-number"),
    pytest.param(lambda tmp_path: tmp_path / "missing.json", "No such file", id="missing-file"),
    pytest.param(lambda tmp_path: tmp_path, "Is a directory", id="directory"),
    pytest.param(_without_detail, "detail", id="no-detail"),
    pytest.param(_write("multi.json", '{"a": 1}\nnot json'), "not JSON", id="trailing-garbage"),
]

# BUG: these end in a traceback (OverflowError / RecursionError), not exit status 2.
CRASHING_INPUTS = [
    pytest.param(_out_of_range_time, "time", id="time-out-of-range"),
    pytest.param(_write("deep.json", "[" * 100_000 + "]" * 100_000), "JSON", id="deep-nesting"),
]


@pytest.mark.parametrize(("make", "message"), INVALID_INPUTS)
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_explain_invalid_input(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Maker,
    message: str,
    as_json: bool,
) -> None:
    path = make(tmp_path)
    argv = ["explain", str(path), *(["--json"] if as_json else [])]
    _assert_bad_input(main(argv), capsys, path, message)


@pytest.mark.parametrize(("make", "message"), CRASHING_INPUTS)
def test_explain_input_that_classify_cannot_handle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Maker, message: str
) -> None:
    path = make(tmp_path)
    _assert_bad_input(main(["explain", str(path), "--json"]), capsys, path, message)


def _assert_bad_input(
    status: int, capsys: pytest.CaptureFixture[str], path: Path, message: str
) -> None:
    out, err = capsys.readouterr()
    assert status == EXIT_BAD_INPUT
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rotor: error: ")
    assert str(path) in lines[0]
    assert message in lines[0]
