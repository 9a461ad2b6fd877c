"""The Lambda artifact check (infra/build_artifact.py) on small made-up trees.

The real build downloads wheels, so CI runs it as its own step (`.ci/run`); these tests show the
check fails on what must never ship and passes on a well-formed tree.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.infra.conftest import INFRA

CPYTHON = "cpython-312-aarch64-linux-gnu"


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_artifact", INFRA / "build_artifact.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _good_tree(root: Path) -> Path:
    for name in ("handlers/rotation.py", "handlers/alarms.py", "orchestration/__init__.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "orchestration" / "events").mkdir()
    shutil.copyfile(INFRA / "template.yaml", root / "orchestration" / "events" / "template.yaml")
    (root / "pydantic_core").mkdir()
    (root / "pydantic_core" / f"_pydantic_core.{CPYTHON}.so").write_bytes(b"\0")
    return root


def test_the_template_declares_what_the_build_targets(builder: ModuleType) -> None:
    assert builder.declared_runtime() == ("python3.12", "arm64")


def test_a_well_formed_tree_passes(builder: ModuleType, tmp_path: Path) -> None:
    assert builder.check(_good_tree(tmp_path), "python3.12", "arm64") == []


@pytest.mark.parametrize("intruder", ["moto", "pytest", "_pytest", "mypy_boto3_ecs", "wrapt-stubs"])
def test_test_and_typing_packages_fail_the_check(
    builder: ModuleType, tmp_path: Path, intruder: str
) -> None:
    root = _good_tree(tmp_path)
    (root / intruder).mkdir()
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert intruder.split("-")[0] in problem


def test_an_extension_for_this_machine_fails_the_check(builder: ModuleType, tmp_path: Path) -> None:
    root = _good_tree(tmp_path)
    (root / "pydantic_core" / "_pydantic_core.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert "another Python or machine" in problem


def test_a_stale_packaged_template_fails_the_check(builder: ModuleType, tmp_path: Path) -> None:
    root = _good_tree(tmp_path)
    (root / "orchestration" / "events" / "template.yaml").write_text("Resources: {}\n")
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert "differs" in problem
