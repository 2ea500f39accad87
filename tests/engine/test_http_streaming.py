"""Streamed bodies of the `http` trigger (spec §10.1, §12) over real sockets: the raw body
on the `request_body` channel and answers written to the `response` channel (status,
headers, chunks, server-sent events), read by a real HTTP client (httpx).

The handlers are raw-protocol workers that open the channel ends with anyiii's own client
transport, so what is checked is the engine's side of the wire."""

from __future__ import annotations

import gc
import json
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from engine_peers import http_binding, raw_worker

from anyiii._errors import ConnectionClosed
from anyiii._transport import BinaryMessage, Transport, open_websocket
from anyiii.engine import EmbeddedEngine, EngineSettings, HttpLimits, run

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


@asynccontextmanager
async def engine_with(
    handler: Handler, method: str = "POST", limits: HttpLimits | None = None
) -> AsyncIterator[tuple[EmbeddedEngine, httpx.AsyncClient]]:
    """An engine with `handler` bound to `<method> /stream`, and an HTTP client for it."""
    try:
        async with (
            run(settings=EngineSettings(http=limits or HttpLimits())) as engine,
            raw_worker(
                engine.url,
                "streamer",
                {"http::stream": handler},
                [http_binding("http::stream", "stream", method)],
            ),
            httpx.AsyncClient(base_url=engine.http_url or "", timeout=30) as client,
        ):
            yield engine, client
    finally:
        gc.collect()


def end_url(engine: EmbeddedEngine, ref: dict[str, str]) -> str:
    return (
        f"{engine.url}/ws/channels/{ref['channel_id']}"
        f"?key={ref['access_key']}&dir={ref['direction']}"
    )


async def read_stream(reader: Transport) -> list[bytes]:
    """Every item until the engine closes the channel; it must close it normally."""
    items: list[bytes] = []
    code = None
    try:
        while True:
            items.append(await reader.receive())
    except ConnectionClosed as closed:
        code = closed.code
    assert code == 1000
    return items


async def test_the_request_object_carries_both_channel_refs() -> None:
    seen: list[dict[str, Any]] = []

    async def handler(frame: dict[str, Any]) -> Any:
        seen.append(frame["data"])
        return {"status_code": 200, "body": {}}

    with anyio.fail_after(20):
        async with engine_with(handler) as (_, client):
            assert (await client.post("/stream", json={"a": 1})).status_code == 200
    request = seen[0]
    assert request["body"] == {"a": 1}
    assert request["request_body"]["direction"] == "read"
    assert request["response"]["direction"] == "write"
    assert request["request_body"]["channel_id"] != request["response"]["channel_id"]


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/json"])
async def test_the_raw_body_streams_on_request_body_whatever_its_type(content_type: str) -> None:
    body = json.dumps({"n": list(range(50_000))}).encode()  # ~290 KB: several items

    async def handler(frame: dict[str, Any]) -> Any:
        engine_url = frame["data"]["headers"]["x-engine"]
        async with open_websocket(
            end_url_from(engine_url, frame["data"]["request_body"])
        ) as reader:
            got = b"".join(await read_stream(reader))
        return {
            "status_code": 200,
            "body": {"same": got == body, "parsed": frame["data"]["body"] is not None},
        }

    with anyio.fail_after(20):
        async with engine_with(handler) as (engine, client):
            response = await client.post(
                "/stream",
                content=body,
                headers={"content-type": content_type, "x-engine": engine.url},
            )
    assert response.status_code == 200, response.text
    assert response.json() == {"same": True, "parsed": content_type == "application/json"}


def end_url_from(engine_url: str, ref: dict[str, str]) -> str:
    return (
        f"{engine_url}/ws/channels/{ref['channel_id']}"
        f"?key={ref['access_key']}&dir={ref['direction']}"
    )


