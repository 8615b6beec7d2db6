"""Imports flow one way (/work/shared/STYLE.md "The shape of the project", issue 17):
service -> workers -> objectives -> search_space between packages, and inside service:
entry points -> app -> api (routers, dashboard) -> domain -> state -> store / db. Every import
is read with `ast`, including those inside functions, so a lazy import cannot hide a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("search_space", "objectives", "workers", "service")  # each may import the earlier
FRAMEWORK = ("fastapi", "starlette")

# Inside service/: a module may import modules of its own rank or lower, never higher.
SERVICE_RANKS: dict[str, int] = {
    "service.cli": 6, "service.serve_cmd": 6, "service.search_cmd": 6,
    "service.app": 5,
    "service.api": 4, "service.dashboard": 4,
    "service.domain": 3,
    "service.state": 2, "service.runner": 2, "service.worker": 2, "service.train_worker": 2,
    "service.store": 1, "service.views": 1, "service.promotion": 1,
    "service.db": 0, "service.settings": 0, "service.errors": 0, "service.migrations": 0,
}
NO_FRAMEWORK = ("service.domain", "service.state", "service.store", "service.views",
                "service.promotion", "service.db", "service.errors", "service.runner")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


FILES = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    return {name: {m for m in _imports(path) if m in FILES} for name, path in FILES.items()}


GRAPH = _graph()


def _rank(module: str) -> int:
    best = max((k for k in SERVICE_RANKS if module == k or module.startswith(k + ".")),
               key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} has no rank in SERVICE_RANKS: give it one")
    return SERVICE_RANKS[best]


def test_the_graph_is_read() -> None:
    # guards the test itself: a parse that found nothing would pass every check below
    assert "service.domain" in GRAPH["service.api.studies"]
    assert "search_space.arch" in GRAPH["objectives.cost"]
    assert len(GRAPH) > 60


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_packages_import_only_downwards(module: str) -> None:
    own = PACKAGES.index(module.split(".")[0])
    upward = [m for m in GRAPH[module] if PACKAGES.index(m.split(".")[0]) > own]
    assert not upward, f"{module} imports {upward}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("service.")))
def test_service_layers(module: str) -> None:
    rank = _rank(module)
    upward = [m for m in GRAPH[module] if m.startswith("service.") and _rank(m) > rank]
    assert not upward, f"{module} (rank {rank}) imports {upward}"


@pytest.mark.parametrize("module", NO_FRAMEWORK)
def test_the_domain_and_below_know_nothing_of_http(module: str) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    framework = [m for m in _imports(path) if m.split(".")[0] in FRAMEWORK]
    assert not framework, f"{module} imports {framework}"


def test_no_import_cycle_inside_service() -> None:
    graph = {m: {d for d in deps if d.startswith("service.")}
             for m, deps in GRAPH.items() if m.startswith("service.")}
    # a module imports its package's __init__ implicitly: not an edge of the design
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep] if dep in path else [node, dep]
                raise AssertionError(" -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


# The analytic models are the check on the torch modules, so they must not be built from them:
# the block types' declarations (and everything they import in the repo) and the cost and CDG
# models import no torch (issue 18; docs/development.md "Adding a block type").
TORCH_FREE = sorted(
    {m for m in GRAPH if m.startswith("search_space.block_types")}
    | {"objectives.cost", "objectives.cdg"}
)


def _closure(module: str) -> set[str]:
    """`module` and the repo modules it imports, transitively, except through a package's
    `__init__` it names only as the parent of a submodule (`from search_space import x` imports
    `search_space`, whose own imports are not `x`'s)."""
    seen, todo = {module}, [module]
    while todo:
        for dep in GRAPH[todo.pop()]:
            if dep not in seen and dep.startswith("search_space.block_types"):
                seen.add(dep)
                todo.append(dep)
    return seen


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_analytic_models_import_no_torch(module: str) -> None:
    assert "search_space.block_types.spec" in GRAPH["search_space.block_types.clc"]  # guard
    closure = _closure(module)
    torch = sorted(
        (m, dep) for m in closure for dep in _imports(FILES[m]) if dep.split(".")[0] == "torch"
    )
    assert not torch, f"{module} reaches torch: {torch}"


@pytest.mark.parametrize("path", sorted((ROOT / "service").rglob("*.py")), ids=str)
def test_service_modules_stay_short(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 330, f"{path.relative_to(ROOT)} has {lines} lines; split it"
