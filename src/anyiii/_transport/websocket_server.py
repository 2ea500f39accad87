"""The server side of the default transport: `serve_websockets`.

Each accepted connection gets its own task: the TLS handshake if any, websockets'
`ServerProtocol` opening handshake within a time limit, then a `WebSocketTransport`
handed to the application's handler (see `websocket.py` for what the transport does).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import (
    Awaitable,
    Callable,
    Mapping,
)
from http import HTTPStatus

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from anyiii._transport.accepting import ConnectionLimits, http_refusal, serve_listener
from anyiii._transport.base import Transport, TransportLimits
from anyiii._transport.common import logger
from anyiii._transport.websocket import LINK_ERRORS, WebSocketTransport
from anyiii._transport.wire import RECEIVE_SIZE, head_end

__all__ = ["serve_websockets"]

_REFUSAL = http_refusal("text/plain", b"Too many connections.\n")
"""The answer to a connection beyond the listener's `ConnectionLimits`."""


async def serve_websockets(
    listener: anyio.abc.Listener[anyio.abc.ByteStream],
    handler: Callable[[Transport], Awaitable[None]],
    *,
    accept: Callable[[str], bool] = lambda path: True,
    authorize: Callable[[str, Mapping[str, str]], bool] | None = None,
    limits: TransportLimits | None = None,
    handshake_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    connections: ConnectionLimits | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket connections from `listener` until cancelled; then close it.

    Each accepted connection runs in its own task: the TLS handshake (if `ssl_context` is
    given) and the HTTP upgrade must finish within `handshake_timeout` or the TCP
    connection is dropped. A request target for which `accept(target)` is false gets
    HTTP 404; one for which `authorize(target, headers)` (names lower-case) is false gets
    HTTP 401; a request that is not a WebSocket upgrade gets a 4xx answer. Otherwise
    `handler(transport)` runs; when it returns or raises, the transport is closed (1000,
    or 1011 after an exception), bounded by `limits.close_timeout` (`limits`, None for the
    defaults, bounds every accepted transport). A handler's exception is
    logged on the "anyiii.transport" logger and never stops the server. A failed accept
    (out of file descriptors, …) is logged and retried, and `connections` (None for the
    defaults) caps the connections held at once: one beyond it gets HTTP 503 before the
    upgrade (`accepting.py`).

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
        authorize=authorize,
        limits=limits or TransportLimits(),
        handshake_timeout=handshake_timeout,
        ssl_context=ssl_context,
    )
    try:
        async with anyio.create_task_group() as tg:
            task_status.started()
            await serve_listener(
                listener,
                on_stream,
                tg,
                limits=connections or ConnectionLimits(),
                refusal=lambda: _REFUSAL,
                label="WebSocket listener",
            )
    finally:
        with anyio.CancelScope(shield=True):
            await listener.aclose()


async def _serve_connection(
    stream: anyio.abc.ByteStream,
    *,
    handler: Callable[[Transport], Awaitable[None]],
    accept: Callable[[str], bool],
    authorize: Callable[[str, Mapping[str, str]], bool] | None,
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
            transport = await _server_handshake(
                stream, accept=accept, authorize=authorize, limits=limits
            )
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
    authorize: Callable[[str, Mapping[str, str]], bool] | None = None,
    limits: TransportLimits,
) -> WebSocketTransport | None:
    """Read the upgrade request and answer it; return the transport if it was accepted."""
    protocol = ServerProtocol(max_size=(limits.max_message_size, None), logger=logger)
    request: Request | None = None
    early, seen = b"", b""
    while request is None:
        try:
            data = await stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            return None
        # websockets gets only the request's head; frames sent right after it go to the
        # transport's own frame reader (`head_end`).
        end = head_end(seen, data)
        if end >= 0:
            data, early = data[:end], data[end:]
        seen = (seen + data)[-3:]
        protocol.receive_data(data)
        events = protocol.events_received()
        if events and isinstance(events[0], Request):
            request = events[0]
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
    headers = _lower_headers(request.headers)
    if not accept(request.path):
        response = protocol.reject(HTTPStatus.NOT_FOUND, "Not Found\n")
    elif authorize is not None and not authorize(request.path, headers):
        response = protocol.reject(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        response.headers["WWW-Authenticate"] = "Bearer"
    else:
        response = protocol.accept(request)
    protocol.send_response(response)
    replies = protocol.data_to_send()
    if response.status_code != 101:
        await _answer_and_hang_up(stream, replies, limits.close_timeout)
        return None
    await stream.send(b"".join(replies))
    return WebSocketTransport(
        stream,
        protocol,
        early_data=early,
        path=request.path,
        request_headers=headers,
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
        except (anyio.EndOfStream, *LINK_ERRORS):
            pass


def _lower_headers(headers: Headers) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.raw_items():
        key = name.lower()
        lowered[key] = f"{lowered[key]}, {value}" if key in lowered else value
    return lowered
