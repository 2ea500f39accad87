"""The engine's listeners under too many connections: out of file descriptors, and the caps.

`anyiii engine` runs as a real process with a low RLIMIT_NOFILE; more idle connections than
that must not stop it (a failed `accept()` is retried: `_transport/accepting.py`), and once
they are gone both the REST and the worker listener serve again. In process,
`serve_listener` is fed the failures each backend raises, and `ConnectionLimits` caps are
checked on the REST and the worker listener: the surplus connection is answered 503.
"""

from __future__ import annotations

import errno
import gc
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import msgspec
import pytest
from engine_peers import decode, raw_client, read_to_eof
from engine_process import ENGINE_BACKENDS, engine_process

from anyiii._transport.accepting import ConnectionLimits, serve_listener
from anyiii.engine import EmbeddedEngine, EngineSettings, run

MAX_FILES = 128
"""The engine process's descriptor limit: small, so a test can exhaust it quickly."""


def _port(url: str) -> int:
    found = re.search(r":(\d+)$", url)
    assert found is not None, url
    return int(found.group(1))


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
async def test_the_engine_survives_running_out_of_file_descriptors(backend: str) -> None:
    with anyio.fail_after(30):
        async with engine_process(backend, max_files=MAX_FILES) as engine:
            async with AsyncExitStack() as idle:
                for _ in range(MAX_FILES + 20):  # more than the engine can hold
                    await idle.enter_async_context(
                        await anyio.connect_tcp("127.0.0.1", _port(engine.http_url))
                    )
                await engine.wait_for_log(r"HTTP listener: accept\(\) failed \(EMFILE")
                # The worker listener cannot accept either now, and must survive that too.
                for _ in range(5):
                    await idle.enter_async_context(
                        await anyio.connect_tcp("127.0.0.1", _port(engine.url))
                    )
                await engine.wait_for_log(r"WebSocket listener: accept\(\) failed \(EMFILE")
                assert engine.process.returncode is None
            # The idle connections are gone: the waiting ones are accepted and end.
            await engine.wait_for_log(r"HTTP listener: accepting again")
            await engine.wait_for_log(r"WebSocket listener: accepting again")
            async with httpx.AsyncClient() as client:
                response = await client.get(engine.http_url + "/nothing/here")
            assert response.status_code == 404
            async with raw_client(engine.url) as (transport, _):
                await transport.send(b'{"type":"ping"}')
                assert decode(await transport.receive()) == {"type": "pong"}
            assert engine.process.returncode is None


class _FailingListener(anyio.abc.SocketListener):
    """A real TCP listener whose first `accept()` calls fail with `failures`, in order."""

    def __init__(self, inner: anyio.abc.SocketListener, failures: list[Exception]) -> None:
        self._inner = inner
        self._failures = failures

    @property
    def _raw_socket(self) -> Any:
        return self._inner.extra(anyio.abc.SocketAttribute.raw_socket)

    async def accept(self) -> anyio.abc.SocketStream:
        if self._failures:
            await anyio.lowlevel.checkpoint()
            raise self._failures.pop(0)
        return await self._inner.accept()

    async def aclose(self) -> None:
        await self._inner.aclose()


def _wrapped(error: OSError) -> anyio.BrokenResourceError:
    """What trio's anyio backend raises for a failed accept: the OSError as the cause."""
    wrapper = anyio.BrokenResourceError()
    wrapper.__cause__ = error
    return wrapper


