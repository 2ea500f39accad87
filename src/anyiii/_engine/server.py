"""The embedded engine's async shell: sockets, timers and waiters around the router.

Everything the engine decides is decided by the sans-IO `Router`; this module only feeds it
(one reader task per worker connection, one timer task, the HTTP listener) and carries out
the actions it returns. Sends never block the routing: each connection has its own bounded
queue drained by its own writer task, and a worker that stops reading until its queue
overflows is disconnected as a slow consumer instead of stalling everyone else.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio
import anyio.abc
from msgspec import Raw

from .._concurrency import OneShot
from .._errors import ConnectError, ConnectionClosed
from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import ErrorBody
from .._transport import (
    SendQueueFull,
    SharedBudget,
    Transport,
    TransportLimits,
    keep_alive,
    memory_transport_pair,
    url_host,
)
from .actions import Action, Callback, Close, Completed, HttpCall, Persist, Send
from .channel_socket import serve_channel_end
from .channels import ChannelHub, parse_channel_target
from .http_calls import HttpCaller
from .http_targets import HttpResponse
from .providers import HttpRoutes
from .rbac_gate import Gate
from .router import Router
from .settings import EngineSettings
from .storage import MemoryStorage, Storage
from .writes import WritePipeline

__all__ = ["EmbeddedEngine"]

logger = logging.getLogger("anyiii.engine")

WORKER_PATH: Final = "/"
TELEMETRY_PATH: Final = "/otel"


@dataclass(slots=True, eq=False)
class _Link:
    """A worker connection as the shell sees it."""

    transport: Transport
    scope: anyio.CancelScope
    tasks: anyio.abc.TaskGroup | None = None
    close_code: int = 1000
    close_reason: str = ""


class EmbeddedEngine:
    """A running embedded engine: where to reach it, and a way to call its functions.

    Get one from `anyiii.engine.run()` (or `anyiii.testing.running_engine()`). `url` is
    the worker WebSocket address to give workers (`ws://host:port`); `http_url` is the base
    address of `http` triggers; `memory_transport_opener()` connects workers without
    sockets.
    """

    def __init__(
        self,
        router: Router,
        settings: EngineSettings,
        storage: Storage | None = None,
        channels: ChannelHub | None = None,
    ) -> None:
        self._router = router
        self.channels = ChannelHub(anyio.current_time) if channels is None else channels
        """The data channels (spec §12); the router creates them for `engine::channels::create`."""
        self._settings = settings
        router.http_routes.middleware = settings.http_middleware
        self._writes = WritePipeline(storage or MemoryStorage(), self._perform)
        self._links: dict[int, _Link] = {}
        self._waiters: dict[str, OneShot[Raw, ErrorBody]] = {}
        """The engine's own calls (an HTTP request's handler, `invoke`) by invocation id."""
        self._timers_changed = anyio.Event()
        self._http_calls = HttpCaller(self._http_answered)
        """Sends the requests of HTTP-invoked functions (started by `run()`)."""
        memory = settings.memory
        self.unfinished = SharedBudget(memory.unfinished_messages, what="unfinished messages")
        """Shared by the WebSocket listeners' transports: bytes of messages still arriving."""
        self.send_queues = SharedBudget(memory.send_queues, what="send queues")
        """Shared by the WebSocket listeners' transports: bytes queued for their peers."""
        self._stopping = False
        self._tasks: anyio.abc.TaskGroup | None = None
        """The task group of `run()`: in-memory connections are served in it."""
        self.host = ""
        self.port = 0
        self.http_port: int | None = None
        self.stream_port: int | None = None
        self.rbac_ports: tuple[int, ...] = ()
        """The RBAC listeners' ports, in `settings.all_rbac_listeners` order."""

    @property
    def rbac_port(self) -> int | None:
        """The first RBAC listener's port (`settings.rbac`'s, if set), or None; all of
        them are in `rbac_ports`."""
        return self.rbac_ports[0] if self.rbac_ports else None

    @property
    def url(self) -> str:
        """The worker WebSocket address, e.g. `ws://127.0.0.1:49134`."""
        return f"ws://{url_host(self.host)}:{self.port}"

    @property
    def http_url(self) -> str | None:
        """The REST base address for `http` triggers, or None when HTTP is disabled."""
        if self.http_port is None:
            return None
        return f"http://{url_host(self.host)}:{self.http_port}"

    @property
    def stream_url(self) -> str | None:
        """The stream subscriber WebSocket address (browsers), or None when not served."""
        if self.stream_port is None:
            return None
        return f"ws://{url_host(self.host)}:{self.stream_port}"

    @property
    def http_routes(self) -> HttpRoutes:
        """The `http` trigger routes currently bound."""
        return self._router.http_routes

    @property
    def worker_count(self) -> int:
        """How many worker connections are open."""
        return len(self._links)

    # --- in-memory connections -----------------------------------------------------------------

    def memory_transport_opener(self) -> Callable[[], AbstractAsyncContextManager[Transport]]:
        """An opener of in-memory connections to this engine, for `anyiii.connect`.

        `anyiii.connect("ws://memory", transport=engine.memory_transport_opener())` connects
        a worker without a socket (the URL is not used). Each time it is called the opener
        makes a connected pair of in-memory transports and serves the engine's end exactly
        like an accepted WebSocket, with the engine's message and queue limits. That end is
        served by a task of the engine's own, so no connection outlives the engine's
        `async with` block. Opening one after the block has begun to exit raises
        `ConnectError`.
        """
        settings = self._settings
        limits = TransportLimits(
            max_message_size=settings.max_message_size, max_queue_bytes=settings.max_queue_bytes
        )

        @asynccontextmanager
        async def open_connection() -> AsyncIterator[Transport]:
            if self._tasks is None or self._stopping:
                raise ConnectError("the embedded engine is not running")
            client, server = memory_transport_pair(limits=limits)
            self._tasks.start_soon(self._serve_transport, server)
            async with client:
                yield client

        return open_connection

    # --- calling functions ---------------------------------------------------------------------

    async def invoke(
        self,
        function_id: str,
        data: Raw,
        *,
        metadata: Raw | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[Raw | None, ErrorBody | None]:
        """Call a function on the engine's behalf and wait for its result or error.

        Cancelling the wait (a timeout scope, say) abandons the call: its late result is
        dropped. The protocol has no cancel frame, so the worker is not told.
        """
        invocation_id, actions = self._router.call(
            function_id, data, metadata=metadata, namespace=namespace
        )
        waiter: OneShot[Raw, ErrorBody] = OneShot()
        self._waiters[invocation_id] = waiter
        try:
            self._perform(actions)
            await waiter.wait()
            return waiter.result, waiter.error
        finally:
            if self._waiters.pop(invocation_id, None) is not None:
                self._router.abandon(invocation_id)

    # --- carrying out the router's decisions ---------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action.conn, action.data)
            elif isinstance(action, Close):
                self._drop(action.conn, action.code, action.reason)
            elif isinstance(action, Completed):
                waiter = self._waiters.pop(action.invocation_id, None)
                if waiter is not None:
                    waiter.resolve(action.result, action.error)
                else:
                    self._perform(
                        self._router.completed(action.invocation_id, action.result, action.error)
                    )
            elif isinstance(action, Persist):
                self._writes.submit(action)
            elif isinstance(action, Callback):
                action.run()
            elif isinstance(action, HttpCall):
                self._http_calls.start(action)
        if self._router.timers_changed:
            self._router.timers_changed = False
            self._timers_changed.set()

    def _http_answered(self, invocation_id: str, outcome: HttpResponse | ErrorBody) -> None:
        self._perform(self._router.http_answered(invocation_id, outcome))

    def _send(self, conn: int, data: bytes) -> None:
        link = self._links.get(conn)
        if link is None:
            return
        try:
            link.transport.send_nowait(data)
        except SendQueueFull:
            logger.warning("worker connection %d stopped reading; disconnecting it", conn)
            self._drop(conn, 1008, "slow consumer: the engine's send queue overflowed")
        except ConnectionClosed:
            pass  # its reader task is already on the way out and will clean up

    def _drop(self, conn: int, code: int, reason: str) -> None:
        """Disconnect a worker now: its calls are stopped and its registrations removed at
        once; its socket is closed in the background (a write stuck on a peer that does not
        read is given up after the shutdown timeout)."""
        link = self._links.pop(conn, None)
        if link is None:
            return
        link.close_code, link.close_reason = code, reason
        self._perform(self._router.close(conn))
        if link.tasks is not None:
            link.tasks.start_soon(self._close_link, link)
        else:
            link.scope.cancel()

    async def _close_link(self, link: _Link) -> None:
        with anyio.move_on_after(self._settings.shutdown_timeout, shield=True):
            await link.transport.aclose(link.close_code, link.close_reason)
        link.scope.cancel()

    # --- tasks ---------------------------------------------------------------------------------

    async def _serve_transport(self, transport: Transport, gate: Gate | None = None) -> None:
        """One accepted WebSocket: a worker (its frames through `gate` on the RBAC
        listener), or the telemetry socket we drain and ignore."""
        if transport.path.split("?", 1)[0] == TELEMETRY_PATH:
            await self._discard(transport)
            return
        channel_end = parse_channel_target(transport.path)
        if channel_end is not None:
            await serve_channel_end(transport, self.channels, channel_end)
            return
        if self._stopping:
            await transport.aclose(1001, "engine shutting down")
            return
        conn, actions = self._router.open(peer=transport.remote_address)
        link = _Link(transport, anyio.CancelScope())
        self._links[conn] = link
        try:
            self._perform(actions)
            with link.scope:
                async with anyio.create_task_group() as tg:
                    link.tasks = tg
                    tg.start_soon(transport.run_writer)
                    settings = self._settings
                    if settings.ping_interval is not None:
                        tg.start_soon(
                            keep_alive, transport, settings.ping_interval, settings.ping_timeout
                        )
                    await self._read(conn, transport, gate)
                    tg.cancel_scope.cancel()
        except ConnectionClosed:
            pass
        finally:
            if self._links.pop(conn, None) is not None:
                self._perform(self._router.close(conn))
            with anyio.move_on_after(self._settings.shutdown_timeout, shield=True):
                await transport.aclose(link.close_code, link.close_reason)

    def _accepts(self, target: str) -> bool:
        """Whether to upgrade a request for `target` (404 otherwise): the worker and
        telemetry sockets, and the data plane's sockets of channels that exist (§12)."""
        if target.split("?", 1)[0] in (WORKER_PATH, TELEMETRY_PATH):
            return True
        channel_end = parse_channel_target(target)
        return channel_end is not None and (
            self.channels.find(channel_end.channel_id, channel_end.access_key) is not None
        )

    async def _read(self, conn: int, transport: Transport, gate: Gate | None) -> None:
        router = self._router
        while True:
            try:
                messages = await transport.receive_some()
            except ConnectionClosed:
                return
            if gate is None:
                self._perform(router.receive_many(conn, messages))
            else:
                await gate.receive(conn, messages)
            await self._writes.wait_for_room()

    async def _discard(self, transport: Transport) -> None:
        """`/otel`: accept and discard, so SDKs with telemetry on do not log errors."""
        try:
            while True:
                await transport.receive()
        except ConnectionClosed:
            return

    async def _run_timers(self) -> None:
        while True:
            deadline = self._router.next_deadline()
            delay = math.inf if deadline is None else max(0.0, deadline - anyio.current_time())
            self._timers_changed = anyio.Event()
            with anyio.move_on_after(delay):
                await self._timers_changed.wait()
            self._perform(self._router.tick())

    async def _stop(self) -> None:
        """Answer everyone still waiting, then close every worker socket, all bounded."""
        self._stopping = True
        with anyio.move_on_after(self._settings.shutdown_timeout, shield=True):
            await self._writes.flush()  # acknowledged writes reach their callers first
        actions = self._router.shutdown()
        self.channels.close_all()
        closes = [a for a in actions if isinstance(a, Close)]
        self._perform([a for a in actions if not isinstance(a, Close)])
        with anyio.move_on_after(self._settings.shutdown_timeout, shield=True):
            async with anyio.create_task_group() as tg:
                for close in closes:
                    link = self._links.get(close.conn)
                    if link is not None:
                        tg.start_soon(link.transport.aclose, close.code, close.reason)
