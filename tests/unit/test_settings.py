"""Settings.from_env: ROTOR_* variables, their defaults, and errors that name the variable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestration.errors import ConfigurationError
from orchestration.settings import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.clusters == ()
    assert settings.opt_in is False
    assert settings.topic_arn is None
    assert settings.restore_on_access is False
    assert settings.notify_window == timedelta(minutes=15)
    assert settings.state_table is None
    assert settings.max_workers == 8


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "ROTOR": "x", "rotor_opt_in": "maybe"}) == Settings()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTOR_CLUSTERS", "prod")
    monkeypatch.setenv("ROTOR_MAX_WORKERS", "3")
    settings = Settings.from_env()
    assert settings.clusters == ("prod",)
    assert settings.max_workers == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("prod", ("prod",), id="one"),
        pytest.param("prod,batch", ("prod", "batch"), id="two"),
        pytest.param(" prod , batch ,", ("prod", "batch"), id="spaces-and-trailing-comma"),
        pytest.param(",,prod,,", ("prod",), id="empty-items"),
        pytest.param("", (), id="empty-means-every-cluster"),
        pytest.param(
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod,batch",
            ("arn:aws:ecs:us-east-1:123456789012:cluster/prod", "batch"),
            id="arn-and-name",
        ),
    ],
)
def test_clusters(value: str, expected: tuple[str, ...]) -> None:
    assert Settings.from_env({"ROTOR_CLUSTERS": value}).clusters == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        (" true ", True),
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("0", False),
        ("", False),
    ],
)
@pytest.mark.parametrize("variable", ["ROTOR_OPT_IN", "ROTOR_RESTORE_ON_ACCESS"])
def test_booleans(variable: str, value: str, expected: bool) -> None:
    settings = Settings.from_env({variable: value})
    field = variable.removeprefix("ROTOR_").lower()
    assert getattr(settings, field) is expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("900", 900, id="bare-seconds"),
        pytest.param("30s", 30, id="seconds"),
        pytest.param("15m", 900, id="minutes"),
        pytest.param("1h", 3600, id="hours"),
        pytest.param("2d", 172_800, id="days"),
        pytest.param(" 5 m ", 300, id="spaces"),
        pytest.param("0", 0, id="zero"),
    ],
)
def test_notify_window(value: str, seconds: int) -> None:
    window = Settings.from_env({"ROTOR_NOTIFY_WINDOW": value}).notify_window
    assert window == timedelta(seconds=seconds)


def test_topic_and_table() -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:rotor"
    settings = Settings.from_env({"ROTOR_TOPIC_ARN": arn, "ROTOR_STATE_TABLE": "rotor-state"})
    assert settings.topic_arn == arn
    assert settings.state_table == "rotor-state"


@pytest.mark.parametrize("variable", ["ROTOR_TOPIC_ARN", "ROTOR_STATE_TABLE"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_optional_names_are_none(variable: str, blank: str) -> None:
    settings = Settings.from_env({variable: blank})
    assert getattr(settings, variable.removeprefix("ROTOR_").lower()) is None


@pytest.mark.parametrize("value", ["1", "8", "64"])
def test_max_workers(value: str) -> None:
    assert Settings.from_env({"ROTOR_MAX_WORKERS": value}).max_workers == int(value)


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(Exception, match="frozen"):
        settings.opt_in = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        pytest.param({"ROTOR_OPT_IN": "maybe"}, "ROTOR_OPT_IN", id="opt-in-maybe"),
        pytest.param({"ROTOR_OPT_IN": "2"}, "ROTOR_OPT_IN", id="opt-in-2"),
        pytest.param({"ROTOR_RESTORE_ON_ACCESS": "y"}, "ROTOR_RESTORE_ON_ACCESS", id="restore-y"),
        pytest.param(
            {"ROTOR_NOTIFY_WINDOW": "15 minutes"}, "ROTOR_NOTIFY_WINDOW", id="window-words"
        ),
        pytest.param({"ROTOR_NOTIFY_WINDOW": "1w"}, "ROTOR_NOTIFY_WINDOW", id="window-weeks"),
        pytest.param({"ROTOR_NOTIFY_WINDOW": "-5m"}, "ROTOR_NOTIFY_WINDOW", id="window-negative"),
        pytest.param({"ROTOR_NOTIFY_WINDOW": "1.5h"}, "ROTOR_NOTIFY_WINDOW", id="window-fraction"),
        pytest.param({"ROTOR_NOTIFY_WINDOW": "m"}, "ROTOR_NOTIFY_WINDOW", id="window-unit-only"),
        pytest.param({"ROTOR_NOTIFY_WINDOW": ""}, "ROTOR_NOTIFY_WINDOW", id="window-empty"),
        pytest.param({"ROTOR_MAX_WORKERS": "0"}, "ROTOR_MAX_WORKERS", id="workers-zero"),
        pytest.param({"ROTOR_MAX_WORKERS": "65"}, "ROTOR_MAX_WORKERS", id="workers-65"),
        pytest.param({"ROTOR_MAX_WORKERS": "many"}, "ROTOR_MAX_WORKERS", id="workers-text"),
        pytest.param({"ROTOR_MAX_WORKERS": "2.5"}, "ROTOR_MAX_WORKERS", id="workers-fraction"),
    ],
)
def test_invalid_values_name_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    message = str(caught.value)
    assert variable in message
    assert message.startswith("invalid configuration")


def test_every_invalid_variable_is_named() -> None:
    environ = {"ROTOR_OPT_IN": "maybe", "ROTOR_MAX_WORKERS": "0", "ROTOR_CLUSTERS": "prod"}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    assert "ROTOR_OPT_IN" in str(caught.value)
    assert "ROTOR_MAX_WORKERS" in str(caught.value)
    assert "ROTOR_CLUSTERS" not in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("99999999999999d", id="days-beyond-timedelta"),
        pytest.param("9" * 30, id="seconds-beyond-timedelta"),
    ],
)
def test_notify_window_too_large_is_a_configuration_error(value: str) -> None:
    """A huge ROTOR_NOTIFY_WINDOW matches the duration pattern, then timedelta() overflows.

    The OverflowError escapes the validator (pydantic only wraps ValueError/AssertionError), so
    from_env raises OverflowError instead of ConfigurationError naming the variable.
    """
    environ: dict[str, Any] = {"ROTOR_NOTIFY_WINDOW": value}
    with pytest.raises(ConfigurationError, match="ROTOR_NOTIFY_WINDOW"):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        pytest.param("ROTOR_OPTIN", "ROTOR_OPT_IN", id="missing-underscore"),
        pytest.param("ROTOR_CLUSTER", "ROTOR_CLUSTERS", id="singular"),
        pytest.param("ROTOR_STATE_TABEL", "ROTOR_STATE_TABLE", id="transposed"),
    ],
)
def test_a_misspelled_variable_is_reported_with_the_closest_name(variable, suggestion) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({variable: "true"})
    assert f"{variable} is not a rotor setting; did you mean {suggestion}?" in str(caught.value)


def test_an_unknown_variable_far_from_any_name_lists_the_settings() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"ROTOR_XYZZY": "1"})
    assert "ROTOR_XYZZY is not a rotor setting" in str(caught.value)
    assert "ROTOR_STATE_TABLE" in str(caught.value)


def test_the_constructor_reads_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Lambda does at cold start: pydantic-settings reads ROTOR_* from os.environ."""
    monkeypatch.setenv("ROTOR_CLUSTERS", "prod, batch")
    monkeypatch.setenv("ROTOR_NOTIFY_WINDOW", "1h")
    settings = Settings()
    assert settings.clusters == ("prod", "batch")
    assert settings.notify_window == timedelta(hours=1)


def test_index_max_age_defaults_to_two_hours_and_reads_durations() -> None:
    assert Settings.from_env({}).index_max_age == timedelta(hours=2)
    assert Settings.from_env({"ROTOR_INDEX_MAX_AGE": "90m"}).index_max_age == timedelta(minutes=90)
    with pytest.raises(ConfigurationError, match="ROTOR_INDEX_MAX_AGE"):
        Settings.from_env({"ROTOR_INDEX_MAX_AGE": "2 hours"})


@pytest.mark.parametrize(("value", "share"), [("0.25", 0.25), ("1", 1.0), ("0.05", 0.05)])
def test_reconcile_read_share(value: str, share: float) -> None:
    assert Settings.from_env({}).reconcile_read_share == 0.25
    assert Settings.from_env({"ROTOR_RECONCILE_READ_SHARE": value}).reconcile_read_share == share


@pytest.mark.parametrize("value", ["0", "-0.1", "1.01", "quarter", "nan"])
def test_reconcile_read_share_is_more_than_0_and_at_most_1(value: str) -> None:
    with pytest.raises(ConfigurationError, match="ROTOR_RECONCILE_READ_SHARE"):
        Settings.from_env({"ROTOR_RECONCILE_READ_SHARE": value})
