"""The engine and the worker of the `http` trigger tests (`test_http_trigger*.py`).

`http_engine` runs an engine with its HTTP listener; `served` connects a raw-transport
worker (`RawWorker`) with a set of routes bound, whose handlers record the
`invokefunction` frames they receive.

Every engine here is followed by `gc.collect()`, so that a listener socket the engine
fails to close shows up (as a ResourceWarning, an error under this suite's settings) in the
test that leaked it instead of in whichever test the garbage collector happens to run in.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from engine_peers import Fail, RawWorker, http_binding, raw_worker

from anyiii.engine import EmbeddedEngine, EngineSettings, HttpLimits, run


@asynccontextmanager
async def http_engine(limits: HttpLimits | None = None) -> AsyncIterator[EmbeddedEngine]:
    settings = EngineSettings(http=limits or HttpLimits())
    try:
        async with run(settings=settings) as engine:
            assert engine.http_url is not None
            yield engine
    finally:
        gc.collect()


@asynccontextmanager
async def served(
    engine: EmbeddedEngine,
) -> AsyncIterator[tuple[RawWorker, list[dict[str, Any]], anyio.Event]]:
    """A raw worker with the routes below bound. Yields (worker, the `invokefunction`
    frames its HTTP handlers received, the event that lets `http::slow` answer)."""
    seen: list[dict[str, Any]] = []
    release = anyio.Event()

    async def user(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        return {"status_code": 200, "body": {"id": frame["data"]["path_params"].get("id")}}

    async def respond(frame: dict[str, Any]) -> Any:
        """Answers with whatever the request's JSON body says under "result"."""
        seen.append(frame)
        return frame["data"]["body"]["result"]

    async def record(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        return {"body": {"seen": True}}

    async def fail(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        raise Fail("custom_code", "it broke")

    async def hang(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        await anyio.sleep_forever()

    async def slow(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        await release.wait()
        return {"status_code": 201}

    functions = {
        "http::user": user,
        "http::respond": respond,
        "http::record": record,
        "http::fail": fail,
        "http::hang": hang,
        "http::slow": slow,
    }
    routes = [
        http_binding("http::user", "users/:id", "GET", metadata={"route": "users"}),
        http_binding("http::record", "/orders/:order_id/items/:item", "get"),
        http_binding("http::record", "echo", "POST"),
        http_binding("http::respond", "respond", "POST"),
        http_binding("http::fail", "fail"),
        http_binding("http::hang", "hang"),
        http_binding("http::slow", "slow"),
        http_binding("http::user", "users/:id", "HEAD"),
    ]
    async with raw_worker(engine.url, "http-worker", functions, routes) as worker:
        yield worker, seen, release
