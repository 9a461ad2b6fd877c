"""The command line against an account (moto in-process): the region as the AWS CLI and SDKs
choose it, and the consumers of a secret that no longer exists."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from orchestration.cli.main import main
from tests.conftest import EVENTS

pytestmark = pytest.mark.integration

SECRET = "prod/only-in-ireland"


@pytest.fixture
def ireland(moto: None) -> str:
    """A secret that exists in eu-west-1 only."""
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    arn: str = sm.create_secret(Name=SECRET, SecretString="placeholder")["ARN"]
    return arn


def _discover(capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str]:
    status = main(["discover", SECRET, "--json", *flags])
    captured = capsys.readouterr()
    return status, captured.out if status == 0 else captured.err


@pytest.mark.parametrize(
    ("environment", "flags", "region"),
    [
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": None}, [], "eu-west-1"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}, [], "eu-west-1"),
        ({"AWS_REGION": None, "AWS_DEFAULT_REGION": "eu-west-1"}, [], "eu-west-1"),
        ({"AWS_REGION": "us-east-1"}, ["--region", "eu-west-1"], "eu-west-1"),
        ({"AWS_REGION": None, "AWS_DEFAULT_REGION": "us-east-1"}, [], "us-east-1"),
        ({"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "eu-west-1"}, [], "us-east-1"),
    ],
    ids=[
        "AWS_REGION",
        "AWS_REGION-before-AWS_DEFAULT_REGION",
        "AWS_DEFAULT_REGION",
        "--region-first",
        "not-in-that-region",
        "AWS_REGION-wins",
    ],
)
def test_the_region_is_chosen_as_the_aws_cli_does(
    ireland, capsys, monkeypatch, environment, flags, region
):
    for name, value in environment.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)

    status, shown = _discover(capsys, *flags)

    if region == "eu-west-1":
        assert status == 0, shown
        assert json.loads(shown)["secret"] == ireland
    else:  # the secret is not in the region rotor looked in
        assert status == 2
        assert "no secret" in shown


def test_the_profiles_region_comes_after_the_environment(
    ireland, capsys, monkeypatch, tmp_path: Path
):
    config = tmp_path / "config"
    config.write_text("[profile ops]\nregion = eu-west-1\n")
    credentials = tmp_path / "credentials"
    credentials.write_text("[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)

    assert _discover(capsys, "--profile", "ops")[0] == 0
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert _discover(capsys, "--profile", "ops")[0] == 2


# --- a deleted secret's consumers -------------------------------------------------------------

GONE = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-signer-Qw34Er"


@pytest.fixture
def world_without_api_signer(tmp_path: Path) -> Path:
    """The sample world, with prod/api-signer deleted for good: the gateway still names it,
    by full ARN and by bare name."""
    world = json.loads((EVENTS / "world.json").read_text())
    world["secrets"] = [s for s in world["secrets"] if "prod/api-signer" not in s["arn"]]
    path = tmp_path / "world.json"
    path.write_text(json.dumps(world))
    return path


def test_discover_of_a_deleted_secrets_full_arn_warns_and_lists_its_consumers(
    world_without_api_signer, capsys
):
    status = main(["discover", GONE, "--world-file", str(world_without_api_signer), "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = json.loads(captured.out)
    assert data["secret"] == GONE and data["exists"] is False
    assert [(c["cluster"], c["service"]) for c in data["consumers"]] == [("prod", "gateway")]
    (warning,) = captured.err.splitlines()
    assert warning.startswith("rotor: warning: no secret " + GONE)
    assert "does not exist" in warning


def test_discover_of_a_deleted_secret_in_a_table_says_it_is_deleted(
    world_without_api_signer, capsys
):
    status = main(["discover", GONE, "--world-file", str(world_without_api_signer)])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.splitlines()[0] == f"{GONE}: 1 consumer(s) (secret deleted)"
    assert "gateway" in captured.out


@pytest.mark.parametrize(
    "secret_id",
    # (An ARN whose name ends in "-" and six characters is a full ARN, for rotor as for AWS.)
    ["prod/api-signer", "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api"],
    ids=["bare-name", "partial-arn"],
)
def test_a_name_that_does_not_exist_stays_bad_input(world_without_api_signer, capsys, secret_id):
    status = main(["discover", secret_id, "--world-file", str(world_without_api_signer)])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.startswith("rotor: error: no secret")


# --- the trust check against an account -------------------------------------------------------


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_replay_against_an_account_takes_its_own_account_from_the_credentials(
    world, capsys, monkeypatch, tmp_path: Path, trusted
):
    """The Lambda's own account is its function's; on the command line it is the account of
    the credentials (GetCallerIdentity), so another account's event is rejected as deployed."""
    event = json.loads((EVENTS / "rotation-succeeded.json").read_text())
    event["account"] = "999999999999"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    if trusted:
        monkeypatch.setenv("ROTOR_TRUSTED_ACCOUNTS", "999999999999")

    status = main(["replay", str(path), "--region", "us-east-1", "--dry-run", "--json"])

    captured = capsys.readouterr()
    assert status == 0, captured.err
    data = json.loads(captured.out)
    if trusted:
        assert data["status"] == "processed" and len(data["would_redeploy"]) == 2
    else:
        assert data["status"] == "rejected" and data["would_redeploy"] == []
        assert data["notes"] == [
            "rejected: event from account 999999999999, not one of 123456789012 "
            "(ROTOR_TRUSTED_ACCOUNTS)"
        ]
        assert [c["operation"] for c in data["would_call"]] == []
