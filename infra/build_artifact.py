"""Build the Lambda artifact of infra/template.yaml without Docker and without its Python.

pip installs wheels for another Python version and platform, so a laptop or CI machine with
Python 3.11 on x86_64 builds the python3.12/arm64 package the template declares: rotor's own
wheel plus its runtime dependencies at the versions pinned in infra/lambda-requirements.txt
(the lock of ``[project] dependencies``), binary wheels only, and nothing else (no moto,
pytest or type stubs). Whatever Python runs the build, the artifact holds the same versions.
Then it checks what it built (every handler the template names, nothing unlocked, native
extensions for the runtime) and prints the size.

    python infra/build_artifact.py --out build/lambda --zip build/rotor-lambda.zip
    python infra/build_artifact.py --lock    # re-resolve the lock after changing dependencies

``sam build`` runs it through infra/Makefile (``BuildMethod: makefile``) with
``--out $(ARTIFACTS_DIR)``.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
LOCK = ROOT / "infra" / "lambda-requirements.txt"
LOCK_HEADER = """\
# The Lambda artifact's runtime dependencies, pinned: `sam build` (infra/build_artifact.py)
# installs exactly these for the template's runtime and architecture, whatever Python runs the
# build. Generated from pyproject.toml's [project] dependencies; after changing them, run
#     python infra/build_artifact.py --lock
# tests/infra/test_artifact_check.py checks that every pin satisfies pyproject's ranges.
"""
PLATFORMS = {
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64"],
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64"],
}
# Distributions that must never be in the artifact: test, lint and typing tools.
FORBIDDEN = re.compile(
    r"^(moto|pytest|_pytest|pytest_socket|hypothesis|cfn_lint|samtranslator|ruff|mypy"
    r"|mypy_boto3_\w+|boto3_stubs|botocore_stubs|types_\w+|\w+-stubs|responses|docker)$",
    re.IGNORECASE,
)
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# What rotor's wheel is built from is a copy of the checkout without these: pip builds a local
# project in place, and setuptools' scratch (build/, rotor.egg-info) in the checkout would be
# shared with any other build of it running at the same time (.ci/run's tests build a wheel
# while `sam build` runs), each deleting the other's files.
NOT_IN_THE_SOURCE_COPY = {".git", ".venv", ".aws-sam", "__pycache__", ".hypothesis"}
NOT_IN_THE_SOURCE_COPY_TOP = {"build", "dist", "tests", "bench", "docs"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--zip", type=Path, default=None, help="also write a zip here")
    parser.add_argument(
        "--lock", action="store_true", help=f"re-resolve {LOCK.name} from pyproject.toml"
    )
    args = parser.parse_args(argv)
    if not (ROOT / "pyproject.toml").is_file():
        print(
            f"build_artifact: no pyproject.toml at {ROOT}: run `sam build` with "
            "--build-in-source (infra/samconfig.toml sets it)",
            file=sys.stderr,
        )
        return 2
    runtime, architecture = declared_runtime()
    if args.lock:
        LOCK.write_text(LOCK_HEADER + resolve(runtime, architecture))
        print(f"lock: {LOCK} for {runtime}/{architecture}")
        return 0
    build(args.out, runtime, architecture)
    problems = check(args.out, runtime, architecture)
    size = tree_size(args.out)
    print(f"artifact: {args.out} for {runtime}/{architecture}: {size / 1e6:.1f} MB unzipped")
    if args.zip:
        write_zip(args.out, args.zip)
        print(f"artifact: {args.zip}: {args.zip.stat().st_size / 1e6:.1f} MB zipped")
    for problem in problems:
        print(f"artifact: FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


def declared_runtime() -> tuple[str, str]:
    """Runtime and architecture of the template's Globals: the build follows the template."""
    text = TEMPLATE.read_text()
    runtime = re.search(r"^\s+Runtime:\s*(python3\.\d+)\s*$", text, re.MULTILINE)
    arch = re.search(r"^\s+Architectures:\s*\[(\w+)\]\s*$", text, re.MULTILINE)
    if not runtime or not arch:
        raise SystemExit("build_artifact: no Runtime/Architectures in the template's Globals")
    return runtime.group(1), arch.group(1)


def handler_modules() -> list[str]:
    """The files of the modules every function's ``Handler`` names (all must be packaged)."""
    handlers = re.findall(r"^\s+Handler:\s*([\w.]+)\.\w+\s*$", TEMPLATE.read_text(), re.MULTILINE)
    return sorted({h.replace(".", "/") + ".py" for h in handlers})


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def _target(runtime: str, architecture: str) -> list[str]:
    """pip's options for wheels of the template's runtime and architecture, binaries only."""
    return [
        *[f"--platform={p}" for p in PLATFORMS[architecture]],
        f"--python-version={runtime.removeprefix('python')}",
        "--implementation=cp",
        "--only-binary=:all:",
    ]


