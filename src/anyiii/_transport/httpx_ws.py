"""An optional transport whose connection is opened by httpx-ws (`httpx_ws.aconnect_ws`).

Choose it when the connection must go through an `httpx.AsyncClient`: proxies, custom
auth, mounted or ASGI test transports, shared TLS settings. It is slower than the default
transport (transport-measurements.md §2), but keeps the same contract.

httpx-ws does the HTTP upgrade. After that this module runs the connection itself, with
wsproto over httpcore's network stream and the group-commit writes of
`pinging.PingingTransport`, because httpx-ws 0.9's session has confirmed bugs we must not
pass on to users (style-anchors §1.7 and §3, pitfalls 2, 7, 8, 9):

* its receive buffer is always 0, so its reader stops answering pings and closes while
  nobody receives; here the reader is whoever calls `receive`, as in every transport;
* `receive()` after the server's close hangs forever; here it raises `ConnectionClosed`;
* an unsolicited pong crashes its session (`KeyError`); here it is ignored;
* `max_message_size_bytes` is only a read size; here messages are capped and a larger one
  fails the connection with 1009;
* `send()` is not cancellation-safe; here writes are shielded and bounded;
* its exceptions (and task-group `ExceptionGroup`s) escape; here every failure is
  `ConnectError` or `ConnectionClosed`.

The hook is httpx-ws's public `session_class=` parameter: `_HandshakeOnlySession` is a
session whose context starts none of httpx-ws's background tasks, so it only hands over
the upgraded network stream (`session.stream`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Self

import anyio
import httpcore
import httpx
import httpx_ws
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from anyiii._errors import ConnectError
from anyiii._transport.base import BinaryMessage, Transport, TransportLimits
from anyiii._transport.inbound import SMALL_FRAGMENT, SMALL_FRAGMENT_ALLOWANCE, TOO_MANY_FRAGMENTS
from anyiii._transport.keepalive import keepalive_running
from anyiii._transport.pinging import PingingTransport
from anyiii._transport.wire import (
    FRAGMENT_ABOVE,
    FRAGMENT_SIZE,
    RECEIVE_SIZE,
    HeadersLike,
    format_address,
)

__all__ = ["HttpxWebSocketTransport", "open_httpx_websocket"]


_READ_ERRORS = (
    httpcore.NetworkError,
    httpcore.TimeoutException,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)
_OPEN_ERRORS = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx_ws.HTTPXWSException,
    httpcore.NetworkError,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    OSError,
)


class _HandshakeOnlySession(httpx_ws.AsyncWebSocketSession):
    """An httpx-ws session that only carries the upgraded stream; it runs nothing."""

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        yield self


class HttpxWebSocketTransport(PingingTransport):
    """A client `Transport` over a network stream that httpx upgraded to WebSocket."""

    def __init__(
        self,
        stream: httpcore.AsyncNetworkStream,
        *,
        limits: TransportLimits | None = None,
    ) -> None:
        chosen = limits or TransportLimits()
        super().__init__(path="/", request_headers={}, limits=chosen)
        self._stream = stream
        self._connection = Connection(ConnectionType.CLIENT)
        self._max_message_size = chosen.max_message_size
        # The message being received, joined as it comes (a list of small parts would cost
        # ~56 bytes per one-byte fragment); its frames under SMALL_FRAGMENT bytes, counted.
        self._joined = bytearray()
        self._frame_size = 0
        self._small_fragments = 0
        self._discarding = False  # after failing (1009, 1008), message data is ignored
        self._stream_done = False
        self._aborted = False
        address = stream.get_extra_info("server_addr")
        # IP peers only: anything else (no address, a UNIX socket path) is reported as None.
        self._remote_address = format_address(address) if isinstance(address, tuple) else None

    # -- framing --------------------------------------------------------------------------

    def _frame_message(self, message: bytes) -> list[bytes]:
        connection = self._connection
        if connection.state is not ConnectionState.OPEN:
            self._record_close(1006, "connection lost")
            raise self._closed_error()
        if type(message) is BinaryMessage:
            return [
                connection.send(
                    BytesMessage(
                        data=message[start : start + FRAGMENT_SIZE],
                        message_finished=start + FRAGMENT_SIZE >= len(message),
                    )
                )
                for start in range(0, max(len(message), 1), FRAGMENT_SIZE)
            ]
        text = message.decode()
        if len(message) <= FRAGMENT_ABOVE:
            return [connection.send(TextMessage(data=text))]
        chunks = []
        # Counted in characters here: at most 4 MiB of UTF-8 per fragment.
        for start in range(0, len(text), FRAGMENT_SIZE):
            end = start + FRAGMENT_SIZE
            part = TextMessage(data=text[start:end], message_finished=end >= len(text))
            chunks.append(connection.send(part))
        return chunks

    def _frame_ping(self, payload: bytes) -> list[bytes]:
        return [self._connection.send(Ping(payload=payload))]

    def _fail_frames(self, code: int, reason: str) -> list[bytes]:
        if self._connection.state is not ConnectionState.OPEN:
            return []
        return [self._connection.send(CloseConnection(code=code, reason=reason))]

    # -- the wire -------------------------------------------------------------------------

    async def _write(self, batch: list[bytes]) -> None:
        await self._stream.write(batch[0] if len(batch) == 1 else b"".join(batch))

    async def _read_more(self) -> None:
        if self._stream_done:
            self._record_close(1006, "connection lost")
            return
        connection = self._connection
        try:
            data = await self._stream.read(RECEIVE_SIZE)
        except _READ_ERRORS as exc:
            self._stream_done = True
            self._break(1006, f"connection lost: {exc!r}")
            return
        if not data:
            self._stream_done = True
            if connection.state is not ConnectionState.CLOSED:
                connection.receive_data(None)  # wsproto reports 1006
        elif connection.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            connection.receive_data(data)
        replies = self._handle_events()
        if replies and not self._broken:
            with suppress(Exception):  # a failed write breaks the link; receive() reports it
                await self._submit(replies)

    def _handle_events(self) -> list[bytes]:
        connection = self._connection
        replies: list[bytes] = []
        for event in connection.events():
            if isinstance(event, TextMessage | BytesMessage):
                if self._discarding:
                    continue
                data = event.data.encode() if isinstance(event.data, str) else bytes(event.data)
                self._joined += data
                self._frame_size += len(data)
                refusal: tuple[int, str] | None = None
                if len(self._joined) > self._max_message_size:
                    refusal = 1009, f"message exceeds {self._max_message_size} bytes"
                elif event.frame_finished and not event.message_finished:
                    if self._frame_size < SMALL_FRAGMENT:
                        self._small_fragments += 1
                        if self._small_fragments > SMALL_FRAGMENT_ALLOWANCE:
                            refusal = TOO_MANY_FRAGMENTS
                    self._frame_size = 0
                if refusal is not None:
                    self._discarding = True
                    self._joined = bytearray()
                    replies += self._fail_frames(*refusal)
                    self._record_close(*refusal)
                    continue
                if event.message_finished:
                    joined = bytes(self._joined)
                    binary = isinstance(event, BytesMessage)
                    self._messages.append(BinaryMessage(joined) if binary else joined)
                    self._joined = bytearray()
                    self._frame_size = self._small_fragments = 0
            elif isinstance(event, Ping):
                if connection.state is ConnectionState.OPEN:
                    replies.append(connection.send(event.response()))
            elif isinstance(event, Pong):
                self._on_pong(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                if connection.state is ConnectionState.REMOTE_CLOSING:
                    replies.append(connection.send(event.response()))
                elif connection.state is ConnectionState.OPEN:
                    # wsproto reports a malformed frame as a close it did not send.
                    replies += self._fail_frames(event.code, event.reason or "")
                self._record_close(event.code, event.reason or "")
        return replies

    async def _close_handshake(self, code: int, reason: str) -> None:
        connection = self._connection
        if not self._broken and connection.state is ConnectionState.OPEN:
            chunk = connection.send(CloseConnection(code=code, reason=reason))
            self._record_close(code, reason)
            await self._submit([chunk])
        while not self._finished_reading():
            await self._read_turn()

    def _finished_reading(self) -> bool:
        closed = self._connection.state is ConnectionState.CLOSED
        return closed or self._stream_done or self._broken

    @property
    def remote_address(self) -> str | None:
        return self._remote_address

    async def _abort(self) -> None:
        if not self._aborted:
            self._aborted = True
            self._stream_done = True
            with anyio.CancelScope() as scope:
                scope.cancel()  # close without waiting for anything (a TLS goodbye)
                await self._stream.aclose()


@asynccontextmanager
async def open_httpx_websocket(
    url: str,
    *,
    http_client: httpx.AsyncClient | None = None,
    headers: HeadersLike | None = None,
    limits: TransportLimits | None = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
) -> AsyncIterator[Transport]:
    """Connect through httpx (`http_client`, or a fresh `httpx.AsyncClient`); yield the
    transport; close it on the way out.

    Same options and behaviour as `open_websocket`, except that TLS, proxies and
    authentication come from the httpx client. Failing to connect (including any
    non-101 answer, whose status is in the message) raises `ConnectError`.
    """
    chosen = limits or TransportLimits()
    stack = AsyncExitStack()
    try:
        try:
            with anyio.fail_after(open_timeout):
                session = await stack.enter_async_context(
                    httpx_ws.aconnect_ws(
                        url,
                        http_client,
                        keepalive_ping_interval_seconds=None,
                        keepalive_ping_timeout_seconds=None,
                        session_class=_HandshakeOnlySession,
                        headers=httpx.Headers(
                            list(headers.items()) if isinstance(headers, Mapping) else headers
                        ),
                    )
                )
        except httpx_ws.WebSocketUpgradeError as exc:
            status = exc.response.status_code
            raise ConnectError(f"server rejected the WebSocket upgrade with HTTP {status}") from exc
        except TimeoutError as exc:
            raise ConnectError(f"timed out opening {url} after {open_timeout} s") from exc
        except _OPEN_ERRORS as exc:
            raise ConnectError(f"could not connect to {url}: {exc!r}") from exc
        transport = HttpxWebSocketTransport(session.stream, limits=chosen)
        async with keepalive_running(transport, ping_interval, ping_timeout):
            yield transport
    finally:
        # The httpx response and (if we made it) the client; the stream is already closed.
        with anyio.move_on_after(chosen.close_timeout, shield=True):
            await stack.aclose()
