"""The default transport: websockets' Sans-I/O protocol driven over anyio byte streams.

websockets' `ClientProtocol`/`ServerProtocol` do the framing, the handshake, masking (in
C), ping answers and the closing handshake state; this module only moves bytes between
them and an anyio stream, so the same code runs on asyncio and trio. It was the fastest
portable stack measured (transport-measurements.md §2-§3), combined with the group-commit
writes of `common.TransportBase`.

Settings that matter for the iii protocol:

* compression (permessage-deflate) is never offered nor accepted: it costs more CPU than
  it saves on small JSON frames (transport-measurements.md §4);
* incoming messages are capped at `TransportLimits.max_message_size` (64 MiB by default,
  the Rust engine's limit);
  a bigger one fails the connection with close code 1009;
* outgoing messages above 16 MiB (the Rust engine's frame limit) are sent as 1 MiB
  fragments, like the official SDK;
* pings from the peer are answered (websockets queues the pong as it parses the ping;
  the transport flushes it); the client pings every `ping_interval` and fails the
  connection with 1011 when a pong is late. We never send unsolicited pongs: httpx-ws
  0.9 crashes on them.
"""

from __future__ import annotations

import errno
import functools
import secrets
import ssl
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener
from anyio.streams.tls import TLSStream
from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState, InvalidStatus, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Event, Side, State
from websockets.protocol import Protocol as SansIOProtocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

try:  # websockets' C helper when it was built with it, else its pure-Python twin
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - depends on how websockets was installed
    from websockets.utils import apply_mask

from anyiii._errors import ConnectError
from anyiii._transport.base import Transport, TransportLimits
from anyiii._transport.common import TransportBase, keepalive_running, logger
from anyiii._transport.wire import FRAGMENT_ABOVE, FRAGMENT_SIZE, RECEIVE_SIZE, format_address
from anyiii._version import __version__

__all__ = ["WebSocketTransport", "connect_websocket", "open_websocket", "serve_websockets"]

HeadersLike = Mapping[str, str] | Sequence[tuple[str, str]]

USER_AGENT = f"anyiii/{__version__}"
# accept() errors that mean "out of resources for now", not "the listener is dead".
_ACCEPT_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_LINK_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


def _text_frame(payload: bytes, *, masked: bool) -> bytes:
    """One final, uncompressed text frame (RFC 6455 §5.2), built directly.

    This is what websockets' `send_text` produces for an open connection without
    extensions, at a fraction of its cost: a routed call crosses four frames, and the
    generic path was a large share of the engine's CPU per call. Clients mask their frames
    (§5.3); servers do not. Everything else (fragments, control frames, closing) still goes
    through the websockets protocol object.
    """
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((0x81, mask_bit | length))
    elif length < 65536:
        header = bytes((0x81, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, mask_bit | 127)) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    mask = secrets.token_bytes(4)
    return header + mask + apply_mask(payload, mask)