@pytest.mark.autojump
async def test_failed_accepts_of_both_kinds_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[Exception] = [
        OSError(errno.EMFILE, "Too many open files"),
        _wrapped(OSError(errno.ENFILE, "Too many open files in system")),
        OSError(errno.ECONNABORTED, "Software caused connection abort"),
        _wrapped(OSError(errno.ENOBUFS, "No buffer space available")),
        OSError(errno.ENOMEM, "Cannot allocate memory"),
    ]
    inner = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    port = inner.extra(anyio.abc.SocketAttribute.local_port)

    async def greet(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.send(b"hello")

    with anyio.fail_after(10):
        async with (
            anyio.create_task_group() as tasks,
            _FailingListener(inner, failures) as listener,
        ):
            tasks.start_soon(
                lambda: serve_listener(
                    listener,
                    greet,
                    tasks,
                    limits=ConnectionLimits(),
                    refusal=lambda: b"",
                    label="test listener",
                )
            )
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                assert await read_to_eof(client) == b"hello"
            tasks.cancel_scope.cancel()
    assert failures == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "anyiii.transport"]
    assert warnings == [
        "test listener: accept() failed (EMFILE: Too many open files); retrying every 0.1 s",
        "test listener: accepting again after 5 failed accept()",
    ]


def test_connection_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_per_peer"):
        ConnectionLimits(max_per_peer=0)
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(max_connections=True)


@asynccontextmanager
async def _capped(**caps: int) -> AsyncIterator[EmbeddedEngine]:
    settings = EngineSettings(connections=ConnectionLimits(**caps))
    try:
        async with run(settings=settings) as engine:
            yield engine
    finally:
        gc.collect()


async def _refused(port: int, request: bytes, local_host: str = "127.0.0.1") -> bytes:
    """Connect, send `request`, and return everything answered until the engine hangs up."""
    async with await anyio.connect_tcp("127.0.0.1", port, local_host=local_host) as stream:
        await stream.send(request)
        return await read_to_eof(stream)


def _envelope(answer: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.lower(), msgspec.json.decode(body)


async def _get_until_served(url: str) -> httpx.Response:
    """A GET, repeated while it is refused: a closed connection is counted out by the
    engine's task for it, which may run after the client saw the connection end."""
    async with httpx.AsyncClient() as client:
        while True:
            response = await client.get(url, headers={"connection": "close"})
            if response.status_code != 503:
                return response


_GET = b"GET /nothing HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"


async def test_http_connections_beyond_the_cap_get_503_and_a_closed_connection() -> None:
    with anyio.fail_after(10):
        async with _capped(max_connections=2) as engine, AsyncExitStack() as held:
            assert engine.http_port is not None
            assert engine.http_url is not None
            first = await held.enter_async_context(
                await anyio.connect_tcp("127.0.0.1", engine.http_port)
            )
            await held.enter_async_context(await anyio.connect_tcp("127.0.0.1", engine.http_port))
            head, body = _envelope(await _refused(engine.http_port, _GET))
            assert head.startswith(b"http/1.1 503 "), head
            assert b"\r\nconnection: close" in head
            assert body["error"]["code"] == "TOO_MANY_CONNECTIONS"
            assert set(body["error"]) == {"code", "message", "error_id"}
            await first.aclose()
            assert (await _get_until_served(engine.http_url + "/nothing")).status_code == 404


async def test_http_connections_are_capped_per_client_address() -> None:
    with anyio.fail_after(10):
        async with _capped(max_per_peer=1) as engine:
            assert engine.http_port is not None
            async with await anyio.connect_tcp("127.0.0.1", engine.http_port):
                head, body = _envelope(await _refused(engine.http_port, _GET))
                assert head.startswith(b"http/1.1 503 "), head
                assert body["error"]["code"] == "TOO_MANY_CONNECTIONS"
                # Another address is not this one's neighbour: it is served.
                other = await _refused(engine.http_port, _GET, local_host="127.0.0.2")
                assert other.startswith(b"HTTP/1.1 404 "), other


_UPGRADE = (
    b"GET / HTTP/1.1\r\nhost: test\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
)


async def test_worker_connections_beyond_the_cap_get_503_before_the_upgrade() -> None:
    with anyio.fail_after(10):
        async with _capped(max_connections=1) as engine:
            async with raw_client(engine.url) as (transport, _):
                answer = await _refused(engine.port, _UPGRADE)
                assert answer.startswith(b"HTTP/1.1 503 "), answer
                assert b"\r\nconnection: close\r\n" in answer
                await transport.send(b'{"type":"ping"}')  # the one held is unharmed
                assert decode(await transport.receive()) == {"type": "pong"}
