"""The sans-IO core must not depend on any I/O library (ARCHITECTURE: layers)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import anyiii

PACKAGE_DIR = Path(anyiii.__file__).parent

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


def test_protocol_core_imports_without_io_libraries() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    count = int(completed.stdout.split()[0])
    assert count >= 8  # frames, state, events, connection, worker, engine, registry, ids...


def test_the_probe_really_blocks() -> None:
    """Guard against a probe that passes vacuously: a module importing anyio must fail."""
    probe = PROBE.replace(
        'core = importlib.import_module("anyiii._protocol")', "import anyio  # must fail\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    assert "anyio is blocked" in completed.stderr
