"""The Lambda artifact build (infra/build_artifact.py, infra/Makefile) without downloading.

The real build downloads wheels, so CI runs it as its own step (`sam build` in `.ci/run`); these
tests show the check fails on what must never ship and passes on a well-formed tree, that the
lock is pyproject's dependencies, and that `make` picks a Python that can build, or stops with
one line naming the Python it needs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra.conftest import INFRA, ROOT

CPYTHON = "cpython-312-aarch64-linux-gnu"


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_artifact", INFRA / "build_artifact.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HANDLERS = [
    "handlers/alarms.py",
    "handlers/reconcile.py",
    "handlers/rotation.py",
    "handlers/tracker.py",
    "handlers/worker.py",
]


def _good_tree(root: Path, builder: ModuleType) -> Path:
    for name in (*HANDLERS, "orchestration/__init__.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    for name, version in builder.locked().items():
        (root / f"{name.replace('-', '_')}-{version}.dist-info").mkdir()
    (root / "rotor-0.1.0.dist-info").mkdir()
    (root / "orchestration" / "events").mkdir()
    shutil.copyfile(INFRA / "template.yaml", root / "orchestration" / "events" / "template.yaml")
    (root / "pydantic_core").mkdir()
    (root / "pydantic_core" / f"_pydantic_core.{CPYTHON}.so").write_bytes(b"\0")
    return root


def test_the_template_declares_what_the_build_targets(builder: ModuleType) -> None:
    assert builder.declared_runtime() == ("python3.12", "arm64")


def test_a_well_formed_tree_passes(builder: ModuleType, tmp_path: Path) -> None:
    assert builder.check(_good_tree(tmp_path, builder), "python3.12", "arm64") == []


@pytest.mark.parametrize("intruder", ["moto", "pytest", "_pytest", "mypy_boto3_ecs", "wrapt-stubs"])
def test_test_and_typing_packages_fail_the_check(
    builder: ModuleType, tmp_path: Path, intruder: str
) -> None:
    root = _good_tree(tmp_path, builder)
    (root / intruder).mkdir()
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert intruder.split("-")[0] in problem


def test_an_extension_for_this_machine_fails_the_check(builder: ModuleType, tmp_path: Path) -> None:
    root = _good_tree(tmp_path, builder)
    (root / "pydantic_core" / "_pydantic_core.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert "another Python or machine" in problem


def test_a_stale_packaged_template_fails_the_check(builder: ModuleType, tmp_path: Path) -> None:
    root = _good_tree(tmp_path, builder)
    (root / "orchestration" / "events" / "template.yaml").write_text("Resources: {}\n")
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert "differs" in problem


def test_the_check_covers_every_handler_the_template_names(builder: ModuleType) -> None:
    assert builder.handler_modules() == HANDLERS


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_missing_handler_fails_the_check(
    builder: ModuleType, tmp_path: Path, handler: str
) -> None:
    root = _good_tree(tmp_path, builder)
    (root / handler).unlink()
    assert builder.check(root, "python3.12", "arm64") == [f"missing {handler}"]


def test_a_distribution_not_in_the_lock_fails_the_check(
    builder: ModuleType, tmp_path: Path
) -> None:
    root = _good_tree(tmp_path, builder)
    (root / "requests-2.32.3.dist-info").mkdir()
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert "requests 2.32.3 is not in lambda-requirements.txt" in problem


def test_a_version_other_than_the_locked_one_fails_the_check(
    builder: ModuleType, tmp_path: Path
) -> None:
    root = _good_tree(tmp_path, builder)
    pinned = builder.locked()["pydantic"]
    (root / f"pydantic-{pinned}.dist-info").rename(root / "pydantic-2.7.0.dist-info")
    (problem,) = builder.check(root, "python3.12", "arm64")
    assert f"pydantic 2.7.0, but lambda-requirements.txt pins {pinned}" in problem


# --- the lock -----------------------------------------------------------------------------


def test_the_lock_pins_every_runtime_dependency_within_pyprojects_ranges(
    builder: ModuleType,
) -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = builder.locked()
    assert len(dependencies) >= 6
    for dependency in map(Requirement, dependencies):
        name = canonicalize_name(dependency.name)
        assert name in pins, f"{name} is not in the lock"
        assert dependency.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    # Exact pins only, each name once; the extras' own dependencies are pinned too.
    lines = [
        line
        for line in (INFRA / "lambda-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all("==" in line and "[" not in line for line in lines)
    assert len(lines) == len(pins)
    assert "aws-xray-sdk" in pins  # aws-lambda-powertools[tracer]
    # Nothing that only tests, lints or type-checks.
    assert not [n for n in pins if builder.FORBIDDEN.match(n.replace("-", "_"))]


def test_the_build_installs_from_the_lock_not_from_the_build_pythons_packages(
    builder: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    commands: list[list[str]] = []

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        if "wheel" in command:
            (Path(command[command.index("-w") + 1]) / "rotor-0.1.0-py3-none-any.whl").touch()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(builder.subprocess, "run", run)
    builder.build(tmp_path / "out", "python3.12", "arm64")

    install = commands[-1]
    assert f"--requirement={INFRA / 'lambda-requirements.txt'}" in install
    assert "--python-version=3.12" in install and "--only-binary=:all:" in install
    assert not [c for c in commands if "freeze" in c]


def test_the_wheel_is_built_from_a_copy_so_concurrent_builds_of_the_checkout_cannot_clash(
    builder: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pip builds a local project in place: setuptools' build/ and rotor.egg-info in the
    checkout would be shared with the wheel a test builds while .ci/run's `sam build` runs."""
    seen: dict[str, object] = {}

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        if "wheel" in command:
            source = Path(command[-1])
            seen["source"] = source
            seen["files"] = {
                name: (source / name).is_file()
                for name in ("pyproject.toml", "README.md", "rotor.py", "handlers/worker.py")
            }
            seen["template"] = (source / "orchestration" / "events" / "template.yaml").read_text()
            seen["left_out"] = [
                name
                for name in (".git", ".venv", "tests", "infra/.aws-sam")
                if (source / name).exists()
            ]
            (Path(command[command.index("-w") + 1]) / "rotor-0.1.0-py3-none-any.whl").touch()
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(builder.subprocess, "run", run)
    builder.build(tmp_path / "out", "python3.12", "arm64")

    assert Path(str(seen["source"])).resolve() != ROOT
    assert not Path(str(seen["source"])).exists()  # the copy goes with the build's scratch
    assert all(dict(seen["files"]).values()), seen["files"]  # type: ignore[call-overload]
    assert seen["template"] == (INFRA / "template.yaml").read_text()
    assert seen["left_out"] == []


