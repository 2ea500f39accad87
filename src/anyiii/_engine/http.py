"""The `http` trigger type's REST listener: HTTP/1.1 with h11 over anyio (spec §10.1, §16.4).

Each request is matched against the route table, turned into the request object of §10.1,
passed to the bound function through the engine, and the function's result is mapped back
to an HTTP response. HTTP parsing is h11's; this module only moves bytes and maps shapes.

Every request also gets two data channels (§12): its raw body streams on `request_body`,
and a handler that returns null answers on `response` (`http_streaming.py`). Middleware
and `condition_function_id` run before the handler (`http_middleware.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from contextlib import suppress
from typing import Final, Protocol
from urllib.parse import urlsplit

import anyio
import anyio.abc
import h11
from anyio.streams.memory import MemoryObjectReceiveStream
from msgspec import Raw

from .._protocol.codes import (
    BAD_REQUEST,
    DEFAULT_NAMESPACE,
    INVALID_RESPONSE,
    NOT_IMPLEMENTED,
    PAYLOAD_TOO_LARGE,
    TOO_MANY_CONNECTIONS,
)
from .._protocol.frames import ErrorBody, present
from .._transport.accepting import ConnectionLimits, http_refusal, serve_listener
from .channels import Channel, ChannelHub
from .http_middleware import before_handler
from .http_replies import JSON, NOT_FOUND_REPLY, STREAMED, Reply, error_reply, map_response
from .http_requests import (
    WRITE_PIECE,
    BodyTooDeep,
    HttpLimits,
    has_both_framings,
    header,
    once,
    parse_body,
    request_object,
)
from .http_streaming import ChannelAnswer, ResponseHead, await_answer, feed_body, send_body
from .providers import HTTP_METHODS, HttpRoute, HttpRoutes

__all__ = ["HttpLimits", "Invoker", "map_response", "serve_http"]

logger = logging.getLogger("anyiii.engine.http")


class Invoker(Protocol):
    """What the HTTP listener needs from the engine."""

    @property
    def http_routes(self) -> HttpRoutes: ...

    @property
    def channels(self) -> ChannelHub:
        """The engine's data channels: each request gets a body and a response channel."""
        ...

    def invoke(
        self, function_id: str, data: Raw, *, metadata: Raw | None, namespace: str
    ) -> Awaitable[tuple[Raw | None, ErrorBody | None]]:
        """Call a function and wait for its result or error (cancellable)."""
        ...


class _WriteTimedOut(anyio.BrokenResourceError):
    """A send did not finish within `HttpLimits.write_timeout`: the connection is dropped
    (as when the client leaves, so it is not logged as an error)."""


