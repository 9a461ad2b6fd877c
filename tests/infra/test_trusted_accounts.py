"""Cross-account: the handlers act on events from their own account and ROTOR_TRUSTED_ACCOUNTS
only; any other account's event is rejected, logged and counted (UntrustedEvents)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.entry import make_handler
from orchestration import ALARM_KINDS, ConfigurationError, Settings
from tests.conftest import ACCOUNT, REGION, load_event, make_runtime
from tests.integration.conftest import inbox  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

FORWARDING = "210987654321"


class FakeLambdaContext:
    function_name = "rotor-alarms"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:rotor-alarms"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def test_trusted_accounts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTOR_TRUSTED_ACCOUNTS", f" {FORWARDING}, 111122223333 ,")
    assert Settings.from_env().trusted_accounts == (FORWARDING, "111122223333")
    monkeypatch.setenv("ROTOR_TRUSTED_ACCOUNTS", "2109-8765-4321")
    with pytest.raises(ConfigurationError, match="ROTOR_TRUSTED_ACCOUNTS"):
        Settings.from_env()


@pytest.fixture
def handler(world: Any, clients: Any, retry: Any, inbox: Any) -> Any:  # noqa: F811
    settings = Settings(topic_arn=inbox.topic_arn, trusted_accounts=(FORWARDING,))
    runtime = make_runtime(clients, retry, settings)
    return make_handler(ALARM_KINDS, lambda: runtime)


def _failed_rotation(account: str) -> dict[str, Any]:
    event = load_event("rotation-failed.json")
    event["account"] = account
    return event


def test_events_from_a_trusted_account_are_processed(handler: Any, inbox: Any) -> None:  # noqa: F811
    result = handler(_failed_rotation(FORWARDING), FakeLambdaContext())

    assert result["status"] == "processed"
    assert len(inbox.drain()) == 1


def test_events_from_any_other_account_are_rejected_and_counted(
    handler: Any,
    inbox: Any,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)

    result = handler(_failed_rotation("999999999999"), FakeLambdaContext())

    assert result["status"] == "rejected"
    assert "999999999999" in result["reason"]
    assert inbox.drain() == []  # nothing done on its behalf
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert [line.get("UntrustedEvents") for line in lines] == [[1.0]]


def test_own_account_needs_no_listing(handler: Any, inbox: Any) -> None:  # noqa: F811
    assert handler(_failed_rotation(ACCOUNT), FakeLambdaContext())["status"] == "processed"