# --- which Python builds ------------------------------------------------------------------


def _make(tmp_path: Path, path: list[Path], *args: str) -> subprocess.CompletedProcess[str]:
    """infra/Makefile run the way `sam build` runs it, from a copy (no .venv beside it)."""
    infra = tmp_path / "repo" / "infra"
    infra.mkdir(parents=True)
    shutil.copyfile(INFRA / "Makefile", infra / "Makefile")
    make = shutil.which("make")
    assert make, "the build needs make"
    return subprocess.run(
        [make, "--no-print-directory", *args],
        cwd=infra,
        env={**os.environ, "PATH": os.pathsep.join(map(str, path))},
        capture_output=True,
        text=True,
        check=False,
    )


def _fake_python(directory: Path, name: str, version: str) -> Path:
    """A Python 3 too old to build: reports its version, fails the build's probe."""
    directory.mkdir(parents=True, exist_ok=True)
    fake = directory / name
    fake.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        '  *version_info*">="*) echo "AssertionError" >&2; exit 1;;\n'
        f'  *) echo "{version}";;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    return directory


def test_a_foreign_python3_first_on_path_is_passed_over_for_one_that_builds(
    tmp_path: Path,
) -> None:
    old = _fake_python(tmp_path / "old", "python3", "3.8.10")
    good = tmp_path / "good"
    good.mkdir()
    (good / "python3.11").symlink_to(sys.executable)

    result = _make(tmp_path, [old, good], "-s", "which-python")

    assert (result.returncode, result.stdout.strip()) == (0, "python3.11"), result.stderr


def test_without_a_python_that_builds_make_stops_with_one_line(tmp_path: Path) -> None:
    old = _fake_python(tmp_path / "old", "python3", "3.8.10")

    result = _make(tmp_path, [old], "build-WorkerFunction", "ARTIFACTS_DIR=out")

    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "Python 3.11 or newer with pip" in line
    assert "python3 on PATH is 3.8.10" in line
    assert "Traceback" not in line and "ResolutionImpossible" not in line


def test_an_unusable_python_given_explicitly_stops_with_one_line(tmp_path: Path) -> None:
    old = _fake_python(tmp_path / "old", "python3.9", "3.9.18")

    result = _make(
        tmp_path, [old], "build-TrackerFunction", f"PYTHON={old / 'python3.9'}", "ARTIFACTS_DIR=x"
    )

    assert result.returncode != 0
    (line,) = result.stderr.splitlines()
    assert f"PYTHON={old / 'python3.9'} is 3.9.18" in line


def test_every_function_of_the_template_has_a_make_target(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "python3").symlink_to(sys.executable)
    for function in ("RotationFunction", "AlarmsFunction", "WorkerFunction", "TrackerFunction"):
        result = _make(tmp_path / function, [good], "-n", f"build-{function}", "ARTIFACTS_DIR=o")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == 'python3 build_artifact.py --out "o"'
