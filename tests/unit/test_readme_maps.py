"""The README's layout table and module map name every module there is.

A module added to ``handlers/`` or ``orchestration/`` without a line in README.md fails here:
readers find their way by those tables.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _row(first_cell: str) -> str:
    """The README table row whose first cell is ``first_cell`` (backquoted)."""
    match = re.search(rf"^\| `{re.escape(first_cell)}` \|(.*)$", README, re.MULTILINE)
    assert match, f"no README row for {first_cell}"
    return match.group(1)


def test_the_layout_table_lists_every_handler_module() -> None:
    row = _row("handlers/")
    modules = sorted(p.name for p in (ROOT / "handlers").glob("*.py") if p.name != "__init__.py")
    assert len(modules) >= 7
    assert [m for m in modules if f"`{m}`" not in row] == []


def test_the_module_map_lists_every_orchestration_module() -> None:
    package = ROOT / "orchestration"
    missing = []
    for path in sorted(package.rglob("*")):
        if path.suffix not in (".py", ".yaml") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(package)
        if len(relative.parts) == 1:  # a top-level module has a row of its own
            if not re.search(rf"^\| `orchestration/{relative}` \|", README, re.MULTILINE):
                missing.append(str(relative))
        elif relative.name != "__init__.py" or len(relative.parts) > 2:
            row = _row(f"orchestration/{relative.parent}/")
            if f"`{relative.name}`" not in row:
                missing.append(str(relative))
    assert missing == []
