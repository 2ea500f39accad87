"""The embedded engine's modules import one another one way only (ARCHITECTURE: "Inside the
layers"): no import cycle involves `anyiii._engine`, not even under `TYPE_CHECKING`.

The graph is read from every module's source (all imports, including those in
`if TYPE_CHECKING:` blocks), so it sees what running the code would not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import anyiii

SOURCE_ROOT = Path(anyiii.__file__).resolve().parents[1]


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package by dotted name: its file, and whether it is a package."""
    modules: dict[str, tuple[Path, bool]] = {}
    for path in (SOURCE_ROOT / "anyiii").rglob("*.py"):
        parts = list(path.relative_to(SOURCE_ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (`from x import y` counts x.y if it is a
    module, else x)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        base = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = node.module or ""
                if node.level:
                    package = base
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    prefix = f"{package}.{node.module}" if node.module else package
                targets = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
            for target in targets:
                found = resolve(target)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_involves_the_engine() -> None:
    engine_cycles = [
        sorted(c) for c in cycles(import_graph()) if any(m.startswith("anyiii._engine") for m in c)
    ]
    assert engine_cycles == []


def test_the_check_finds_a_cycle() -> None:
    """Guard against a check that passes vacuously."""
    graph = import_graph()
    graph["anyiii._engine.tables"].add("anyiii._engine.router")
    assert {"anyiii._engine.router", "anyiii._engine.tables"} <= set().union(*cycles(graph))


def test_the_builtins_do_not_import_the_router() -> None:
    assert "anyiii._engine.router" not in import_graph()["anyiii._engine.builtins"]
