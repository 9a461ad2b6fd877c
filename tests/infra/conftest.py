"""Shared by the infra tests: the templates, parsed the way CloudFormation reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestration.events.routing import load_template

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TEMPLATES = sorted(INFRA.glob("*.yaml"))


def read_template(path: Path) -> dict[str, Any]:
    return load_template(path.read_text())


@pytest.fixture(scope="session")
def stack() -> dict[str, Any]:
    return read_template(INFRA / "template.yaml")
