"""The REST listener against clients that misbehave (docs/limits.md "HTTP listener").

A client that stops reading a large response is disconnected after `write_timeout`; a
kept-alive connection is closed after `idle_timeout`. Requests are parsed per RFC 9112 /
9110: one framed both by Content-Length and Transfer-Encoding is answered and its
connection closed; methods are case-sensitive; a JSON body nested too deeply is a 400, and
a handler's response head that HTTP cannot carry is a 500, both with the error envelope.
Requests are written by hand on raw sockets, so that each is exactly what is tested.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from engine_peers import http_binding, raw_worker, read_to_eof

from anyiii.engine import EmbeddedEngine, EngineSettings, HttpLimits, run

BIG = 8 * 2**20
"""A response body larger than what the socket buffers between server and client hold."""


async def _big(frame: dict[str, Any]) -> Any:
    return {"headers": {"content-type": "text/plain"}, "body": "x" * BIG}


async def _hello(frame: dict[str, Any]) -> Any:
    return {"body": {"method": frame["data"]["method"], "json": frame["data"]["body"]}}


async def _bad_length(frame: dict[str, Any]) -> Any:
    return {"headers": {"content-length": "1"}, "body": {"a": 1}}


async def _bad_header(frame: dict[str, Any]) -> Any:
    return {"headers": {"x-note": "a\r\nset-cookie: stolen=1"}, "body": {}}


@asynccontextmanager
async def _engine(**limits: Any) -> AsyncIterator[EmbeddedEngine]:
    """An engine whose REST listener has `limits`, with the routes above bound."""
    functions = {
        "h::big": _big,
        "h::hello": _hello,
        "h::bad_length": _bad_length,
        "h::bad_header": _bad_header,
    }
    routes = [
        http_binding("h::big", "big"),
        http_binding("h::hello", "hello", "GET"),
        http_binding("h::hello", "hello", "POST"),
        http_binding("h::bad_length", "bad-length"),
        http_binding("h::bad_header", "bad-header"),
    ]
    try:
        async with (
            run(settings=EngineSettings(http=HttpLimits(**limits))) as engine,
            raw_worker(engine.url, "hardening", functions, routes),
        ):
            yield engine
    finally:
        gc.collect()


async def _connect(engine: EmbeddedEngine) -> anyio.abc.SocketStream:
    assert engine.http_port is not None
    return await anyio.connect_tcp("127.0.0.1", engine.http_port)


@asynccontextmanager
async def _small_window(
    engine: EmbeddedEngine, request: bytes, buffer: int = 4096
) -> AsyncIterator[socket.socket]:
    """A plain socket with a `buffer` bytes receive buffer (set before connecting, so the
    window it advertises is small from the start) that has sent `request`. Plain, because an
    asyncio stream would read everything that arrives into memory, reading or not."""
    assert engine.http_port is not None
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        raw.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            raw.connect(("127.0.0.1", engine.http_port))
        await anyio.wait_writable(raw)
        raw.sendall(request)  # a few bytes: they fit in the send buffer
        yield raw


async def _receive(raw: socket.socket) -> bytes:
    """The next bytes from `raw`; b"" at its end (a reset ends it too)."""
    await anyio.wait_readable(raw)
    try:
        return raw.recv(65536)
    except ConnectionResetError:
        return b""


def _split(answer: bytes) -> tuple[bytes, bytes]:
    """(head in lower case, body) of one whole response."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.lower(), body


@contextmanager
def _logged(logger: str, text: str) -> Iterator[anyio.Event]:
    """An event set when `logger` logs a message containing `text`."""
    seen = anyio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    watch = Watch()
    target = logging.getLogger(logger)
    target.addHandler(watch)
    previous = target.level
    target.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        target.setLevel(previous)
        target.removeHandler(watch)


async def test_a_client_that_stops_reading_is_disconnected_after_the_write_timeout() -> None:
    with anyio.fail_after(20):
        async with _engine(write_timeout=0.3) as engine:
            with _logged("anyiii.engine.http", "client stopped reading") as gave_up:
                async with _small_window(engine, b"GET /big HTTP/1.1\r\nhost: t\r\n\r\n") as raw:
                    await gave_up.wait()  # the client has read nothing yet
                    received = bytearray()
                    while chunk := await _receive(raw):
                        received += chunk
            assert received.startswith(b"HTTP/1.1 200 ")
            assert len(received) < BIG  # cut off, not delivered whole


