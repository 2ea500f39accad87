"""The client side of the default transport: `connect_websocket` and `open_websocket`.

The opening handshake is websockets' `ClientProtocol`, driven over an anyio TCP (or TLS)
stream; once open, the connection is a `WebSocketTransport` (see `websocket.py` for what
the transport does and the settings that matter for the iii protocol).
"""

from __future__ import annotations

import ssl
from collections.abc import (
    AsyncIterator,
    Mapping,
)
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus, InvalidURI
from websockets.uri import parse_uri

from anyiii._errors import ConnectError
from anyiii._transport.base import Transport, TransportLimits
from anyiii._transport.common import logger
from anyiii._transport.keepalive import keepalive_running
from anyiii._transport.websocket import LINK_ERRORS, WebSocketTransport
from anyiii._transport.wire import RECEIVE_SIZE, HeadersLike, head_end
from anyiii._version import __version__

__all__ = ["connect_websocket", "open_websocket"]

USER_AGENT = f"anyiii/{__version__}"


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
            early = await _read_response(stream, protocol)
    except BaseException as exc:
        if stream is not None:
            await anyio.aclose_forcefully(stream)
        if isinstance(exc, ConnectError):
            raise
        if isinstance(exc, TimeoutError):
            raise ConnectError(f"timed out opening {url} after {open_timeout} s") from exc
        if isinstance(exc, (*LINK_ERRORS, anyio.EndOfStream)):
            raise ConnectError(f"could not connect to {url}: {exc!r}") from exc
        raise
    assert stream is not None
    return WebSocketTransport(stream, protocol, early_data=early, limits=chosen)


async def _read_response(stream: anyio.abc.ByteStream, protocol: ClientProtocol) -> bytes:
    """Read the handshake response; return the bytes that came after it (frames the
    server sent at once), which websockets does not see (`head_end`)."""
    seen, head_done = b"", False
    while True:
        rest = b""
        try:
            data = await stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            protocol.receive_eof()
        else:
            end = -1 if head_done else head_end(seen, data)
            if end < 0:
                protocol.receive_data(data)
                seen = (seen + data)[-3:]
            else:
                head_done = True
                protocol.receive_data(data[:end])
                rest = data[end:]
        events = protocol.events_received()
        if rest and not events:
            # Not an upgrade (a refusal with a body, say): websockets reads the rest.
            protocol.receive_data(rest)
            events = protocol.events_received()
        failure = protocol.handshake_exc
        if isinstance(failure, InvalidStatus):
            status = failure.response.status_code
            raise ConnectError(
                f"server rejected the WebSocket upgrade with HTTP {status}", status=status
            ) from failure
        if failure is not None:
            raise ConnectError(f"WebSocket handshake failed: {failure}") from failure
        if events:
            return rest


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
