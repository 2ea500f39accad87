"""The layers of `anyiii`, the imports allowed between them, and the checker that reads them.

The rule table (`LAYERS`, `RULES`) says which layer every module of `src/anyiii` is in and
which imports between layers are forbidden. The checker builds the import graph of a
package tree by AST (module-level imports, imports under `if TYPE_CHECKING:`,
function-local ones, relative ones resolved) and reports what breaks a rule, modules in no
layer or in several, and import cycles. Type-only imports count because they are real
design dependencies: the next refactor that needs the name at run time turns them into
run-time imports. `test_layering.py` runs the checks on the real package;
`test_layering_checks.py` proves each of them can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# --- the layer table --------------------------------------------------------------------------
#
# Module patterns: "a.b" is that module only; "a.b.*" is package `a.b` and every module in it.
# Every module of src/anyiii must fall in exactly one layer (test_every_module_has_one_layer),
# so a new top-level module or sub-package has to be placed here before the suite passes.

#: The public face: what users import (`anyiii`, `anyiii.engine`, `anyiii.blocking`) or run
#: (`python -m anyiii`, the CLI, `anyiii.run`, the demo, the API-reference generator). It may
#: import every layer below; nothing below may import it.
FACE: Final = (
    "anyiii",
    "anyiii.__main__",
    "anyiii.cli",
    "anyiii.blocking",
    "anyiii._blocking_options",
    "anyiii.engine",
    "anyiii._run",
    "anyiii._demo",
    "anyiii._apidoc",
    "anyiii._docgen",
    "anyiii._serve",
    "anyiii.testing",
)
#: Leaf helpers any layer may use: the exception types, the version string, small anyio
#: tools.
SHARED: Final = (
    "anyiii._errors",
    "anyiii._version",
    "anyiii._concurrency",
    "anyiii._loops",
)
#: The sans-IO protocol core: frames, the connection state machines, codes, ids.
PROTOCOL: Final = ("anyiii._protocol.*",)
#: Byte transports: WebSocket client and server, in-memory pairs.
TRANSPORT: Final = ("anyiii._transport.*",)
#: The worker runtime (what `anyiii.connect` returns).
WORKER: Final = ("anyiii._worker.*",)
#: The embedded engine (what `anyiii.engine.run` starts).
ENGINE: Final = ("anyiii._engine.*",)
#: The Dispatch-style function model, on top of the worker runtime.
FUNCTIONS: Final = ("anyiii._functions.*",)
#: Typed clients of the engine's services, on top of the worker runtime.
SERVICES: Final = ("anyiii._services.*",)
#: Each upper layer's package module: the one door the face may use into that layer.
LAYER_DOORS: Final = (
    "anyiii._worker",
    "anyiii._engine",
    "anyiii._transport",
    "anyiii._functions",
    "anyiii._services",
)

LAYERS: Final[Mapping[str, tuple[str, ...]]] = {
    "face": FACE,
    "shared": SHARED,
    "protocol": PROTOCOL,
    "transport": TRANSPORT,
    "worker": WORKER,
    "engine": ENGINE,
    "functions": FUNCTIONS,
    "services": SERVICES,
}

#: Libraries that do I/O or run an event loop (the same list as the probe's, plus h11).
IO_LIBRARIES: Final = tuple(
    f"{name}.*"
    for name in (
        "anyio",
        "trio",
        "asyncio",
        "sniffio",
        "httpx",
        "httpx_ws",
        "websockets",
        "h11",
        "socket",
        "ssl",
        "selectors",
    )
)


@dataclass(frozen=True)
class Rule:
    """Modules matching `importers` must not import a module matching `forbidden`, unless
    that module also matches `allowed`."""

    name: str
    importers: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()


RULES: Final = (
    # The protocol core is sans-IO: it runs, and is tested, without an event loop or socket.
    Rule("protocol-is-sans-io", PROTOCOL, IO_LIBRARIES),
    # ...and self-contained: its one anyiii dependency is the error types it raises.
    Rule("protocol-stands-alone", PROTOCOL, ("anyiii.*",), allowed=(*PROTOCOL, "anyiii._errors")),
    # Transports move bytes and know nothing of the worker or engine running over them.
    Rule(
        "transport-below-worker-and-engine",
        TRANSPORT,
        (*WORKER, *ENGINE, *FUNCTIONS, *SERVICES),
    ),
    # The worker runtime and the embedded engine are peers that meet only on the wire.
    Rule("worker-not-engine", WORKER, (*ENGINE, *FUNCTIONS, *SERVICES)),
    Rule("engine-not-worker", ENGINE, (*WORKER, *FUNCTIONS, *SERVICES)),
    # The function model sits on the worker runtime and enters it only through its package;
    # it never reaches the engine (it talks to any engine through a worker).
    Rule(
        "functions-on-the-worker-door",
        FUNCTIONS,
        (*WORKER, *ENGINE, *TRANSPORT),
        allowed=("anyiii._worker",),
    ),
    # The service clients, likewise: calls through a worker, never the engine's modules
    # (the wire shapes are the contract), nor the function model.
    Rule(
        "services-on-the-worker-door",
        SERVICES,
        (*WORKER, *ENGINE, *TRANSPORT, *FUNCTIONS),
        allowed=("anyiii._worker",),
    ),
    # The face re-exports the layers, so a layer importing it is a cycle through __init__.
    Rule(
        "nothing-below-imports-the-face",
        (*SHARED, *PROTOCOL, *TRANSPORT, *WORKER, *ENGINE, *FUNCTIONS, *SERVICES),
        FACE,
    ),
    # The face enters the worker, engine and transport layers only through their packages,
    # which list what each layer offers; a layer's modules can then move freely inside it.
    Rule(
        "face-uses-layer-doors",
        FACE,
        (*WORKER, *ENGINE, *TRANSPORT, *FUNCTIONS, *SERVICES),
        allowed=LAYER_DOORS,
    ),
    # Shared helpers are leaves: every layer imports them, so they import no layer.
    Rule("shared-helpers-are-leaves", SHARED, ("anyiii.*",), allowed=SHARED),
)


# --- the import graph -------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One module named by one import statement."""

    importer: str
    target: str
    line: int
    statement: str

    def __str__(self) -> str:
        return f"{self.importer} line {self.line}: `{self.statement}` imports {self.target}"


