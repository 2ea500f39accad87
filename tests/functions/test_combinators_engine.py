"""Combinators over real function calls: losers' calls are cancelled, their pending slots
freed at once, and their late answers dropped and counted."""

from __future__ import annotations

import anyio

import anyiii
from anyiii.testing import running_engine


async def test_race_over_calls_frees_the_losers_slot_and_counts_its_late_answer() -> None:
    registry = anyiii.Registry("racing")
    release = anyio.Event()
    slow_started = anyio.Event()

    @registry.function(id="racing::fast")
    async def fast() -> str:
        await slow_started.wait()
        return "fast"

    @registry.function(id="racing::slow")
    async def slow() -> str:
        slow_started.set()
        await release.wait()
        return "slow"

    with anyio.fail_after(20):
        async with (
            running_engine(http_port=None) as engine,
            anyiii.connect(engine.url, registry=registry) as server,
            anyiii.Client(engine.url) as client,
        ):
            await server.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            assert await anyiii.race(slow(), fast()) == "fast"
            assert client.worker.statistics().pending_calls == 0
            results = await anyiii.gather(fast(), anyiii.any(fast(), fast()))
            assert results == ["fast", "fast"]
            release.set()
            # The slow call still answers; nobody waits for it any more.
            while client.worker.statistics().late_results < 1:
                await client.worker.trigger_async(
                    {"function_id": "engine::functions::list", "payload": {}}
                )
            assert client.worker.statistics().late_results == 1
