"""The stream service's subscriber WebSocket: where browsers watch streams (spec §10.4).

It speaks the real engine's protocol (`engine/src/workers/stream/socket.rs` and
`connection.rs`). A client sends text messages
`{"type": "join" | "leave", "data": {subscriptionId, streamName, groupId, id?}}`:

* `join` calls every `stream:join` binding with `{subscription_id, stream_name, group_id,
  id, context}` and waits for each; if one answers `{"unauthorized": true}` the client gets
  `{"type": "stream", …, "event": {"type": "unauthorized"}}` and is not subscribed.
  Otherwise it is subscribed and gets a `sync` event with the current item (when `id` is
  given, through `stream::get`) or the group's items (`stream::list`), so custom streams
  work here too; then every announcement for that stream and group (and item).
* `leave` calls every `stream:leave` binding the same way and unsubscribes. A connection
  that ends leaves all its subscriptions.

With the service configured with `auth_function`, that function is called once per
connection with `{headers, path, query_params, addr}`; the `context` of its answer is
passed along in join and leave events (it never refuses a connection, as in the real
engine).

Every connection's outgoing messages wait in its transport's bounded send queue
(`subscriber_queue_bytes`). A subscriber that stops reading until that queue is full is
dropped (closed with 1008) instead of slowing the engine down or growing its memory.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import msgspec
from msgspec import Raw

from .._errors import ConnectionClosed
from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import ErrorBody, decode_value, present, to_raw
from .._transport import (
    SendQueueFull,
    SharedBudget,
    Transport,
    TransportLimits,
    serve_websockets,
)
from .._transport.accepting import ConnectionLimits
from .providers import Subscribers
from .stream_hub import Subscription
from .stream_service import StreamService
from .stream_trigger import stream_message

__all__ = [
    "SUBSCRIBER_QUEUE_BYTES",
    "StreamEngine",
    "serve_stream_subscribers",
    "start_stream_socket",
]

logger = logging.getLogger("anyiii.engine")

SUBSCRIBER_QUEUE_BYTES: Final = 4 * 2**20
"""How much may wait for one subscriber before it is dropped as a slow consumer."""

LEAVE_TIMEOUT: Final = 5.0
"""How long a closing connection's `stream:leave` calls may take, together."""


