"""Helpers for testing code that runs on iii: an embedded engine per test, on free ports.

    async with running_engine() as engine:
        async with anyiii.connect(engine.url) as worker:                  # over a socket
            ...
        opener = engine.memory_transport_opener()
        async with anyiii.connect("ws://memory", transport=opener) as worker:  # in memory
            ...

Both work under asyncio and trio. See `docs/testing.md`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ._engine import EmbeddedEngine, EngineSettings, run

__all__ = ["running_engine"]


@asynccontextmanager
async def running_engine(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    http_port: int | None = 0,
    settings: EngineSettings | None = None,
) -> AsyncIterator[EmbeddedEngine]:
    """Run an embedded engine for the duration of the `async with` block; yields it.

    The defaults suit tests: the loopback address, and free ports for workers and `http`
    triggers, so tests may run in parallel. The options are `anyiii.engine.run()`'s:
    `http_port=None` turns the REST listener off, `settings=EngineSettings(...)` sets
    limits and timeouts. Workers connect to `engine.url` over a socket, or in memory with
    `engine.memory_transport_opener()`. Leaving the block stops the engine and every
    connection to it, as `anyiii.engine.run()` does.
    """
    async with run(host, port, http_port, settings=settings) as engine:
        yield engine


# --- the pytest plugin (`pytest -p anyiii.testing`) -----------------------------------------
#
# Fixtures for tests of code built on iii, run by anyio's pytest plugin on the backends the
# test's `anyio_backend` names. Defined only when pytest is importable, so `anyiii.testing`
# imports without it.

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a test-time dependency
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    from ._functions import Client, Registry
    from ._worker import Worker, connect

    @pytest.fixture
    async def iii_engine() -> AsyncIterator[EmbeddedEngine]:
        """An embedded engine on free loopback ports for the test."""
        async with running_engine() as engine:
            yield engine

    @pytest.fixture
    def iii_registry() -> Registry | None:
        """The registry `iii_worker` serves: override it in your conftest.py or module
        (`@pytest.fixture def iii_registry(): return my_registry`)."""
        return None

    @pytest.fixture
    async def iii_worker(
        iii_engine: EmbeddedEngine, iii_registry: Registry | None
    ) -> AsyncIterator[Worker]:
        """A worker connected to `iii_engine`, serving `iii_registry` (once the engine has
        applied its registrations); function handles called in the test go through it."""
        async with connect(iii_engine.url, registry=iii_registry) as worker:
            await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            yield worker

    @pytest.fixture
    async def iii_client(iii_engine: EmbeddedEngine) -> AsyncIterator[Client]:
        """A `Client` of `iii_engine`: a connection that serves nothing."""
        async with Client(iii_engine.url) as client:
            yield client
