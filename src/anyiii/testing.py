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
