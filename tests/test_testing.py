"""`anyiii.testing`: the docs example passes under pytest, on asyncio and on trio, and an
engine's in-memory connections live no longer than the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import anyiii
from anyiii.testing import running_engine
from test_docs_examples import DOCS, EXAMPLE

PAGE = DOCS / "testing.md"
SOURCE_ROOT = Path(anyiii.__file__).resolve().parents[1]


def _example_module() -> str:
    """The page's test module: the Python block that defines tests with `running_engine`."""
    blocks = [m.group(1) for m in EXAMPLE.finditer(PAGE.read_text())]
    modules = [b for b in blocks if "running_engine" in b and "def test_" in b]
    assert len(modules) == 1, "docs/testing.md should have exactly one example test module"
    return modules[0]


def test_the_example_tests_both_transports() -> None:
    source = _example_module()
    assert "anyiii.connect(engine.url)" in source
    assert "engine.memory_transport_opener()" in source


def _run_user_pytest(tmp_path: Path, name: str, source: str, *args: str) -> str:
    """Run `source` as the test module `name` with pytest, as a user would; its output.

    The package under test comes from whichever checkout this is; the module runs in its
    own directory so that this project's pytest configuration does not apply to it.
    """
    (tmp_path / name).write_text(source)
    command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        [*command, *args, name],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_docs_example_passes(backend: str, tmp_path: Path) -> None:
    """Run the page's module with pytest, selecting one backend's tests."""
    output = _run_user_pytest(tmp_path, "test_greetings.py", _example_module(), "-k", backend)
    assert "2 passed" in output, output


def _plugin_example_module() -> str:
    """The page's test module that uses the pytest plugin's fixtures."""
    blocks = [m.group(1) for m in EXAMPLE.finditer(PAGE.read_text())]
    modules = [b for b in blocks if "iii_worker" in b and "def test_" in b]
    assert len(modules) == 1, "docs/testing.md should have one example of the plugin"
    return modules[0]


def test_the_plugin_example_passes(tmp_path: Path) -> None:
    """`pytest -p anyiii.testing` on the page's module: three tests pass."""
    output = _run_user_pytest(
        tmp_path, "test_pricing.py", _plugin_example_module(), "-p", "anyiii.testing"
    )
    assert "3 passed" in output, output


async def test_running_engine_listens_on_free_loopback_ports() -> None:
    async with running_engine() as engine, running_engine(http_port=None) as other:
        assert engine.host == other.host == "127.0.0.1"
        assert engine.port not in (0, other.port)
        assert engine.http_url is not None
        assert other.http_url is None


async def test_memory_connections_end_with_the_engine() -> None:
    """Leaving the engine's block closes an in-memory connection a worker still holds."""
    connected = anyio.Event()
    closed = anyio.Event()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            async with running_engine(http_port=None) as engine:
                opener = engine.memory_transport_opener()

                async def worker() -> None:
                    try:
                        async with anyiii.connect(
                            "ws://memory", transport=opener, reconnect=False
                        ) as connected_worker:
                            connected.set()
                            await connected_worker.serve_forever()
                    except anyiii.ConnectionClosed:
                        closed.set()  # any other ending fails the task group, and the test

                tasks.start_soon(worker)
                await connected.wait()
                assert engine.worker_count == 1
            await closed.wait()
            assert engine.worker_count == 0


async def test_the_opener_refuses_once_the_engine_has_stopped() -> None:
    async with running_engine(http_port=None) as engine:
        opener = engine.memory_transport_opener()
    with pytest.raises(anyiii.ConnectError, match="not running"):
        async with opener():
            pass
