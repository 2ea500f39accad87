"""The layers of `anyiii` and the imports allowed between them.

Two kinds of checks. A subprocess probe imports every module of the sans-IO core
(`anyiii._protocol`) with the I/O libraries blocked, which proves what actually runs. An
AST pass builds the import graph of every module under `src/anyiii` (module-level imports,
imports under `if TYPE_CHECKING:`, function-local ones, relative ones resolved) and checks
it against the rule table below; that catches what the probe cannot: imports that only run
in a function or only for the type checker, and imports between the upper layers. Type-only
imports count because they are real design dependencies: the next refactor that needs the
name at run time turns them into run-time imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

import anyiii

PACKAGE_DIR = Path(anyiii.__file__).parent

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


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(PACKAGE_DIR)


# --- the tree obeys the table -----------------------------------------------------------------


def test_every_module_has_one_layer(graph: Graph) -> None:
    assert len(graph.modules) > 30  # the walk found the package, not an empty directory
    assert not unplaced(graph), f"place these modules in LAYERS: {unplaced(graph)}"


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_layer_rule_holds(rule: Rule, graph: Graph) -> None:
    broken = violations(rule, graph)
    assert not broken, f"{rule.name} is broken by:\n{describe(broken)}"


def test_no_import_cycles(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(
        f"between {', '.join(sorted({imp.importer for imp in cycle}))}:\n{describe(cycle)}"
        for cycle in found
    )


# --- every check can fail ---------------------------------------------------------------------


def instance(pattern: str, *, inside: bool) -> str:
    """A module name matching `pattern`; for "p.*", a module in `p` if `inside`, else `p`."""
    if pattern.endswith(".*"):
        package = pattern.removesuffix(".*")
        return f"{package}.planted" if inside else package
    return pattern


def write_tree(root: Path, sources: Mapping[str, str]) -> Path:
    """A fake package tree under `root` (module name -> source); returns the top package.

    A name that is a top-level name or a prefix of another is written as a package's
    `__init__.py`, any other as a plain module; packages not given get an empty one.
    """
    packages = {
        ".".join(parts[:depth])
        for parts in (module.split(".") for module in sources)
        for depth in range(1, len(parts))
    } | {module for module in sources if "." not in module}
    for package in packages:
        path = root.joinpath(*package.split("."))
        path.mkdir(parents=True, exist_ok=True)
        (path / "__init__.py").touch()
    for module, source in sources.items():
        parts = module.split(".")
        if module in packages:
            path = root.joinpath(*parts, "__init__.py")
        else:
            path = root.joinpath(*parts[:-1], f"{parts[-1]}.py")
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    (top,) = {module.partition(".")[0] for module in sources}
    return root / top


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_rule_reports_a_planted_import(rule: Rule, tmp_path: Path) -> None:
    """Derived from the table, so a new rule is proven to fail without a new test."""
    importer = instance(rule.importers[0], inside=True)
    target = next(
        name
        for name in (
            instance(pattern, inside=inside)
            for pattern in rule.forbidden
            for inside in (False, True)  # a package itself may be allowed, its modules not
        )
        if not matches(name, rule.allowed)
    )
    # Function-local, so this also proves the walk sees imports that only run on a call.
    source = f"def later() -> None:\n    import {target}\n"
    graph = build_graph(write_tree(tmp_path, {importer: source}))
    broken = violations(rule, graph)
    assert broken == [Import(importer, target, 2, f"import {target}")]
    assert str(broken[0]) == f"{importer} line 2: `import {target}` imports {target}"

    clean = build_graph(write_tree(tmp_path / "clean", {importer: "import json\n"}))
    assert violations(rule, clean) == []


def test_a_module_in_no_layer_is_reported(tmp_path: Path) -> None:
    graph = build_graph(
        write_tree(tmp_path, {"anyiii._errors": "", "anyiii.newcomer": "", "anyiii._new.x": ""})
    )
    assert unplaced(graph) == {"anyiii._new": [], "anyiii._new.x": [], "anyiii.newcomer": []}


def test_a_planted_cycle_is_reported(tmp_path: Path) -> None:
    """A cycle closed by a type-only import counts; so does a longer one and a self-import;
    a module imported from two places (a diamond) is no cycle."""
    graph = build_graph(
        write_tree(
            tmp_path,
            {
                "pkg": "",
                "pkg.router": "from . import builtins\n",
                "pkg.builtins": """\
                    from typing import TYPE_CHECKING

                    if TYPE_CHECKING:
                        from .router import Router
                    """,
                "pkg.a": "from pkg import b\n",
                "pkg.b": "import pkg.c\n",
                "pkg.c": "from .a import thing\n",
                "pkg.selfish": "from pkg import selfish\n",
                "pkg.top": "from . import left, right\n",
                "pkg.left": "from .bottom import x\n",
                "pkg.right": "from .bottom import x\n",
                "pkg.bottom": "",
            },
        )
    )
    found = sorted(
        sorted((imp.importer, imp.target, imp.line) for imp in cycle) for cycle in cycles(graph)
    )
    assert found == [
        [("pkg.a", "pkg.b", 1), ("pkg.b", "pkg.c", 1), ("pkg.c", "pkg.a", 1)],
        [("pkg.builtins", "pkg.router", 4), ("pkg.router", "pkg.builtins", 1)],
        [("pkg.selfish", "pkg.selfish", 1)],
    ]


def test_the_graph_resolves_every_import_form(tmp_path: Path) -> None:
    top = write_tree(
        tmp_path,
        {
            "app": "from . import face\nfrom ._layer import thing\n",
            "app.face": "",
            "app._layer": "from .inner import x\nfrom .. import face\n",
            "app._layer.inner": """\
                from typing import TYPE_CHECKING
                from ..face import run
                from . import sibling
                from .sibling import name, other
                if TYPE_CHECKING:
                    from app._layer.deep.leaf import Thing
                def later():
                    import anyio.abc, json
                try:
                    import trio
                except ImportError:
                    pass
                """,
            "app._layer.sibling": "",
            "app._layer.deep.leaf": "from ... import face\nfrom ...face import run\n",
        },
    )
    graph = build_graph(top)
    assert graph.modules == {
        "app",
        "app.face",
        "app._layer",
        "app._layer.inner",
        "app._layer.sibling",
        "app._layer.deep",
        "app._layer.deep.leaf",
    }
    assert sorted((imp.importer, imp.line, imp.target) for imp in graph.imports) == [
        ("app", 1, "app.face"),  # `from . import face` names the module
        ("app", 2, "app._layer"),  # `thing` is not a module: the package itself
        ("app._layer", 1, "app._layer.inner"),
        ("app._layer", 2, "app.face"),  # relative imports in an __init__ count from itself
        ("app._layer.deep.leaf", 1, "app.face"),
        ("app._layer.deep.leaf", 2, "app.face"),
        ("app._layer.inner", 1, "typing"),
        ("app._layer.inner", 2, "app.face"),
        ("app._layer.inner", 3, "app._layer.sibling"),
        ("app._layer.inner", 4, "app._layer.sibling"),  # one edge for two names
        ("app._layer.inner", 6, "app._layer.deep.leaf"),  # under TYPE_CHECKING
        ("app._layer.inner", 8, "anyio.abc"),  # in a function
        ("app._layer.inner", 8, "json"),
        ("app._layer.inner", 10, "trio"),  # in a try block
    ]


# --- the probe: the protocol core really imports without I/O libraries -------------------------

# Runs in a fresh interpreter: block the I/O libraries, stand in for the `anyiii` package
# (so its public __init__, which may import the runtime, is not executed), then import
# every module of `anyiii._protocol`.
PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys, types

    BLOCKED = {"anyio", "trio", "httpx", "httpx_ws", "websockets", "sniffio",
               "asyncio", "socket", "ssl", "selectors"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the protocol core must not import it")
            return None

    for name in list(sys.modules):
        if name.partition(".")[0] in BLOCKED:
            del sys.modules[name]
    sys.meta_path.insert(0, Blocker())

    package = types.ModuleType("anyiii")
    package.__path__ = [sys.argv[1]]
    sys.modules["anyiii"] = package

    core = importlib.import_module("anyiii._protocol")
    names = [m.name for m in pkgutil.iter_modules(core.__path__, "anyiii._protocol.")]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(n for n in sys.modules if n.partition(".")[0] in BLOCKED)
    assert not leaked, leaked
    print(len(names), "modules")
    """
)


def run_probe(source: str) -> subprocess.CompletedProcess[str]:
    """Run a probe script in a fresh interpreter against this checkout's package."""
    return subprocess.run(
        [sys.executable, "-c", source, str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_protocol_core_imports_without_io_libraries() -> None:
    completed = run_probe(PROBE)
    assert completed.returncode == 0, completed.stderr
    count = int(completed.stdout.split()[0])
    assert count >= 8  # frames, state, events, connection, worker, engine, registry, ids...


def test_the_probe_really_blocks() -> None:
    """Guard against a probe that passes vacuously: a module importing anyio must fail."""
    probe = PROBE.replace(
        'core = importlib.import_module("anyiii._protocol")', "import anyio  # must fail\n"
    )
    completed = run_probe(probe)
    assert completed.returncode != 0
    assert "anyio is blocked" in completed.stderr
