"""The layers of `anyiii` and the imports allowed between them, checked on the real package.

Two kinds of checks. A subprocess probe imports every module of the sans-IO core
(`anyiii._protocol`) with the I/O libraries blocked, which proves what actually runs. An
AST pass builds the import graph of every module under `src/anyiii` and checks it against
the rule table (both in `layering.py`); that catches what the probe cannot: imports that
only run in a function or only for the type checker, and imports between the upper
layers. `test_layering_checks.py` proves that every check of the graph can fail.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import anyiii
from layering import RULES, Graph, Rule, build_graph, cycles, describe, unplaced, violations

PACKAGE_DIR = Path(anyiii.__file__).parent


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
