"""Build the Lambda artifact of infra/template.yaml without Docker and without its Python.

pip installs wheels for another Python version and platform, so a laptop or CI machine with
Python 3.11 on x86_64 builds the python3.12/arm64 package the template declares: rotor's own
wheel plus its runtime dependencies (``[project] dependencies`` of pyproject.toml), binary
wheels only, and nothing else (no moto, pytest or type stubs). Then it checks what it built and
prints the size.

    python infra/build_artifact.py --out build/lambda --zip build/rotor-lambda.zip

``sam build`` runs it through infra/Makefile (``BuildMethod: makefile``) with
``--out $(ARTIFACTS_DIR)``.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--zip", type=Path, default=None, help="also write a zip here")
    args = parser.parse_args(argv)
    if not (ROOT / "pyproject.toml").is_file():
        print(
            f"build_artifact: no pyproject.toml at {ROOT}: run `sam build` with "
            "--build-in-source (infra/samconfig.toml sets it)",
            file=sys.stderr,
        )
        return 2
    runtime, architecture = declared_runtime()
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


def build(out: Path, runtime: str, architecture: str) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    version = runtime.removeprefix("python")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    with tempfile.TemporaryDirectory() as wheels:
        subprocess.run([*pip, "wheel", "--no-deps", "-w", wheels, str(ROOT)], check=True)
        (wheel,) = Path(wheels).glob("rotor-*.whl")
        constraints = Path(wheels) / "constraints.txt"
        constraints.write_text(tested_versions(pip))
        platforms = [f"--platform={p}" for p in PLATFORMS[architecture]]
        subprocess.run(
            [
                *pip,
                "install",
                "--target",
                str(out),
                *platforms,
                f"--python-version={version}",
                "--implementation=cp",
                "--only-binary=:all:",
                "--upgrade",
                f"--constraint={constraints}",
                "--no-warn-conflicts",  # the build venv's own tools are not the artifact's
                str(wheel),
            ],
            check=True,
        )
    shutil.rmtree(out / "bin", ignore_errors=True)
    for stubs in out.glob("*-stubs"):  # typing-only packages some wheels ship (wrapt-stubs)
        shutil.rmtree(stubs)
    for cache in out.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def tested_versions(pip: list[str]) -> str:
    """The versions installed where this runs (the ones the tests ran against), as pip
    constraints: the artifact holds the same dependency versions, not whatever is newest."""
    frozen = subprocess.run(
        [*pip, "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    return "\n".join(line for line in frozen.splitlines() if "==" in line) + "\n"


def check(out: Path, runtime: str, architecture: str) -> list[str]:
    """What would make the artifact wrong for the template, as a list of problems."""
    problems = []
    top = {p.name for p in out.iterdir()} | {p.name.split("-")[0] for p in out.iterdir()}
    forbidden = sorted(name for name in top if FORBIDDEN.match(name))
    if forbidden:
        problems.append(f"test or typing packages in the artifact: {', '.join(forbidden)}")
    for handler in ("handlers/rotation.py", "handlers/alarms.py", "orchestration/__init__.py"):
        if not (out / handler).is_file():
            problems.append(f"missing {handler}")
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