@dataclass(frozen=True)
class Graph:
    """The modules of a package tree and every import written in them."""

    modules: frozenset[str]
    imports: tuple[Import, ...]


def matches(module: str, patterns: Iterable[str]) -> bool:
    """Whether `module` matches one of `patterns` (see the layer table for the syntax)."""
    for pattern in patterns:
        if pattern.endswith(".*"):
            package = pattern.removesuffix(".*")
            if module == package or module.startswith(package + "."):
                return True
        elif module == pattern:
            return True
    return False


def _base_of(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` statement imports from."""
    if node.level == 0:
        assert node.module is not None
        return node.module
    # A relative import counts from the package the module is in (for an __init__, the
    # package itself), one level up per extra dot.
    parts = (module if is_package else module.rpartition(".")[0]).split(".")
    up = node.level - 1
    assert up < len(parts), f"{module}: relative import beyond the top-level package"
    base = ".".join(parts[: len(parts) - up])
    return f"{base}.{node.module}" if node.module else base


def build_graph(package_dir: Path) -> Graph:
    """Parse every module under `package_dir` and collect every import statement in it.

    `ast.walk` visits the whole tree, so imports under `if TYPE_CHECKING:`, in functions
    and in `try` blocks all count. `from p import x` names module `p.x` when that is a
    module of the tree, else `p` itself. Importing a submodule also runs its parents'
    `__init__`, but that edge is left out on purpose: every module would then depend on
    the face (`anyiii/__init__.py`), and the rules are about what the code itself asks for.
    """
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    imports: list[Import] = []
    for module, (path, is_package) in found.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _base_of(node, module, is_package)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in found else base)
            statement = ast.unparse(node) if targets else ""
            for target in dict.fromkeys(targets):  # one edge per module, in order
                imports.append(Import(module, target, getattr(node, "lineno", 0), statement))
    return Graph(frozenset(found), tuple(imports))


# --- the checks -------------------------------------------------------------------------------


def violations(rule: Rule, graph: Graph) -> list[Import]:
    """The imports of `graph` that break `rule`."""
    return [
        imp
        for imp in graph.imports
        if matches(imp.importer, rule.importers)
        and matches(imp.target, rule.forbidden)
        and not matches(imp.target, rule.allowed)
    ]


def unplaced(graph: Graph) -> dict[str, list[str]]:
    """Modules in no layer or in several, with the layers they fall in."""
    placed = {
        module: [name for name, patterns in LAYERS.items() if matches(module, patterns)]
        for module in sorted(graph.modules)
    }
    return {module: layers for module, layers in placed.items() if len(layers) != 1}


def cycles(graph: Graph) -> list[list[Import]]:
    """The import cycles of `graph`: for each group of modules that (transitively) import
    each other, the imports within the group. Tarjan's strongly connected components."""
    edges: dict[str, list[str]] = {module: [] for module in graph.modules}
    for imp in graph.imports:
        if imp.target in graph.modules:
            edges[imp.importer].append(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:  # `module` is the root of a component: pop it
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            groups.append(group)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    found = []
    for group in groups:
        within = [imp for imp in graph.imports if imp.importer in group and imp.target in group]
        if len(group) > 1 or within:  # a single module counts only if it imports itself
            found.append(within)
    return found


def describe(found: Iterable[Import]) -> str:
    return "\n".join(f"  {imp}" for imp in found)
