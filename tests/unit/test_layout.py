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
    # world.py builds the SQS inbox of the embedded world from the shared session.
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
    # isort-style, as ruff keeps it: CONSTANTS, then Classes, then functions.
    kind = lambda n: 0 if n.isupper() else 1 if n[0].isupper() else 2  # noqa: E731
    assert orchestration.__all__ == sorted(orchestration.__all__, key=lambda n: (kind(n), n))


HANDLERS = sorted((ROOT / "handlers").glob("*.py"))
CLI = sorted((ROOT / "orchestration" / "cli").glob("*.py"))


@pytest.mark.parametrize("path", HANDLERS + CLI, ids=lambda p: str(p.relative_to(ROOT)))
def test_handlers_and_the_cli_import_only_the_public_api_of_orchestration(path: Path) -> None:
    """The Lambda entry points and the command line are clients of the domain: they import
    ``orchestration`` (its ``__all__``) and, for the command line, its own package."""
    private = sorted(
        n
        for n in _imports(path)
        if n.startswith("orchestration.") and not n.startswith("orchestration.cli")
    )
    assert private == [], f"{path.name} imports {private}; import them from orchestration"


# Calls that build immutable values, fine at module level.
IMMUTABLE_BUILDERS = {
    "frozenset",
    "re.compile",
    "logging.getLogger",
    "ContextVar",
    "TypeVar",
    "Config",
    "timedelta",
    "BucketLimit",
    "Path",
    "MappingProxyType",
}
MUTABLE_LITERALS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)


def _module_state(source: str) -> list[str]:
    """Module-level names that hold state: instances, empty containers to fill, globals."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            name = ast.unparse(target)
            if name.startswith("__"):
                continue  # __all__ and friends
            value = node.value
            if isinstance(value, ast.Call) and ast.unparse(value.func) not in IMMUTABLE_BUILDERS:
                found.append(name)
            elif isinstance(value, MUTABLE_LITERALS) and not name.isupper():
                found.append(name)  # constants are UPPER_CASE; anything else is a variable
            elif isinstance(value, ast.Dict | ast.List | ast.Set) and not (
                value.keys if isinstance(value, ast.Dict) else value.elts
            ):
                found.append(name)  # an empty container exists only to be filled later
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Global):
            found.extend(node.names)
    return found


@pytest.mark.parametrize("path", ORCHESTRATION, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_level_state_outside_the_composition_root(path: Path) -> None:
    """State lives in the Runtime a handler (or a command) builds, never in a module."""
    assert _module_state(path.read_text()) == [], path.name


@pytest.mark.parametrize(
    "source",
    [
        "_CACHE = TaskDefinitionCache()",
        "_PROCESS_WINDOWS: dict[int, str] = {}",
        "seen = set()",
        "registry = []",
        "def f():\n    global counter\n    counter = 1",
    ],
)
def test_the_state_check_catches_every_form(source: str) -> None:
    assert _module_state(source) != []


def test_the_repository_stands_alone() -> None:
    """A clone has no design notes beside it: nothing may send a reader there."""
    texts = [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".json"}
        and not {".venv", ".git", "node_modules", "build", "dist"} & set(p.parts)
    ]
    pattern = re.compile(r"DESIGN\.md|REFERENCE\.md|STYLE\.md|\.\./shared")
    offenders = [
        str(p.relative_to(ROOT))
        for p in texts
        if p.name != "test_layout.py" and pattern.search(p.read_text(errors="replace"))
    ]
    assert offenders == []


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


# --- layers inside orchestration/ ----------------------------------------------------------


def _package_of(module: str) -> str:
    """``orchestration.fanout.worker`` -> ``fanout``; a top-level module is its own package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<api>"


def _package_imports() -> dict[str, set[str]]:
    """Which packages of orchestration/ import which others (lazy imports included)."""
    edges: dict[str, set[str]] = {}
    for path in ORCHESTRATION:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        mine = _package_of(module)
        for name in _imports(path):
            if name.startswith("orchestration.") and _package_of(name) != mine:
                edges.setdefault(mine, set()).add(_package_of(name))
    return edges


def _edges_in_cycles(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Every import edge that lies on a cycle (both ends in one strongly connected part)."""

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {package: reach(package) for package in edges}
    return {(a, b) for a, targets in edges.items() for b in targets if a in reachable.get(b, set())}


#: The layers of orchestration/, lowest first. A package (or top-level module) imports only
#: from its own layer or a lower one; with no cycle between packages either, the imports form
#: one order. A new package fails until it is given a layer here.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"times", "errors"}),  # words everything uses
    frozenset({"secrets", "aws", "settings"}),  # references, AWS access, configuration
    frozenset({"models", "events", "notifications"}),  # the domain's values, events, notices
    frozenset({"state"}),  # everything rotor remembers: stores and their backends
    frozenset({"ecs", "freshness", "outcome"}),  # ECS adapters, the freshness rule, outcomes
    frozenset({"ports"}),  # what a use case is given (protocols the composition root meets)
    frozenset({"fanout"}),  # the redeploy of one service
    frozenset({"rotation", "reconcile", "tracking", "prerequisites", "indexing"}),  # use cases
    frozenset({"runtime"}),  # the composition root: builds the adapters, imports no use case
    # alarms still takes the composition root itself, so it sits above it (it imports no
    # other use case, and nothing but dispatch imports it).
    frozenset({"alarms"}),
    frozenset({"dispatch"}),  # the per-event path: classify, route to a use case
    frozenset({"<api>"}),  # orchestration/__init__.py, the public API
    frozenset({"cli"}),  # a client of the public API
)


def _layer_of(package: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if package in layer:
            return rank
    raise AssertionError(f"{package} has no layer in LAYERS")


def _imports_up(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Every import edge that runs from a lower layer to a higher one."""
    return {(a, b) for a, targets in edges.items() for b in targets if _layer_of(b) > _layer_of(a)}


def test_every_package_of_orchestration_has_a_layer() -> None:
    packages = {
        _package_of(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
        for p in ORCHESTRATION
    }
    assert sorted(p for p in packages if not any(p in layer for layer in LAYERS)) == []
    assert sorted(set().union(*LAYERS) - packages) == [], "a layer names a package that is gone"


def test_no_import_runs_up_a_layer_inside_orchestration() -> None:
    assert _imports_up(_package_imports()) == set()


def test_no_import_cycle_between_packages_of_orchestration() -> None:
    assert _edges_in_cycles(_package_imports()) == set()


def test_the_layer_check_finds_an_import_up() -> None:
    assert _imports_up({"state": {"times", "fanout"}, "fanout": {"state"}}) == {("state", "fanout")}


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _edges_in_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
    }
