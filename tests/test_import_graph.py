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
    "service.store": 1, "service.views": 1, "service.promotion": 1, "service.lifecycle": 1,
    "service.ray_head": 1,
    "service.db": 0, "service.settings": 0, "service.errors": 0, "service.migrations": 0,
}
NO_FRAMEWORK = ("service.domain", "service.state", "service.store", "service.views",
                "service.promotion", "service.db", "service.errors", "service.runner",
                "service.lifecycle", "service.ray_head")


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


# The analytic models are the check on the torch modules, so they must not be built from them
# (issue 18; docs/development.md "Adding a block type"): the block types' declarations import no
# torch, nor does anything they import in the repo; objectives/cost.py and cdg.py import none
# themselves (they load arches through `search_space`, whose package imports the builder).
BLOCK_TYPES = sorted(m for m in GRAPH if m.startswith("search_space.block_types"))


def _own_deps(module: str) -> set[str]:
    """`module`'s repo imports, less a package it names as the parent of a submodule it imports
    (`from search_space.block_types import cdg_ops` names `search_space.block_types` too): the
    package's own imports are its own, and the block types' package is itself checked here."""
    deps = GRAPH[module]
    return {d for d in deps if not any(o.startswith(d + ".") for o in deps)}


def _closure(module: str) -> set[str]:
    seen, todo = {module}, [module]
    while todo:
        for dep in _own_deps(todo.pop()) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def _torch_imports(modules: set[str]) -> list[tuple[str, str]]:
    return sorted((m, d) for m in modules for d in _imports(FILES[m]) if d.split(".")[0] == "torch")


@pytest.mark.parametrize("module", BLOCK_TYPES)
def test_block_types_reach_no_torch(module: str) -> None:
    assert "search_space.block_types.spec" in GRAPH["search_space.block_types.clc"]  # guard
    assert not _torch_imports(_closure(module)), f"{module} reaches torch"


def test_a_torch_import_below_a_block_type_is_found() -> None:
    """The check above follows imports: a block type importing a torch module is caught."""
    GRAPH["search_space.block_types.conv"].add("search_space.blocks.layers")
    try:
        assert _torch_imports(_closure("search_space.block_types.conv"))
    finally:
        GRAPH["search_space.block_types.conv"].discard("search_space.blocks.layers")


@pytest.mark.parametrize("module", ["objectives.cost", "objectives.cdg"])
def test_the_cost_and_cdg_models_import_no_torch(module: str) -> None:
    assert not _torch_imports({module})
    assert not _torch_imports(_closure(module) & set(BLOCK_TYPES))


@pytest.mark.parametrize("path", sorted((ROOT / "service").rglob("*.py")), ids=str)
def test_service_modules_stay_short(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 330, f"{path.relative_to(ROOT)} has {lines} lines; split it"