class WebSocketTransport(TransportBase):
    """A `Transport` over one WebSocket connection whose handshake is done.

    Build one with `open_websocket` / `connect_websocket` (client) or receive one in a
    `serve_websockets` handler (server).
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        protocol: ClientProtocol | ServerProtocol,
        *,
        early_events: Iterable[Event] = (),
        path: str = "/",
        request_headers: Mapping[str, str] | None = None,
        limits: TransportLimits | None = None,
    ) -> None:
        super().__init__(
            path=path,
            request_headers={} if request_headers is None else request_headers,
            limits=limits or TransportLimits(),
        )
        self._stream = stream
        self._protocol: SansIOProtocol = protocol
        self._fragments: list[bytes] = []
        self._stream_done = False  # EOF was read, or the stream is closed
        self._aborted = False
        # Read now: a closed socket no longer knows its peer.
        self._remote_address = format_address(
            stream.extra(anyio.abc.SocketAttribute.remote_address, None)
        )
        # Frames that arrived in the same read as the handshake.
        self._handle_events(list(early_events))

    # -- framing --------------------------------------------------------------------------

    def _frame_message(self, message: bytes) -> list[bytes]:
        protocol = self._protocol
        if protocol.state is State.OPEN and len(message) <= FRAGMENT_ABOVE:
            return [_text_frame(message, masked=protocol.side is Side.CLIENT)]
        try:
            if len(message) <= FRAGMENT_ABOVE:
                protocol.send_text(message)
            else:
                view = memoryview(message)
                protocol.send_text(view[:FRAGMENT_SIZE], fin=False)
                for start in range(FRAGMENT_SIZE, len(view), FRAGMENT_SIZE):
                    end = start + FRAGMENT_SIZE
                    protocol.send_continuation(view[start:end], fin=end >= len(view))
        except InvalidState:
            # The protocol saw the close before we recorded it; it is closed either way.
            self._record_close(*self._protocol_close_info())
            raise self._closed_error() from None
        return protocol.data_to_send()

    def _frame_ping(self, payload: bytes) -> list[bytes]:
        self._protocol.send_ping(payload)
        return self._protocol.data_to_send()

    def _fail_frames(self, code: int, reason: str) -> list[bytes]:
        self._protocol.fail(code, reason)
        return self._protocol.data_to_send()

    # -- the wire -------------------------------------------------------------------------

    async def _write(self, batch: list[bytes]) -> None:
        if len(batch) == 1 and batch[0]:
            await self._stream.send(batch[0])
            return
        # An empty chunk is websockets' SEND_EOF: half-close after what precedes it.
        pending: list[bytes] = []
        for chunk in batch:
            if chunk:
                pending.append(chunk)
                continue
            if pending:
                await self._stream.send(b"".join(pending))
                pending = []
            await self._send_eof()
        if pending:
            await self._stream.send(b"".join(pending))

    async def _send_eof(self) -> None:
        try:
            await self._stream.send_eof()
        except NotImplementedError:
            # TLS cannot half-close; closing is the only way to say "no more data".
            await self._abort()

    async def _read_more(self) -> None:
        protocol = self._protocol
        if self._stream_done:
            self._record_close(*self._protocol_close_info())
            return
        try:
            data = await self._stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            self._stream_done = True
            protocol.receive_eof()
        except _LINK_ERRORS as exc:
            self._stream_done = True
            self._break(1006, f"connection lost: {exc!r}")
            return
        else:
            protocol.receive_data(data)
        self._handle_events(protocol.events_received())
        # Pongs, the echo of the peer's close, or EOF after the closing handshake.
        replies = protocol.data_to_send()
        if replies and not self._broken:
            with suppress(Exception):  # a failed write breaks the link; receive() reports it
                await self._submit(replies)

    def _handle_events(self, events: list[Event]) -> None:
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            data = frame.data if type(frame.data) is bytes else bytes(frame.data)
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    self._messages.append(data)
                else:
                    self._fragments = [data]
            elif opcode is Opcode.CONT:
                self._fragments.append(data)
                if frame.fin:
                    self._messages.append(b"".join(self._fragments))
                    self._fragments = []
            elif opcode is Opcode.PONG:
                self._on_pong(data)
        if self._protocol.state is not State.OPEN and self._close_code is None:
            self._record_close(*self._protocol_close_info())

    def _protocol_close_info(self) -> tuple[int, str]:
        """The close that ended the link: whichever side's close frame came first."""
        protocol = self._protocol
        received, sent = protocol.close_rcvd, protocol.close_sent
        if received is not None and (sent is None or protocol.close_rcvd_then_sent):
            return received.code, received.reason
        if sent is not None:
            return sent.code, sent.reason
        cause = protocol.parser_exc
        return 1006, "connection lost" if cause is None else str(cause)

    async def _close_handshake(self, code: int, reason: str) -> None:
        protocol = self._protocol
        if not self._broken and protocol.state is State.OPEN:
            protocol.send_close(code, reason)
            self._record_close(code, reason)
            await self._submit(protocol.data_to_send())
        # Read until the peer's close frame and its end of stream, as RFC 6455 §7 asks.
        while not self._finished_reading():
            await self._read_turn()
        await self._drain()  # our echo or EOF may still be queued behind another write

    def _finished_reading(self) -> bool:
        protocol = self._protocol
        if self._stream_done or self._broken or protocol.state is State.CLOSED:
            return True
        # Once both close frames have crossed, the server hangs up first (RFC 6455 §7.1.1)
        # instead of waiting for a client that may not be reading any more.
        return (
            protocol.side is Side.SERVER
            and protocol.close_sent is not None
            and protocol.close_rcvd is not None
        )

    async def _abort(self) -> None:
        if not self._aborted:
            self._aborted = True
            self._stream_done = True
            await anyio.aclose_forcefully(self._stream)

    @property
    def remote_address(self) -> str | None:
        return self._remote_address


# -- client -------------------------------------------------------------------------------


