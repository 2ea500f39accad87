"""Helpers for the transport tests: connected pairs of every kind, and raw WebSocket peers.

A *raw peer* drives websockets' Sans-I/O protocol by hand, so a test can do what our
transports never do on their own: send fragments of its choosing, send pings or
unsolicited pongs, stop reading, or go silent after the handshake.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from anyiii._transport import (
    Transport,
    TransportLimits,
    memory_transport_pair,
    open_httpx_websocket,
    open_websocket,
    serve_websockets,
)

PAIR_KINDS = ["websocket", "httpx", "memory"]
# Transports that speak real WebSocket frames, as (kind, side) under test.
WIRE_KINDS = ["websocket-client", "httpx-client", "websocket-server"]

SERVER_ONLY = {"handshake_timeout"}


def port_of(listener: anyio.abc.Listener[Any]) -> int:
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    assert isinstance(port, int)
    return port


async def accept_handshake(stream: anyio.abc.ByteStream) -> ServerProtocol:
    """Read a WebSocket upgrade request from `stream` and queue its acceptance (the caller
    sends `protocol.data_to_send()`); the server side of a hand-made peer."""
    protocol = ServerProtocol()
    request = None
    while request is None:
        protocol.receive_data(await stream.receive())
        for event in protocol.events_received():
            if isinstance(event, Request):
                request = event
    protocol.send_response(protocol.accept(request))
    return protocol


@asynccontextmanager
async def websocket_server(
    handler: Callable[[Transport], Awaitable[None]], **options: Any
) -> AsyncIterator[int]:
    """Run `serve_websockets` on 127.0.0.1 with an ephemeral port; yield the port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = port_of(listener)
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(serve_websockets, listener, handler, **options))
        yield port
        tg.cancel_scope.cancel()


def opener(kind: str) -> Callable[..., Any]:
    return open_websocket if kind.startswith("websocket") else open_httpx_websocket


@asynccontextmanager
async def transport_pair(
    kind: str, limits: TransportLimits | None = None, **options: Any
) -> AsyncIterator[tuple[Transport, Transport]]:
    """A connected (client, server) pair of `kind`; `limits` bound both sides, the other
    options apply to the side that takes them.

    The server side's handler keeps the connection open until the pair's block ends; then
    both sides close at once, so neither waits for a close echo from an idle peer.
    """
    max_buffer = options.pop("max_buffer", 1024)  # memory only: sockets have their own
    if kind == "memory":
        a, b = memory_transport_pair(max_buffer, limits=limits)
        async with a, b:
            yield a, b
        return
    server_options = {k: v for k, v in options.items() if k in SERVER_ONLY}
    server_options["limits"] = limits
    client_options = {k: v for k, v in options.items() if k not in SERVER_ONLY}
    client_options["limits"] = limits
    client_options.setdefault("ping_interval", None)
    accepted_send, accepted_receive = anyio.create_memory_object_stream[Transport](1)
    release = anyio.Event()

    async def handler(transport: Transport) -> None:
        await accepted_send.send(transport)
        await release.wait()

    async with accepted_send, accepted_receive, websocket_server(handler, **server_options) as port:
        url = f"ws://127.0.0.1:{port}/"
        async with opener(kind)(url, **client_options) as client:
            server = await accepted_receive.receive()
            try:
                yield client, server
            finally:
                release.set()