def build(out: Path, runtime: str, architecture: str) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        source, wheels = Path(scratch) / "source", Path(scratch) / "wheels"
        copy_source(source)
        wheels.mkdir()
        subprocess.run([*_pip(), "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True)
        (wheel,) = Path(wheels).glob("rotor-*.whl")
        # Every locked version is installed as a requirement (not a mere constraint), so pip
        # resolves nothing of its own; a dependency missing from the lock would still be
        # pulled in, and check() then fails on it.
        subprocess.run(
            [
                *_pip(),
                "install",
                "--target",
                str(out),
                *_target(runtime, architecture),
                "--upgrade",
                "--no-warn-conflicts",  # the build Python's own packages are not the artifact's
                f"--requirement={LOCK}",
                str(wheel),
            ],
            check=True,
        )
    shutil.rmtree(out / "bin", ignore_errors=True)
    for stubs in out.glob("*-stubs"):  # typing-only packages some wheels ship (wrapt-stubs)
        shutil.rmtree(stubs)
    for cache in out.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def copy_source(target: Path) -> None:
    """The checkout as rotor's wheel needs it, at ``target``: symbolic links stay links (the
    packaged template links into infra/, which is copied too)."""

    def ignored(directory: str, names: list[str]) -> set[str]:
        skip = {
            n for n in names if n in NOT_IN_THE_SOURCE_COPY or n.endswith(("_cache", ".egg-info"))
        }
        if Path(directory).resolve() == ROOT:
            skip |= NOT_IN_THE_SOURCE_COPY_TOP.intersection(names)
        return skip

    shutil.copytree(ROOT, target, symlinks=True, ignore=ignored)


def resolve(runtime: str, architecture: str) -> str:
    """pyproject's runtime dependencies resolved for the target, one ``name==version`` a line."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(
            [
                *_pip(),
                "install",
                "--dry-run",
                "--ignore-installed",
                f"--report={report}",
                "--target",
                str(Path(scratch) / "target"),
                *_target(runtime, architecture),
                *project["dependencies"],
            ],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    pins = {_name(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def locked() -> dict[str, str]:
    """The lock as {normalised name: version}."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_name(name.split("[")[0])] = version.strip()
    return pins


def _name(name: str) -> str:
    """A distribution name as PEP 503 normalises it (pydantic_core: pydantic-core)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check(out: Path, runtime: str, architecture: str) -> list[str]:
    """What would make the artifact wrong for the template, as a list of problems."""
    problems = []
    top = {p.name for p in out.iterdir()} | {p.name.split("-")[0] for p in out.iterdir()}
    forbidden = sorted(name for name in top if FORBIDDEN.match(name))
    if forbidden:
        problems.append(f"test or typing packages in the artifact: {', '.join(forbidden)}")
    for module in [*handler_modules(), "orchestration/__init__.py"]:
        if not (out / module).is_file():
            problems.append(f"missing {module}")
    pins = locked()
    for dist in sorted(out.glob("*.dist-info")):
        name, version = dist.name.removesuffix(".dist-info").rsplit("-", 1)
        if _name(name) == "rotor":
            continue
        if _name(name) not in pins:
            problems.append(f"{name} {version} is not in {LOCK.name}: run --lock")
        elif pins[_name(name)] != version:
            problems.append(f"{name} {version}, but {LOCK.name} pins {pins[_name(name)]}")
    shipped = out / "orchestration" / "events" / "template.yaml"
    if not shipped.is_file() or shipped.is_symlink():
        problems.append("the routing template is not packaged as a file")
    elif not filecmp.cmp(shipped, TEMPLATE, shallow=False):
        problems.append("the packaged template differs from infra/template.yaml")
    tag = runtime.removeprefix("python").replace(".", "")
    machine = "aarch64" if architecture == "arm64" else "x86_64"
    extensions = [p for p in out.rglob("*.so") if "cpython" in p.name]
    wrong = [p.name for p in extensions if f"cpython-{tag}-{machine}" not in p.name]
    if wrong:
        problems.append(f"native extensions for another Python or machine: {wrong[:5]}")
    if not any("pydantic_core" in str(p) for p in extensions):
        problems.append("no pydantic_core extension: pydantic cannot import")
    if tree_size(out) > LAMBDA_UNZIPPED_LIMIT:
        problems.append("over Lambda's 250 MB unzipped limit")
    return problems


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_zip(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(source))


if __name__ == "__main__":
    raise SystemExit(main())