def _header_items(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


async def connect_websocket(
    url: str,
    *,
    headers: HeadersLike | None = None,
    limits: TransportLimits | None = None,
    open_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> WebSocketTransport:
    """Open a client WebSocket and return its transport, without keepalive.

    The caller owns the transport and must `aclose` it; `open_websocket` is the usual way
    in. Raises `ConnectError` (with the cause chained) if the URL is invalid, the TCP or
    TLS connection fails, the server answers with anything but 101, or the whole opening
    takes longer than `open_timeout` seconds. `limits` (None: the defaults) bounds the
    transport.
    """
    chosen = limits or TransportLimits()
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise ConnectError(f"invalid WebSocket URL {url!r}: {exc}") from exc
    extra = _header_items(headers)
    stream: anyio.abc.ByteStream | None = None
    try:
        with anyio.fail_after(open_timeout):
            if uri.secure:
                stream = await anyio.connect_tcp(
                    uri.host,
                    uri.port,
                    ssl_context=ssl_context or ssl.create_default_context(),
                    tls_hostname=uri.host,
                    tls_standard_compatible=False,
                )
            else:
                stream = await anyio.connect_tcp(uri.host, uri.port)
            protocol = ClientProtocol(uri, max_size=(chosen.max_message_size, None), logger=logger)
            request = protocol.connect()
            if not any(name.lower() == "user-agent" for name, _ in extra):
                request.headers["User-Agent"] = USER_AGENT
            for name, value in extra:
                request.headers[name] = value
            protocol.send_request(request)
            await stream.send(b"".join(protocol.data_to_send()))
            events = await _read_response(stream, protocol)
    except BaseException as exc:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        if isinstance(exc, ConnectError):
            raise
        if isinstance(exc, TimeoutError):
            raise ConnectError(f"timed out opening {url} after {open_timeout} s") from exc
        if isinstance(exc, (*_LINK_ERRORS, anyio.EndOfStream)):
            raise ConnectError(f"could not connect to {url}: {exc!r}") from exc
        raise
    assert stream is not None
    return WebSocketTransport(stream, protocol, early_events=events, limits=chosen)


async def _read_response(stream: anyio.abc.ByteStream, protocol: ClientProtocol) -> list[Event]:
    """Read the handshake response; return the frames that came with it."""
    while True:
        try:
            data = await stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            protocol.receive_eof()
        else:
            protocol.receive_data(data)
        events = protocol.events_received()
        failure = protocol.handshake_exc
        if isinstance(failure, InvalidStatus):
            status = failure.response.status_code
            raise ConnectError(
                f"server rejected the WebSocket upgrade with HTTP {status}"
            ) from failure
        if failure is not None:
            raise ConnectError(f"WebSocket handshake failed: {failure}") from failure
        if events:
            return events[1:]


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    headers: HeadersLike | None = None,
    limits: TransportLimits | None = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Transport]:
    """Connect to a `ws://` or `wss://` URL; yield the transport; close it on the way out.

    `headers` are added to the handshake request (for example `Authorization`). `wss://`
    uses `ssl_context`, or the system's default trust store. Failing to connect raises
    `ConnectError`. While the block runs, a keepalive task pings every `ping_interval`
    seconds and fails the connection with close code 1011 when a pong takes longer than
    `ping_timeout` (pongs are read by whoever calls `receive`). `limits` (None: the
    defaults) bounds message sizes, queues and writes. Leaving the block closes the
    connection within `limits.close_timeout`; an exception from the block propagates as is.

    Entering is a checkpoint (it does network I/O); so is leaving.
    """
    transport = await connect_websocket(
        url, headers=headers, limits=limits, open_timeout=open_timeout, ssl_context=ssl_context
    )
    async with keepalive_running(transport, ping_interval, ping_timeout):
        yield transport


# -- server -------------------------------------------------------------------------------


async def serve_websockets(
    listener: anyio.abc.Listener[anyio.abc.ByteStream],
    handler: Callable[[Transport], Awaitable[None]],
    *,
    accept: Callable[[str], bool] = lambda path: True,
    limits: TransportLimits | None = None,
    handshake_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket connections from `listener` until cancelled; then close it.

    Each accepted connection runs in its own task: the TLS handshake (if `ssl_context` is
    given) and the HTTP upgrade must finish within `handshake_timeout` or the TCP
    connection is dropped. A request target for which `accept(target)` is false gets
    HTTP 404; a request that is not a WebSocket upgrade gets a 4xx answer. Otherwise
    `handler(transport)` runs; when it returns or raises, the transport is closed (1000,
    or 1011 after an exception), bounded by `limits.close_timeout` (`limits`, None for the
    defaults, bounds every accepted transport). A handler's exception is
    logged on the "anyiii.transport" logger and never stops the server.

    The listener is owned from then on: it is closed when this function returns. The
    embedded engine binds an ephemeral port like this::

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await tg.start(serve_websockets, listener, handler)

    `task_status.started()` is called once connections are being accepted.
    """
    on_stream = functools.partial(
        _serve_connection,
        handler=handler,
        accept=accept,
        limits=limits or TransportLimits(),
        handshake_timeout=handshake_timeout,
        ssl_context=ssl_context,
    )
    try:
        async with anyio.create_task_group() as tg:
            task_status.started()
            await _accept_loop(listener, on_stream, tg)
    finally:
        with anyio.CancelScope(shield=True):
            await listener.aclose()


async def _accept_loop(
    listener: anyio.abc.Listener[anyio.abc.ByteStream],
    on_stream: Callable[[anyio.abc.ByteStream], Coroutine[Any, Any, None]],
    tg: anyio.abc.TaskGroup,
) -> None:
    if isinstance(listener, MultiListener):
        for each in listener.listeners:
            tg.start_soon(_accept_loop, each, on_stream, tg)
        return
    if not isinstance(listener, anyio.abc.SocketListener):
        await listener.serve(on_stream, task_group=tg)
        return
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            # Out of file descriptors or memory: others' connections will free some, so
            # wait instead of tearing the whole server down (trio's serve_listeners).
            if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                raise
            logger.warning("accept() failed (%s); retrying in 0.1 s", exc)
            await anyio.sleep(0.1)
            continue
        tg.start_soon(on_stream, stream)


async def _serve_connection(
    stream: anyio.abc.ByteStream,
    *,
    handler: Callable[[Transport], Awaitable[None]],
    accept: Callable[[str], bool],
    limits: TransportLimits,
    handshake_timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> None:
    transport: WebSocketTransport | None = None
    try:
        with anyio.move_on_after(handshake_timeout):
            if ssl_context is not None:
                stream = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=ssl_context, standard_compatible=False
                )
            transport = await _server_handshake(stream, accept=accept, limits=limits)
        if transport is None:
            return
        async with transport:
            try:
                await handler(transport)
            except Exception:
                logger.exception("WebSocket handler for %r failed", transport.path)
                raise
    except Exception as exc:
        if transport is None:
            logger.debug("WebSocket handshake failed: %r", exc)
    finally:
        if transport is None:
            await anyio.aclose_forcefully(stream)


async def _server_handshake(
    stream: anyio.abc.ByteStream,
    *,
    accept: Callable[[str], bool],
    limits: TransportLimits,
) -> WebSocketTransport | None:
    """Read the upgrade request and answer it; return the transport if it was accepted."""
    protocol = ServerProtocol(max_size=(limits.max_message_size, None), logger=logger)
    request: Request | None = None
    early: list[Event] = []
    while request is None:
        try:
            data = await stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            return None
        protocol.receive_data(data)
        events = protocol.events_received()
        if events and isinstance(events[0], Request):
            request, early = events[0], events[1:]
        elif protocol.handshake_exc is not None:
            replies = protocol.data_to_send()
            if not any(replies):
                # websockets just hangs up on an unparsable request; say why first.
                response = protocol.reject(
                    HTTPStatus.BAD_REQUEST, "Failed to open a WebSocket connection.\n"
                )
                replies = [response.serialize(), b""]
            await _answer_and_hang_up(stream, replies, limits.close_timeout)
            return None
    if accept(request.path):
        response = protocol.accept(request)
    else:
        response = protocol.reject(HTTPStatus.NOT_FOUND, "Not Found\n")
    protocol.send_response(response)
    replies = protocol.data_to_send()
    if response.status_code != 101:
        await _answer_and_hang_up(stream, replies, limits.close_timeout)
        return None
    await stream.send(b"".join(replies))
    return WebSocketTransport(
        stream,
        protocol,
        early_events=early,
        path=request.path,
        request_headers=_lower_headers(request.headers),
        limits=limits,
    )


async def _answer_and_hang_up(
    stream: anyio.abc.ByteStream, replies: list[bytes], close_timeout: float
) -> None:
    """Send an HTTP answer, half-close, and wait briefly for the client to hang up.

    Closing at once could reset the connection while the client's request is still
    unread on our side, and a reset may destroy our answer before the client reads it.
    """
    await stream.send(b"".join(replies))
    try:
        await stream.send_eof()
    except NotImplementedError:
        return
    with anyio.move_on_after(close_timeout):
        try:
            while True:
                await stream.receive(RECEIVE_SIZE)
        except (anyio.EndOfStream, *_LINK_ERRORS):
            pass


def _lower_headers(headers: Headers) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.raw_items():
        key = name.lower()
        lowered[key] = f"{lowered[key]}, {value}" if key in lowered else value
    return lowered