class _HttpConnection:
    """One client connection: read requests, answer them, until either side stops."""

    def __init__(self, stream: anyio.abc.ByteStream, invoker: Invoker, limits: HttpLimits):
        self._stream = stream
        self._invoker = invoker
        self._limits = limits
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head)

    async def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            self._h11.receive_data(data)

    async def _send(self, reply: Reply, *, close: bool = False, head: bool = False) -> None:
        """Send one response. 1xx, 204 and 304 have no body by definition, and the answer to
        a HEAD request announces its body's length without sending it (RFC 9110 §6.4.1)."""
        bodiless = reply.status < 200 or reply.status in (204, 304)
        headers = list(reply.headers)
        if not bodiless:
            headers.append(("content-length", str(len(reply.body))))
        if close:
            headers.append(("connection", "close"))
        try:  # h11 checks the head as it is made, before the connection's state changes
            response = h11.Response(status_code=reply.status, headers=headers)
        except h11.LocalProtocolError as exc:  # a handler's header HTTP cannot carry
            message = f"the handler's response head is invalid: {exc}"
            logger.warning("answering 500: %s", message)
            await self._send(error_reply(500, INVALID_RESPONSE, message), close=close, head=head)
            return
        payload = self._h11.send(response)
        assert payload is not None
        if not (bodiless or head):
            payload += self._h11.send(h11.Data(data=reply.body)) or b""
        payload += self._h11.send(h11.EndOfMessage()) or b""
        await self._write(payload)

    async def _write(self, data: bytes) -> None:
        """Send `data` in pieces, each within `write_timeout`; a client that stops reading
        is dropped (`_WriteTimedOut`) rather than held forever."""
        for start in range(0, len(data), WRITE_PIECE):
            with anyio.move_on_after(self._limits.write_timeout) as scope:
                await self._stream.send(data[start : start + WRITE_PIECE])
            if scope.cancelled_caught:
                logger.info("closing an HTTP connection whose client stopped reading")
                raise _WriteTimedOut

    async def _linger(self) -> None:
        """After refusing a request whose body is still arriving, read and drop the rest for
        a moment: closing at once would reset the connection under the answer before the
        client has read it."""
        with (
            anyio.move_on_after(1.0),
            suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError),
        ):
            received = 0
            while received < self._limits.max_body + 2**20:
                received += len(await self._stream.receive(65536))

    async def serve(self) -> None:
        first = True
        while True:
            timeout = self._limits.header_timeout if first else self._limits.idle_timeout
            first = False
            try:
                with anyio.fail_after(timeout):
                    event = await self._next_event()
            except TimeoutError:
                return
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, str(exc))
                return
            if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
                return
            smuggling = has_both_framings(event)
            reply = await self._answer(event)
            if reply is None:
                return
            if reply is not STREAMED:
                await self._send(reply, close=smuggling, head=event.method == b"HEAD")
            if smuggling or self._h11.our_state is h11.MUST_CLOSE:
                return
            try:
                self._h11.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _refuse(self, status: int, message: str) -> None:
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with suppress(
                h11.LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                await self._send(error_reply(status, BAD_REQUEST, message), close=True)

    async def _read_body(self) -> bytes | None:
        body = bytearray()
        with anyio.fail_after(self._limits.header_timeout + self._limits.request_timeout):
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > self._limits.max_body:
                        return None
                elif isinstance(event, h11.EndOfMessage):
                    return bytes(body)
                else:
                    raise h11.RemoteProtocolError("the request body ended early")

    async def _answer(self, request: h11.Request) -> Reply | None:
        """The reply to send; None when the connection closes (a refusal was sent here, or
        a streamed response was cut short); `STREAMED` when a streamed response was sent
        here."""
        # Methods are case-sensitive (RFC 9110 §9.1): `get` is no route's `GET`.
        method = request.method.decode("ascii")
        routable = method in HTTP_METHODS
        path = urlsplit(request.target.decode("latin-1")).path
        found = self._invoker.http_routes.match(method, path) if routable else None
        content_type = header(request, b"content-type")
        streamed_body = found is not None and JSON not in content_type
        body = b""
        if not streamed_body:  # JSON (parsed into `body`) or no route: read it whole first
            try:
                whole = await self._read_body()
            except (TimeoutError, h11.RemoteProtocolError) as exc:
                await self._refuse(400, f"could not read the request body: {exc}")
                return None
            if whole is None:
                limit = self._limits.max_body
                refusal = error_reply(413, PAYLOAD_TOO_LARGE, f"the body exceeds {limit} bytes")
                await self._send(refusal, close=True)
                await self._linger()
                return None
            body = whole
        if not routable:
            return error_reply(501, NOT_IMPLEMENTED, f"no route has the method {method!r}")
        if found is None:
            return NOT_FOUND_REPLY
        try:
            parsed = parse_body(request, body)
        except BodyTooDeep as exc:
            return error_reply(400, BAD_REQUEST, str(exc))
        route, params = found
        hub = self._invoker.channels
        body_writer, body_reader = hub.create()
        response_writer, response_reader = hub.create()
        body_channel = hub.find(body_writer.channel_id, body_writer.access_key)
        response_channel = hub.find(response_writer.channel_id, response_writer.access_key)
        sender = hub.take_sender(body_writer.channel_id, body_writer.access_key)
        receiver = hub.take_receiver(response_reader.channel_id, response_reader.access_key)
        assert body_channel is not None
        assert response_channel is not None
        assert sender is not None
        assert receiver is not None
        data = request_object(
            request, parsed, route.pattern, params, channels=(body_reader, response_writer)
        )
        try:
            async with anyio.create_task_group() as tasks:

                async def feed() -> None:
                    try:
                        await feed_body(
                            self._next_body_chunk if streamed_body else once(body), sender
                        )
                    except (h11.RemoteProtocolError, *_GONE) as exc:
                        body_channel.failure = f"the request body broke off: {exc}"

                tasks.start_soon(feed)
                reply = await self._run_route(
                    route, data, receiver, response_channel, head=method == "HEAD"
                )
                tasks.cancel_scope.cancel()  # a body nobody read: the connection closes
        finally:
            sender.close()
            receiver.close()
            hub.remove(body_writer.channel_id)
            hub.remove(response_writer.channel_id)
        return reply

    async def _next_body_chunk(self) -> bytes | None:
        """The next piece of a request body being streamed, None at its end."""
        event = await self._next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            return None
        raise h11.RemoteProtocolError("the request body ended early")

    async def _run_route(
        self,
        route: HttpRoute,
        data: Raw,
        receiver: MemoryObjectReceiveStream[bytes],
        response_channel: Channel,
        *,
        head: bool,
    ) -> Reply | None:
        """Middleware, condition and handler; the reply, or `STREAMED` once a streamed
        response has been sent, or None when one was cut short (the connection closes).
        `receiver` reads `response_channel`."""
        # Middleware and the route's condition may answer instead of the handler.
        early = await before_handler(self._invoker, route, data, self._limits.request_timeout)
        if early is not None:
            return map_response(early)
        binding = route.binding

        def invoke() -> Awaitable[tuple[Raw | None, ErrorBody | None]]:
            return self._invoker.invoke(
                binding.function_id,
                data,
                metadata=present(binding.metadata),
                namespace=binding.namespace or DEFAULT_NAMESPACE,
            )

        response_head = ResponseHead()
        with anyio.move_on_after(self._limits.request_timeout) as scope:
            answer = await await_answer(
                invoke, receiver, response_head, lambda: response_channel.sender is None
            )
        if scope.cancelled_caught:
            return Reply(504, [], b"")
        if isinstance(answer, ChannelAnswer):
            await self._send_streamed(response_head, receiver, answer.first_chunk, head=head)
            if response_channel.failure is not None:
                # The handler's writer went away without ending the stream: the body is cut
                # short, and the client must see that (no final chunk), not a whole body.
                logger.info("a streamed response was cut short: %s", response_channel.failure)
                return None
            await self._write(self._h11.send(h11.EndOfMessage()) or b"")
            return STREAMED
        result, error = answer
        if error is not None:
            return error_reply(500, error.code, error.message)
        return map_response(result)

    async def _send_streamed(
        self,
        response_head: ResponseHead,
        receiver: MemoryObjectReceiveStream[bytes],
        first_chunk: bytes | None,
        *,
        head: bool,
    ) -> None:
        """A response from the `response` channel: the head now, then each body chunk as
        it comes (chunked encoding), until the handler closes the channel. The caller
        ends the message (or, if the stream failed, the connection)."""
        status = response_head.status
        if status < 200:  # an informational status cannot end a request
            await self._send(error_reply(500, INVALID_RESPONSE, f"status {status} is not final"))
            return
        try:
            start = self._h11.send(
                h11.Response(status_code=status, headers=list(response_head.headers.items()))
            )
        except h11.LocalProtocolError as exc:
            await self._send(error_reply(500, INVALID_RESPONSE, f"bad response head: {exc}"))
            return
        await self._write(start or b"")
        if not (head or status in (204, 304)):

            async def send_chunk(chunk: bytes) -> None:
                await self._write(self._h11.send(h11.Data(data=chunk)) or b"")

            await send_body(receiver, first_chunk, send_chunk)


_GONE: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)