TEXT, BINARY, CONTINUATION = 0x1, 0x2, 0x0
"""WebSocket opcodes, for frames built by hand."""


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """One WebSocket frame, built by hand; masked with a zero key, so the payload reads as
    is (a client must mask, RFC 6455 §5.3; any key will do)."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head = bytes((first, mask_bit | length))
    elif length < 65536:
        head = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"") + payload


def fragmented(pieces: list[bytes], *, masked: bool = True) -> bytes:
    """One text message as the frames of `pieces`, in order."""
    frames = [
        raw_frame(TEXT if i == 0 else CONTINUATION, p, fin=i == len(pieces) - 1, masked=masked)
        for i, p in enumerate(pieces)
    ]
    return b"".join(frames)


class RawConnection:
    """One WebSocket connection driven by hand through a websockets Sans-I/O protocol."""

    def __init__(self, stream: anyio.abc.ByteStream, protocol: ClientProtocol | ServerProtocol):
        self.stream = stream
        self.protocol = protocol
        self.received: list[Frame] = []  # every frame ever read, in order
        self.response: Response | None = None  # the handshake answer, on a client
        self._pending: list[Frame] = []

    async def flush(self) -> None:
        """Send what the protocol queued. The link may already be gone (our transport
        dropped it after its close): then the replies (a close echo, EOF) go nowhere."""
        try:
            for chunk in self.protocol.data_to_send():
                if chunk:
                    await self.stream.send(chunk)
                else:
                    await self.stream.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    def feed(self, events: list[Any]) -> None:
        frames = [event for event in events if isinstance(event, Frame)]
        self.received += frames
        self._pending += frames

    async def next_frame(self) -> Frame:
        """Read until a frame arrives; answers pings on the way (the protocol does)."""
        while not self._pending:
            data = await self.stream.receive()
            self.protocol.receive_data(data)
            self.feed(self.protocol.events_received())
            await self.flush()
        return self._pending.pop(0)

    async def send_text(self, text: bytes) -> None:
        self.protocol.send_text(text)
        await self.flush()


@asynccontextmanager
async def raw_server(
    on_connect: Callable[[RawConnection], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[int, anyio.abc.ObjectReceiveStream[RawConnection]]]:
    """A WebSocket server that completes the handshake, then hands the connection over.

    Yields the port and a stream of accepted `RawConnection`s. Connections stay open until
    the block ends; nothing reads from them unless the test does.
    """
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    accepted_send, accepted_receive = anyio.create_memory_object_stream[RawConnection](8)
    streams: list[anyio.abc.ByteStream] = []

    async def serve(stream: anyio.abc.ByteStream) -> None:
        streams.append(stream)
        protocol = await accept_handshake(stream)
        connection = RawConnection(stream, protocol)
        await connection.flush()
        await accepted_send.send(connection)

    async with listener, accepted_send, accepted_receive, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve, tg)
        try:
            yield port_of(listener), accepted_receive
        finally:
            # Closed before the task group is cancelled: an await in a cancelled scope would
            # raise a cancellation that replaces the block's own exception, and the group
            # would swallow it (a failing assertion in the block passed silently).
            with anyio.CancelScope(shield=True):
                for stream in streams:
                    await anyio.aclose_forcefully(stream)
            tg.cancel_scope.cancel()


async def raw_client(
    port: int,
    path: str = "/",
    *,
    local_host: str | None = None,
    receive_buffer: int | None = None,
    **protocol_options: Any,
) -> RawConnection:
    """Connect to 127.0.0.1:`port` and complete a WebSocket handshake by hand.

    `local_host` picks the client's own address (127.0.0.2 is another peer to the server);
    `receive_buffer` shrinks the socket's receive buffer, so a client that stops reading
    soon leaves the server's writes waiting."""
    stream = await anyio.connect_tcp("127.0.0.1", port, local_host=local_host)
    if receive_buffer is not None:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), **protocol_options)
    protocol.send_request(protocol.connect())
    connection = RawConnection(stream, protocol)
    await connection.flush()
    response = None
    while response is None:
        protocol.receive_data(await stream.receive())
        events = protocol.events_received()
        if events and isinstance(events[0], Response):
            response = events[0]
            connection.feed(events[1:])
    assert protocol.handshake_exc is None, protocol.handshake_exc
    connection.response = response
    return connection


@asynccontextmanager
async def wire_under_test(
    kind: str, limits: TransportLimits | None = None, **options: Any
) -> AsyncIterator[tuple[Transport, RawConnection]]:
    """Our transport of `kind`, bounded by `limits`, connected to a raw peer:
    (transport, raw peer)."""
    if kind == "websocket-server":
        accepted_send, accepted_receive = anyio.create_memory_object_stream[Transport](1)
        release = anyio.Event()

        async def handler(transport: Transport) -> None:
            await accepted_send.send(transport)
            await release.wait()

        server_options = {k: v for k, v in options.items() if k in SERVER_ONLY}
        server_options["limits"] = limits
        async with (
            accepted_send,
            accepted_receive,
            websocket_server(handler, **server_options) as port,
        ):
            peer = await raw_client(port)
            try:
                yield await accepted_receive.receive(), peer
            finally:
                release.set()
                # A raw peer does not answer the close; hanging up spares the close_timeout.
                await anyio.aclose_forcefully(peer.stream)
        return
    options.setdefault("ping_interval", None)
    async with (
        raw_server() as (port, accepted),
        opener(kind)(f"ws://127.0.0.1:{port}/", limits=limits, **options) as transport,
    ):
        peer = await accepted.receive()
        try:
            yield transport, peer
        finally:
            await anyio.aclose_forcefully(peer.stream)


async def read_request_head(stream: anyio.abc.ByteStream) -> bytes:
    """Read from `stream` until an HTTP head is complete; the bytes read so far."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive()
    return head


@asynccontextmanager
async def http_responder(answer: bytes | None) -> AsyncIterator[int]:
    """A TCP server that reads one HTTP request head and sends `answer` (None: stays silent)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_request_head(stream)
            if answer is None:
                await anyio.sleep_forever()
            await stream.send(answer)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve, tg)
        yield port_of(listener)
        tg.cancel_scope.cancel()


async def http_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes to 127.0.0.1:`port`; return everything read until the server hangs up."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        answer = b""
        try:
            while True:
                answer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return answer
