"""Streamed `http` bodies with the official SDKs' channel objects (spec §10.1, §12): an
official worker reads the request body from `request_body` and answers on the `response`
channel (status, headers, two body writes), through the embedded engine, read by httpx;
and answers with server-sent events that reach the client one by one.

Before the embedded engine had channels, the official Python helper failed here with
`KeyError: 'response'` and the client got a 500."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import anyio
import httpx
from interop_support import PROMPT, Peer
from test_official_http_middleware import bind_route

import anyiii.engine


async def test_an_official_worker_streams_the_request_and_the_response(
    peer: Peer, tmp_path: Path
) -> None:
    with anyio.fail_after(45):
        async with (
            anyiii.engine.run(host="127.0.0.1", port=0, http_port=0) as engine,
            peer.start(engine.url, tmp_path) as official,
            httpx.AsyncClient(base_url=engine.http_url or "", timeout=PROMPT) as client,
        ):
            path = f"{peer.prefix}/stream"
            await bind_route(engine, official, peer.function_id("stream"), path)
            response = await client.request(
                "GET", f"/{path}", content=b"raw bytes \x00\xff", headers={"content-type": "x/y"}
            )
            assert response.status_code == 201, response.text
            assert response.headers["content-type"] == "text/plain"
            assert response.headers["x-worker"] == peer.name
            assert response.content == b"got raw bytes \x00\xff, done"


async def test_an_official_worker_serves_server_sent_events_as_they_are_written(
    peer: Peer, tmp_path: Path
) -> None:
    # The official handler sends its third event only after the test has read the first
    # two and released it: a body held back anywhere on the way would never let it.
    with anyio.fail_after(45):
        async with (
            anyiii.engine.run(host="127.0.0.1", port=0, http_port=0) as engine,
            peer.start(engine.url, tmp_path) as official,
            httpx.AsyncClient(base_url=engine.http_url or "", timeout=PROMPT) as client,
        ):
            path = f"{peer.prefix}/events"
            await bind_route(engine, official, peer.function_id("sse"), path)
            async with client.stream("GET", f"/{path}") as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/event-stream"
                assert response.headers["x-worker"] == peer.name
                lines: list[str] = []
                async with aclosing(response.aiter_lines()) as events:
                    async for line in events:
                        lines.append(line)
                        if line == "data: 2":
                            await official.send({"op": "release", "tag": "go"})
                            assert (await official.event("released", tag="go"))["tag"] == "go"
    assert [line for line in lines if line] == [
        "event: tick",
        "data: 1",
        "event: tick",
        "data: 2",
        "event: tick",
        "data: 3",
    ]
