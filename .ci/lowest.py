"""Print the declared lowest versions as pip requirements (``name==X`` for each ``name>=X``).

CI installs them once in a second environment and runs the unit tests against them, so every
lower bound in pyproject.toml is one the code is known to work with. Tools that only lint or
type-check (ruff, mypy, stubs) or check the SAM template (cfn-lint, aws-sam-translator,
policy_sentry, run by the infra step) are left out: the unit tests do not use them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

SKIP = {
    "rotor",
    "ruff",
    "mypy",
    "boto3-stubs",
    "types-pyyaml",
    "cfn-lint",
    "aws-sam-translator",
    "policy_sentry",
}
project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
    "project"
]
requirements = [*project["dependencies"]]
for name, extra in project.get("optional-dependencies", {}).items():
    if name != "bench":  # the benchmarks' plot: no test runs it
        requirements += extra
pins: set[str] = set()
for requirement in requirements:
    match = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)", requirement)
    if match and match.group(1).lower() not in SKIP:
        pins.add(f"{match.group(1).lower()}{match.group(2) or ''}=={match.group(3)}")
print("\n".join(sorted(pins)))