class StreamEngine(Protocol):
    """What the socket needs of the engine: calling functions (`EmbeddedEngine.invoke`)."""

    def invoke(
        self,
        function_id: str,
        data: Raw,
        *,
        metadata: Raw | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Awaitable[tuple[Raw | None, ErrorBody | None]]: ...


class _Message(msgspec.Struct):
    type: str
    data: Subscription


class _TransportSink:
    """A subscriber's queue: its transport's own bounded send queue."""

    def __init__(self, transport: Transport, scope: anyio.CancelScope) -> None:
        self._transport = transport
        self._scope = scope

    def offer(self, message: bytes) -> bool:
        try:
            self._transport.send_nowait(message)
        except SendQueueFull:
            logger.warning("stream subscriber stopped reading; dropping it")
            self._scope.cancel()
            return False
        except ConnectionClosed:
            self._scope.cancel()
            return False
        return True


async def serve_stream_subscribers(
    listener: anyio.abc.Listener[anyio.abc.ByteStream],
    engine: StreamEngine,
    service: StreamService,
    *,
    limits: TransportLimits | None = None,
    handshake_timeout: float = 10.0,
    connections: ConnectionLimits | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve subscriber connections on `listener` until cancelled (see the module
    docstring). `limits.max_queue_bytes` bounds each subscriber's backlog; `connections`
    caps the subscribers held at once."""
    chosen = limits or TransportLimits(max_queue_bytes=SUBSCRIBER_QUEUE_BYTES)

    async def handle(transport: Transport) -> None:
        await _Subscriber(engine, service, transport).run()

    await serve_websockets(
        listener,
        handle,
        accept=lambda path: urlsplit(path).path in ("", "/"),
        limits=chosen,
        handshake_timeout=handshake_timeout,
        connections=connections,
        task_status=task_status,
    )


class _Subscriber:
    """One subscriber connection."""

    def __init__(self, engine: StreamEngine, service: StreamService, transport: Transport):
        self._engine = engine
        self._service = service
        self._transport = transport
        self._context: Any = None
        self._conn = 0

    async def run(self) -> None:
        hub = self._service.hub
        scope = anyio.CancelScope()
        self._conn = hub.connect(_TransportSink(self._transport, scope))
        try:
            with scope:
                self._context = await self._authenticate()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._transport.run_writer)
                    await self._read()
                    tg.cancel_scope.cancel()
        finally:
            remaining = hub.disconnect(self._conn)
            with anyio.move_on_after(LEAVE_TIMEOUT, shield=True):
                for subscription in remaining:
                    await self._call_all(self._service.leaves, subscription)
            if scope.cancelled_caught:
                await self._transport.aclose(1008, "slow consumer")

    async def _authenticate(self) -> Any:
        function_id = self._service.auth_function
        if function_id is None:
            return None
        target = urlsplit(self._transport.path)
        request = {
            "headers": dict(self._transport.request_headers),
            "path": target.path or "/",
            "query_params": parse_qs(target.query, keep_blank_values=True),
            "addr": self._transport.remote_address or "",
        }
        result, error = await self._engine.invoke(function_id, to_raw(request))
        if error is not None or result is None:
            logger.warning("stream auth function %s gave no context: %s", function_id, error)
            return None
        answer = decode_value(result)
        return answer.get("context") if isinstance(answer, dict) else None

    async def _read(self) -> None:
        while True:
            try:
                data = await self._transport.receive()
            except ConnectionClosed:
                return
            if not data.strip():
                continue
            try:
                message = msgspec.json.decode(data, type=_Message)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                logger.warning("stream subscriber sent an unreadable message: %s", exc)
                continue
            if message.type == "join":
                await self._join(message.data)
            elif message.type == "leave":
                await self._call_all(self._service.leaves, message.data)
                self._service.hub.leave(self._conn, message.data.subscription_id)
            else:
                logger.warning("stream subscriber sent unknown message type %r", message.type)

    async def _join(self, subscription: Subscription) -> None:
        hub = self._service.hub
        if await self._call_all(self._service.joins, subscription):
            refused: dict[str, Any] = {"type": "unauthorized"}
            hub.send(self._conn, self._message(subscription, subscription.id, refused))
            return
        if not hub.join(self._conn, subscription):
            return
        address: dict[str, Any] = {
            "stream_name": subscription.stream_name,
            "group_id": subscription.group_id,
        }
        if subscription.id is not None:
            function_id, request = "stream::get", {**address, "item_id": subscription.id}
        else:
            function_id, request = "stream::list", address
        result, error = await self._engine.invoke(function_id, to_raw(request))
        if error is not None:
            logger.warning("stream sync for %s failed: %s", subscription.stream_name, error)
            return
        data = None if result is None else decode_value(result)
        event: dict[str, Any] = {"type": "sync", "data": data}
        hub.send(self._conn, self._message(subscription, subscription.id, event))

    def _message(
        self, subscription: Subscription, item: str | None, event: dict[str, Any]
    ) -> dict[str, Any]:
        timestamp = self._service.wall_clock_ms()
        return stream_message(
            timestamp, subscription.stream_name, subscription.group_id, item, event
        )

    async def _call_all(self, bindings: Subscribers, subscription: Subscription) -> bool:
        """Call every join (or leave) binding in turn; whether one said `unauthorized`."""
        event = to_raw(
            {
                "subscription_id": subscription.subscription_id,
                "stream_name": subscription.stream_name,
                "group_id": subscription.group_id,
                "id": subscription.id,
                "context": self._context,
            }
        )
        unauthorized = False
        for binding in bindings:
            result, error = await self._engine.invoke(
                binding.function_id,
                event,
                metadata=present(binding.metadata),
                namespace=binding.namespace or DEFAULT_NAMESPACE,
            )
            if error is not None:
                logger.warning(
                    "stream join/leave function %s failed: %s", binding.function_id, error
                )
                continue
            answer = None if result is None else decode_value(result)
            if isinstance(answer, dict) and answer.get("unauthorized") is True:
                unauthorized = True
        return unauthorized


async def start_stream_socket(
    tg: anyio.abc.TaskGroup,
    engine: StreamEngine,
    service: object,
    host: str,
    port: int,
    *,
    max_message_size: int,
    handshake_timeout: float,
    connections: ConnectionLimits | None = None,
    budgets: tuple[SharedBudget, SharedBudget] | None = None,
) -> int | None:
    """Bind the subscriber socket on `host:port` (0: a free port) and serve it in `tg`;
    its port, or None when the engine runs no stream service. `budgets` are the engine's
    shared budgets for unfinished messages and send queues, which subscribers count in."""
    if not isinstance(service, StreamService):
        return None
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    unfinished, queued = (None, None) if budgets is None else budgets
    limits = TransportLimits(
        max_message_size=max_message_size,
        max_queue_bytes=SUBSCRIBER_QUEUE_BYTES,
        unfinished_budget=unfinished,
        queue_budget=queued,
    )

    async def serve(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        await serve_stream_subscribers(
            listener,
            engine,
            service,
            limits=limits,
            handshake_timeout=handshake_timeout,
            connections=connections,
            task_status=task_status,
        )

    await tg.start(serve)
    return bound
