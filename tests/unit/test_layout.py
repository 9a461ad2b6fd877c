"""Rules of the codebase that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATION = sorted((ROOT / "orchestration").rglob("*.py"))
SHIPPED = ORCHESTRATION + sorted((ROOT / "handlers").glob("*.py"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", ORCHESTRATION, ids=lambda p: str(p.relative_to(ROOT)))
def test_orchestration_never_imports_handlers_or_lambda_runtime(path: Path) -> None:
    forbidden = [
        name
        for name in _imports(path)
        if name == "handlers"
        or name.startswith("handlers.")
        or name.startswith("aws_lambda_powertools.utilities.typing")
        or name in ("aws_lambda_powertools", "aws_lambda_powertools.logging")
    ]
    assert forbidden == [], f"{path.name} imports {forbidden}"


SECRET_READS = {"get_secret_value", "batch_get_secret_value"}
SECRET_READ_NAMES = {"GetSecretValue", "BatchGetSecretValue", "secretsmanager:GetSecretValue"}


def _secret_reads(source: str) -> list[str]:
    """Any use of a value-reading operation: called or passed along (retry.call(fn, ...))."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in SECRET_READS:
            found.append(node.attr)
        elif isinstance(node, ast.Constant) and node.value in SECRET_READ_NAMES:
            found.append(str(node.value))
    return found


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_rotor_never_reads_a_secret_value(path: Path) -> None:
    assert _secret_reads(path.read_text()) == [], path.name


@pytest.mark.parametrize(
    "source",
    [
        "client.get_secret_value(SecretId=x)",
        "retry.call('X', clients.secretsmanager.get_secret_value, SecretId=x)",
        "retry.call('GetSecretValue', fn)",
        "c.batch_get_secret_value(SecretIdList=[x])",
    ],
)
def test_the_secret_read_check_catches_every_form(source: str) -> None:
    assert _secret_reads(source) != []


def test_clients_are_created_in_one_place() -> None:
    creators = [
        p.name
        for p in SHIPPED
        if re.search(r"\b(boto3\.client|session\.client|boto3\.resource)\s*\(", p.read_text())
    ]
    # demo.py builds the SQS inbox of the embedded world from the shared session.
    assert set(creators) <= {"clients.py", "world.py"}, creators


def test_public_api_is_listed_and_importable() -> None:
    import orchestration

    exported = set(orchestration.__all__)
    public = {
        name
        for name, value in vars(orchestration).items()
        if not name.startswith("_") and not isinstance(value, type(orchestration))
    }
    assert exported == public
    assert orchestration.__all__ == sorted(orchestration.__all__)


def test_every_package_is_listed_in_pyproject():
    """pyproject.toml lists its packages (the sample events ship as one): a new package of the
    source tree that is not listed would be missing from the wheel."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("orchestration", "handlers")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
    assert "orchestration.cli.samples" in listed
