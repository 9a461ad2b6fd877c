"""The command line fails with one line on stderr, never a traceback."""

from __future__ import annotations

import pytest

from orchestration.cli.main import main


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("rotor: error:")
    assert "Traceback" not in captured.err
    return lines[0]


def test_unknown_profile_is_bad_input(capsys):
    status = main(["discover", "prod/db", "--profile", "no-such-profile", "--region", "us-east-1"])

    assert status == 2
    assert "no-such-profile" in _one_line_error(capsys)


def test_no_region_is_bad_input(capsys, monkeypatch):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)

    status = main(["replay", "events/rotation-succeeded.json"])

    assert status == 2
    assert "region" in _one_line_error(capsys)


def test_bad_world_file_is_bad_input(tmp_path, capsys):
    world = tmp_path / "world.json"
    world.write_text("[1]")

    status = main(["discover", "prod/db", "--world-file", str(world)])

    assert status == 2
    assert "world file" in _one_line_error(capsys)