async def test_a_handler_answers_on_the_response_channel() -> None:
    async def handler(frame: dict[str, Any]) -> Any:
        engine_url = frame["data"]["headers"]["x-engine"]
        async with open_websocket(end_url_from(engine_url, frame["data"]["response"])) as writer:
            await writer.send(b'{"type":"set_status","status_code":201}')
            await writer.send(
                b'{"type":"set_headers","headers":{"content-type":"text/plain","x-a":"b"}}'
            )
            for part in (b"hello, ", b"streamed ", b"world"):
                await writer.send(BinaryMessage(part))
        return None

    with anyio.fail_after(20):
        async with engine_with(handler) as (engine, client):
            response = await client.post("/stream", headers={"x-engine": engine.url})
    assert response.status_code == 201
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-a"] == "b"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"hello, streamed world"


async def test_server_sent_events_reach_the_client_as_they_are_written() -> None:
    """Each event is read by the client before the handler writes the next one."""
    read_by_client = [anyio.Event() for _ in range(3)]

    async def handler(frame: dict[str, Any]) -> Any:
        engine_url = frame["data"]["headers"]["x-engine"]
        async with open_websocket(end_url_from(engine_url, frame["data"]["response"])) as writer:
            await writer.send(
                b'{"type":"set_headers","headers":{"content-type":"text/event-stream"}}'
            )
            for n, read in enumerate(read_by_client):
                await writer.send(BinaryMessage(b"data: event %d\n\n" % n))
                await read.wait()
        return None

    events: list[str] = []
    with anyio.fail_after(20):
        async with engine_with(handler, "GET") as (engine, client):
            async with client.stream(
                "GET", "/stream", headers={"x-engine": engine.url}
            ) as response:
                assert response.headers["content-type"] == "text/event-stream"
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line.removeprefix("data: "))
                        read_by_client[len(events) - 1].set()
    assert events == ["event 0", "event 1", "event 2"]


async def test_a_null_result_without_the_channel_opened_is_200_empty() -> None:
    async def handler(frame: dict[str, Any]) -> Any:
        return None

    with anyio.fail_after(20):
        async with engine_with(handler) as (_, client):
            response = await client.post("/stream")
    assert response.status_code == 200
    assert response.json() == {}


async def test_a_result_before_any_body_chunk_is_the_answer() -> None:
    """The channel is open and has a status, but no body chunk yet: the handler's
    non-null result arrives first and is the answer (the channel is then ignored)."""
    refs: list[dict[str, str]] = []
    got_request, status_sent, answered = anyio.Event(), anyio.Event(), anyio.Event()

    async def handler(frame: dict[str, Any]) -> Any:
        refs.append(frame["data"]["response"])
        got_request.set()
        await status_sent.wait()
        return {"status_code": 202, "body": {"mapped": True}}

    with anyio.fail_after(20):
        async with engine_with(handler) as (engine, client), anyio.create_task_group() as tasks:

            async def hold_the_channel_open() -> None:
                await got_request.wait()
                async with open_websocket(end_url(engine, refs[0])) as writer:
                    await writer.send(b'{"type":"set_status","status_code":418}')
                    status_sent.set()
                    await answered.wait()

            tasks.start_soon(hold_the_channel_open)
            response = await client.post("/stream")
            answered.set()
    assert response.status_code == 202
    assert response.json() == {"mapped": True}


@pytest.mark.bulk
async def test_a_large_upload_streams_through_with_flat_memory() -> None:
    """256 MiB through a handler that counts it: the engine never holds more than the
    channel's buffer (the process's peak RSS grows by far less than the upload)."""
    size, piece = 256 * 2**20, b"u" * 2**20
    counted: list[int] = []

    async def handler(frame: dict[str, Any]) -> Any:
        engine_url = frame["data"]["headers"]["x-engine"]
        total = 0
        async with open_websocket(
            end_url_from(engine_url, frame["data"]["request_body"])
        ) as reader:
            try:
                while True:
                    total += len(await reader.receive())
            except ConnectionClosed:
                pass
        counted.append(total)
        return {"status_code": 200, "body": {"total": total}}

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with anyio.fail_after(120):
        async with engine_with(handler, limits=HttpLimits(max_body=2**20)) as (engine, client):
            response = await client.post(
                "/stream",
                content=upload(),
                headers={"content-type": "application/octet-stream", "x-engine": engine.url},
            )
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert response.status_code == 200, response.text
    assert counted == [size]
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB for a {size >> 20} MiB upload"