def _client_gone(error: Exception) -> bool:
    """Whether `error` (or every error of a group) only says the client went away."""
    if isinstance(error, _GONE):
        return True
    if isinstance(error, ExceptionGroup):
        _, rest = error.split(_GONE)
        return rest is None
    return False


async def serve_http(
    listener: anyio.abc.Listener[anyio.abc.SocketStream],
    invoker: Invoker,
    *,
    limits: HttpLimits | None = None,
    connections: ConnectionLimits | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `http` triggers on `listener` until cancelled; then close it.

    A failed accept (out of file descriptors, …) is logged and retried; a connection
    beyond `connections` (None for the defaults) is answered 503 `TOO_MANY_CONNECTIONS`
    and closed (`_transport/accepting.py`).
    """
    chosen = limits or HttpLimits()

    def refusal() -> bytes:
        reply = error_reply(503, TOO_MANY_CONNECTIONS, "too many connections; retry later")
        return http_refusal(JSON, reply.body)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await _HttpConnection(stream, invoker, chosen).serve()
            except Exception as error:  # one bad request must never stop the listener
                if not _client_gone(error):  # else the client went away mid-answer
                    logger.exception("error while serving an HTTP request")

    async with listener, anyio.create_task_group() as tasks:
        task_status.started()
        await serve_listener(
            listener,
            handle,
            tasks,
            limits=connections or ConnectionLimits(),
            refusal=refusal,
            label="HTTP listener",
        )
