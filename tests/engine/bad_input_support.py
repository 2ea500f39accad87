"""The engine and the two parties of the bad-input tests (`test_bad_input_*.py`).

`engine_and_good_worker` runs a real engine with a well-behaved worker ("good", a
`RawWorker`); `abuser` connects a raw client that registers as worker "abuser". After each
abuse the router's tables are checked through the good worker (`engine::workers::list`,
`engine::functions::list`) with `tables_with_abuser` or `tables_without_abuser`, and
`assert_no_junk_dispatched` checks that nothing the abuser sent reached the good worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from engine_peers import (
    RawWorker,
    assert_tables,
    echo,
    encode,
    raw_client,
    raw_worker,
    register_frame,
)

from anyiii._transport import Transport
from anyiii.engine import EmbeddedEngine, EngineSettings, run

GOOD_FUNCTIONS = ["good::echo", "good::hold", "good::on_workers"]


@asynccontextmanager
async def engine_and_good_worker(
    settings: EngineSettings | None = None,
) -> AsyncIterator[tuple[EmbeddedEngine, RawWorker, anyio.Event]]:
    """An engine with the good worker connected; `good::hold` answers once the returned
    event is set."""
    release = anyio.Event()

    async def hold(frame: dict[str, Any]) -> Any:
        await release.wait()
        return {"held": frame["data"]}

    async with (
        run(http_port=None, settings=settings) as engine,
        raw_worker(
            engine.url, "good", {"good::echo": echo, "good::hold": hold}, watch_workers=True
        ) as good,
    ):
        yield engine, good, release


@asynccontextmanager
async def abuser(engine: EmbeddedEngine, good: RawWorker) -> AsyncIterator[tuple[Transport, str]]:
    """A raw connection that registered as worker "abuser" serving `abuser::fn`."""
    async with raw_client(engine.url) as (transport, worker_id):
        await transport.send(encode({"type": "registerfunction", "id": "abuser::fn"}))
        await transport.send(encode(register_frame("abuser")))
        await good.wait_for_worker_event("worker_metadata_updated", worker_id)
        yield transport, worker_id


async def tables_with_abuser(engine: EmbeddedEngine, good: RawWorker) -> None:
    await assert_tables(
        engine,
        good,
        workers=["good", "abuser"],
        functions=[*GOOD_FUNCTIONS, "abuser::fn"],
        connections=2,
    )


async def tables_without_abuser(engine: EmbeddedEngine, good: RawWorker) -> None:
    await assert_tables(engine, good, workers=["good"], functions=GOOD_FUNCTIONS, connections=1)


def assert_no_junk_dispatched(good: RawWorker) -> None:
    junk = [f for f in good.dispatched if isinstance(f["data"], dict) and "junk" in f["data"]]
    assert junk == []


A_UUID = "0b7a9c2e-4f6d-4e1a-9a53-2f8c1d7e6b40"
"""Valid UUID text, for frames that name an invocation."""
