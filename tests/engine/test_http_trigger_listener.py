"""The `http` trigger over real sockets: the listener's side of a request (spec §15.4).

A JSON body over `HttpLimits.max_body` is a 413, even while the rest is still on its way
(with and without chunked framing, from raw sockets and from httpx); a malformed request
is a 400 and the listener keeps serving; a keep-alive connection serves pipelined requests.
Handlers are a raw-transport worker's (`http_trigger_support.served`).
"""

from __future__ import annotations

from contextlib import suppress

import anyio
import httpx
import pytest
from engine_peers import read_to_eof
from http_trigger_support import http_engine, served

from anyiii.engine import HttpLimits


async def _exchange(port: int, request: list[bytes]) -> bytes:
    """Send `request` (head, then body pieces), then read the answer until the server
    closes, as HTTP/1.1 clients do (httpx included); a reset ends the answer where it
    stands. The server may stop reading once it answered, so a failed send is expected."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            for piece in request:
                await stream.send(piece)
        return await read_to_eof(stream)


def _oversized_request(length: int, chunked: bool) -> list[bytes]:
    piece = 16 * 1024
    pieces = [b"x" * min(piece, length - start) for start in range(0, length, piece)]
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    else:
        framing = b"Content-Length: %d\r\n" % length
    head = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing + b"\r\n"
    )
    return [head, *pieces]


_JSON_BODY = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("length", "chunked"),
    [(4096, False), (2**20, False), (4096, True), (2**20, True)],
    ids=["small", "large", "small-chunked", "large-chunked"],
)
async def test_body_over_the_limit_is_413(length: int, chunked: bool) -> None:
    """The client gets its 413 even when the engine stops reading a body that is still on
    its way: the listener must not reset the connection under its own answer (RFC 9112
    §9.6: close the sending side first and keep reading for a while). Only JSON bodies are
    read whole (to parse them into `body`), so only they have the limit; other bodies
    stream to the handler (`test_http_streaming.py`)."""
    limits = HttpLimits(max_body=1024)
    with anyio.fail_after(20):
        async with http_engine(limits) as engine, served(engine) as (_, seen, _):
            assert engine.http_port is not None
            answer = await _exchange(engine.http_port, _oversized_request(length, chunked))
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
            assert b'"code":"PAYLOAD_TOO_LARGE"' in answer
            assert seen == []  # the handler never ran
            async with httpx.AsyncClient(base_url=engine.http_url or "") as client:
                response = await client.post("/echo", content=b"x" * 1024, headers=_JSON_BODY)
                assert response.status_code == 200
            assert len(seen) == 1


async def test_body_over_the_limit_is_413_for_httpx() -> None:
    limits = HttpLimits(max_body=1024)
    with anyio.fail_after(20):
        async with (
            http_engine(limits) as engine,
            served(engine) as (_, seen, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.post("/echo", content=b"x" * 2048, headers=_JSON_BODY)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
            assert seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /users/1 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /users/1 HTTP/1.1\r\nno colon here\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ],
    ids=["not-http", "bad-content-length", "bad-header", "binary"],
)
async def test_malformed_request_is_400_and_the_listener_keeps_serving(
    request_bytes: bytes,
) -> None:
    with anyio.fail_after(20):
        async with http_engine() as engine, served(engine) as (_, seen, _):
            assert engine.http_port is not None
            async with await anyio.connect_tcp("127.0.0.1", engine.http_port) as stream:
                await stream.send(request_bytes)
                answer = await read_to_eof(stream)
            assert answer.startswith(b"HTTP/1.1 400 "), answer
            assert seen == []
            async with httpx.AsyncClient(base_url=engine.http_url or "") as client:
                assert (await client.get("/users/2")).json() == {"id": "2"}


async def test_keep_alive_connection_serves_many_requests() -> None:
    with anyio.fail_after(20):
        async with http_engine() as engine, served(engine) as (_, seen, _):
            assert engine.http_port is not None
            async with await anyio.connect_tcp("127.0.0.1", engine.http_port) as stream:
                pipelined = b"".join(
                    f"GET /users/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(3)
                )
                await stream.send(pipelined + b"GET /users/3 HTTP/1.1\r\nHost: x\r\n")
                await stream.send(b"Connection: close\r\n\r\n")
                answer = await read_to_eof(stream)
            assert answer.count(b"HTTP/1.1 200 ") == 4
            assert [f["data"]["path_params"]["id"] for f in seen] == ["0", "1", "2", "3"]