async def test_a_slow_reader_gets_the_whole_body() -> None:
    """The write timeout bounds each piece of a response, not the whole: a client that
    takes longer than it for the body, but keeps reading, gets all of it."""
    request = b"GET /big HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    with anyio.fail_after(20):
        async with (
            _engine(write_timeout=1.0) as engine,
            _small_window(engine, request, buffer=2**16) as raw,
        ):
            received = bytearray()
            pauses = 0
            while chunk := await _receive(raw):
                received += chunk
                if len(received) >= (pauses + 1) * 2**19:
                    pauses += 1
                    # A slow client: 0.4 s per 2 MiB (the kernel wakes a blocked sender
                    # only once about half its send buffer, 4 MiB at most, is free).
                    await anyio.sleep(0.1)
            assert pauses * 0.1 > 1.0  # slower than one write timeout in all
            head, body = _split(bytes(received))
            assert head.startswith(b"http/1.1 200 ")
            assert len(body) == BIG


async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout() -> None:
    assert HttpLimits().idle_timeout <= 5.0  # not the 60 s it was: idle clients go soon
    with anyio.fail_after(10):
        async with _engine(idle_timeout=0.2) as engine, await _connect(engine) as client:
            await client.send(b"GET /hello HTTP/1.1\r\nhost: t\r\n\r\n")
            head, body = _split(await read_to_eof(client))  # ends when the engine closes
            assert head.startswith(b"http/1.1 200 ")
            assert b"connection: close" not in head  # it was kept alive, then idled out
            assert msgspec.json.decode(body) == {"method": "GET", "json": None}


async def _exchange(engine: EmbeddedEngine, request: bytes) -> tuple[bytes, Any]:
    """Send `request`, read until the engine closes: (head in lower case, decoded body)."""
    async with await _connect(engine) as client:
        await client.send(request)
        head, body = _split(await read_to_eof(client))
    return head, msgspec.json.decode(body)


async def test_both_content_length_and_transfer_encoding_answer_then_close() -> None:
    """RFC 9112 §6.3: Transfer-Encoding wins, and the connection must be closed after."""
    request = (
        b"POST /hello HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"content-length: 40\r\ntransfer-encoding: chunked\r\n\r\n"
        b'8\r\n{"a": 1}\r\n0\r\n\r\n'
    )
    with anyio.fail_after(5):  # long before the idle timeout below
        async with _engine(idle_timeout=30) as engine:
            head, body = await _exchange(engine, request)
    assert head.startswith(b"http/1.1 200 "), head
    assert b"\r\nconnection: close" in head
    assert body == {"method": "POST", "json": {"a": 1}}


async def test_methods_are_case_sensitive() -> None:
    """RFC 9110 §9.1: `get` is not `GET`; a method no route can have is answered 501."""
    with anyio.fail_after(5):
        async with _engine() as engine:
            head, body = await _exchange(
                engine, b"get /hello HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
            )
            assert head.startswith(b"http/1.1 501 "), head
            assert body["error"]["code"] == "NOT_IMPLEMENTED"
            head, body = await _exchange(
                engine, b"GET /hello HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
            )
            assert head.startswith(b"http/1.1 200 "), head
            assert body == {"method": "GET", "json": None}


async def test_a_json_body_nested_too_deeply_is_a_400() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    request = (
        b"POST /hello HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(deep), deep)
    )
    with anyio.fail_after(5):
        async with _engine() as engine:
            head, body = await _exchange(engine, request)
    assert head.startswith(b"http/1.1 400 "), head
    assert body["error"]["code"] == "BAD_REQUEST"
    assert "deep" in body["error"]["message"]


@pytest.mark.parametrize("path", ["bad-length", "bad-header"])
async def test_a_response_head_http_cannot_carry_is_a_500(path: str) -> None:
    """A handler's Content-Length that is not its body's, or a header with a line break
    in it: answered with the error envelope instead of a dropped connection."""
    request = b"GET /%s HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n" % path.encode()
    with anyio.fail_after(5):
        async with _engine() as engine:
            head, body = await _exchange(engine, request)
    assert head.startswith(b"http/1.1 500 "), head
    assert b"stolen" not in head
    assert body["error"]["code"] == "invalid_response"
    assert set(body["error"]) == {"code", "message", "error_id"}
