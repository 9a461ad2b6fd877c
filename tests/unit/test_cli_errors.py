"""The command line fails with one line on stderr, never a traceback."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize(
    "url", ["http//127.0.0.1:5000", "ftp://127.0.0.1", "http://127.0.0.1:port", "127.0.0.1:5000"]
)
def test_malformed_endpoint_url_is_bad_input(capsys, url):
    with pytest.raises(SystemExit) as exited:
        main(["discover", "prod/db", "--region", "us-east-1", "--endpoint-url", url])

    assert exited.value.code == 2
    assert "URL" in _one_line_error(capsys)


@pytest.mark.parametrize("region", ["nowhere", "US-EAST-1", "us-east-1 ", "us-nowhere-1"])
def test_invalid_region_is_bad_input(capsys, region):
    try:
        status = main(["discover", "prod/db", "--region", region])
    except SystemExit as exited:
        status = exited.code

    assert status == 2
    assert "region" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "region", ["eusc-de-east-1", "cn-north-1", "us-gov-west-1", "us-isob-east-1", "eu-west-1"]
)
def test_a_region_of_any_partition_botocore_knows_is_a_region(region):
    from orchestration.cli.main import _region

    assert _region(region) == region


@pytest.mark.parametrize(
    ("content", "label"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"account": "123456789012", "region": ', "not JSON"),
        (b'{"account": 123456789012, "region": "us-east-1"}', "account a number"),
        (b'{"account": "123456789012", "region": "us-east-1", "clusters": "prod"}', "a string"),
        (
            b'{"account": "123456789012", "region": "us-east-1", "clusters": '
            b'[{"name": "prod", "services": [{"name": "api", "task_definition": "api", '
            b'"desired_count": "two"}]}]}',
            "count a string",
        ),
        (
            b'{"account": "123456789012", "region": "us-east-1", "clusters": '
            b'[{"name": "prod", "services": [{"name": "api", "task_definition": "none"}]}]}',
            "no such task definition",
        ),
    ],
)
def test_a_world_file_that_is_not_utf8_json_or_has_wrong_types_is_bad_input(
    tmp_path, capsys, content, label
):
    world = tmp_path / "world.json"
    world.write_bytes(content)

    status = main(["discover", "prod/db", "--world-file", str(world)])

    assert status == 2, label
    assert "world file" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        ("", "empty secret id"),
        ("   ", "empty secret id"),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/nope-AbCdEf", "no secret"),
    ],
    ids=["empty", "blank", "full-arn-that-does-not-exist"],
)
def test_a_secret_that_cannot_be_meant_is_bad_input(capsys, secret, words):
    status = main(["discover", secret, "--world"])

    assert status == 2
    assert words in _one_line_error(capsys)


def test_world_is_a_flag_that_takes_no_argument(capsys):
    status = main(["discover", "--world", "prod/api-signer", "--output", "json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert '"secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-signer-' in (
        captured.out
    )


def test_output_json_is_the_same_as_json(capsys):
    assert main(["explain", "events/rotation-succeeded.json", "--output", "json"]) == 0
    long_form = capsys.readouterr().out
    assert main(["explain", "events/rotation-succeeded.json", "--json"]) == 0
    assert capsys.readouterr().out == long_form
    assert long_form.startswith("{")


def test_a_missing_state_table_is_named_before_any_work(capsys, monkeypatch):
    monkeypatch.setenv("ROTOR_STATE_TABLE", "no-such-table")

    status = main(["replay", "events/rotation-succeeded.json", "--world"])

    assert status == 2
    line = _one_line_error(capsys)
    assert "ROTOR_STATE_TABLE" in line and "'no-such-table'" in line


def test_a_missing_cluster_is_named_and_the_others_are_handled(capsys, monkeypatch):
    monkeypatch.setenv("ROTOR_CLUSTERS", "prod,gone")

    status = main(["replay", "events/rotation-succeeded.json", "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 1  # the list of consumers may be incomplete: Lambda would retry
    data = json.loads(captured.out)
    assert len(data["redeployed"]) == 2
    assert [f["error"] for f in data["failed"] if "gone" in json.dumps(f)]
    assert any("could not read cluster gone" in note for note in data["notes"])


def test_the_embedded_world_ignores_the_users_aws_settings(capsys, monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:9\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")

    status = main(["replay", "events/rotation-succeeded.json", "--world", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert '"failed": []' in captured.out
    # ... and gives them back afterwards.
    import os

    assert os.environ["AWS_PROFILE"] == "no-such-profile"
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
