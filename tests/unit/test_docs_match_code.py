"""The docs say what the code does: a metric, an alarm or an AWS call added to the code without
its line in the docs fails here (the metrics contract checks the emitted metrics too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration import outcome
from orchestration.events.routing import _TemplateLoader

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def documented_metrics() -> set[str]:
    """The metrics named in the first column of docs/operations.md's metrics table."""
    rows = re.findall(r"^\| (.+?) \|", _section(OPERATIONS, "Metrics"), re.M)
    return {name for row in rows for name in re.findall(r"`(\w+)`", row)}


def declared_metrics() -> set[str]:
    """Every metric name orchestration/outcome.py declares (the names the code counts)."""
    return {
        value
        for name, value in vars(outcome).items()
        if name.isupper()
        and isinstance(value, str)
        and re.fullmatch(r"[A-Z][a-z]+(?:[A-Z]\w*)+", value)
    }


def test_the_metrics_table_names_every_metric_the_code_declares() -> None:
    declared = declared_metrics()
    assert len(declared) >= 22
    assert sorted(declared - documented_metrics()) == []
    assert sorted(documented_metrics() - declared) == []  # nor one the code no longer has


def _stack() -> dict[str, Any]:
    stack: dict[str, Any] = yaml.load(
        (ROOT / "infra" / "template.yaml").read_text(), Loader=_TemplateLoader
    )
    return stack


def _alarms() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, resource["Properties"])
        for name, resource in _stack()["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    ]


def _readme_alarm_row() -> str:
    match = re.search(r"^\| alarms \|(.*)$", README, re.M)
    assert match, "no alarms row in the README's table of what the stack creates"
    return match.group(1)


def _readme_alarm_advice() -> str:
    match = re.search(r"^- \*\*Alarms\*\*(.*?)(?=^- \*\*)", README, re.M | re.S)
    assert match, "no Alarms item in the README's Operations"
    return match.group(1)


@pytest.mark.parametrize(
    ("name", "alarm"), _alarms(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_alarm_of_the_template_is_in_the_readme(name: str, alarm: dict[str, Any]) -> None:
    row, advice = _readme_alarm_row(), _readme_alarm_advice()
    namespace, metric = alarm["Namespace"], alarm["MetricName"]
    if namespace == "AWS/Lambda":
        assert f"`{metric}`" in row and f"`{metric}`" in advice, name
    elif namespace == "AWS/SQS" and metric == "ApproximateNumberOfMessagesVisible":
        assert "dead-letter queue's depth" in row, name
    elif namespace == "AWS/SQS":  # another queue alarm: named, and what to do about it said
        assert f"`{name}`" in row, f"{name} is not in the README's alarms row"
        assert f"`{name}`" in advice, f"{name}: the README's Operations says nothing of it"
    elif namespace == "CloudTrailMetrics":
        assert "metric filter and alarm" in row, name
    else:  # rotor's own: named, and what to do about it said
        assert f"`{metric}`" in row, f"{name}: {metric} is not in the README's alarms row"
        assert f"`{metric}`" in advice, f"{name}: the README's Operations says nothing of it"


def test_the_alarm_checks_see_every_rotor_alarm() -> None:
    rotor_alarms = {a["MetricName"] for _, a in _alarms() if a["Namespace"] == "Rotor"}
    assert {"RedeployFlapping", "RedeployRolledBack", "UntrustedEvents"} <= rotor_alarms


def _aws_operations() -> set[str]:
    """The operations of the services rotor calls, from botocore's models."""
    import botocore.session

    session = botocore.session.get_session()
    services = ("dynamodb", "ecs", "secretsmanager", "sns", "sqs", "sts")
    return {op for s in services for op in session.get_service_model(s).operation_names}


def _operations_called() -> dict[str, str]:
    """Every AWS operation rotor makes through its retry policy (``retry.call("Op", ...)``)."""
    known = _aws_operations()
    found = {}
    for path in sorted((ROOT / "orchestration").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "call"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in known
            ):
                found[node.args[0].value] = str(path.relative_to(ROOT))
    return found


def test_every_aws_call_rotor_makes_is_in_the_permissions() -> None:
    called = _operations_called()
    assert {"Scan", "UpdateService", "DescribeSecret"} <= set(called)
    permissions = _section(OPERATIONS, "What rotor may do")
    # IAM authorises SQS's batch calls by the single call's action (sqs:SendMessage).
    actions = {op: op.removesuffix("Batch") for op in called}
    missing = {
        op: where
        for op, where in called.items()
        if not re.search(rf"\b{actions[op]}\b", permissions)
    }
    assert missing == {}


def test_the_readmes_settings_table_names_every_setting() -> None:
    from orchestration.settings import Settings

    table = _section(README, "Configuration")
    rows = {name for name in re.findall(r"^\| `(ROTOR_\w+)` \|", table, re.M)}
    assert set(Settings.variable_names()) <= rows


def test_rotor_status_needs_scan() -> None:
    (row,) = [
        r for r in _section(OPERATIONS, "What rotor may do").splitlines() if "rotor status" in r
    ]
    assert "dynamodb:Scan" in row


def test_jobs_waiting_on_the_cap_never_count_toward_max_receives() -> None:
    """The code sends a waiting job again as a new message (README, architecture alike)."""
    for text in (README, ARCHITECTURE):
        flat = " ".join(text.split())
        assert "never counts toward" in flat
        assert "cluster at its cap) is put back" not in flat


def test_the_readme_promises_the_demo_only_with_its_extra() -> None:
    """moto and time-machine (the embedded world) come with the ``demo`` extra, not with
    ``pip install .``: every install the README gives for the demo names the extra."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(d.startswith("moto") for d in extras["demo"])
    assert any(d.startswith("time-machine") for d in extras["demo"])
    assert "rotor[demo]" in extras["dev"]
    flat = " ".join(README.split())
    sentences = re.split(r"(?<=[.;:])\s", flat)
    promises = [s for s in sentences if "pip install" in s and "rotor demo" in s]
    assert promises
    for sentence in promises:
        installs = re.findall(r"pip install [^`]*", sentence)
        assert all(re.search(r"\[(demo|dev)\]", i) for i in installs), sentence
    assert "`pip install .` (not editable) gives a working `rotor demo`" not in flat


def test_the_embedded_world_without_its_extra_says_how_to_get_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from orchestration.cli.main import main

    monkeypatch.setitem(sys.modules, "moto", None)  # as after `pip install .`

    status = main(["demo"])

    assert status == 1
    assert "pip install 'rotor[demo]'" in capsys.readouterr().err
