"""What one worker keeps across its connections, and how it runs each of them.

A worker goes through connections one after another (reconnects). `Runtime` holds what
outlives any one of them: the declarative registry and the handler tables, the invocation
runner, the pending outgoing calls, the connection state users watch, the ids the engine
gave the last connection (for `reattach`), counters, and how the worker ended. It runs each
connection as a `Session` with a fresh sans-IO core.

The supervision loop in `lifecycle.py` drives it only through the `Supervised` protocol
declared there; the public `Worker` is a facade over it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from .._errors import ConnectionClosed, InvocationError
from .._protocol.codes import INVOCATION_STOPPED
from .._protocol.registry import Registry, WorkerInfo
from .._protocol.worker import WorkerConnection
from .._transport import Transport
from .calls import PendingCalls
from .channel_plane import ChannelPlane
from .channels import channel_resolver
from .handlers import Handler
from .invocations import InvocationRunner, WorkerLimits
from .session import Session
from .state import ConnectionState, StateBroadcaster
from .telemetry import Telemetry

__all__ = ["Runtime", "ShutdownTimeouts"]


@dataclass(frozen=True, slots=True)
class ShutdownTimeouts:
    """How long each step of leaving `connect()` may take, in seconds.

    `drain`: running handlers may finish; `cancel`: cancelled handlers may answer
    `invocation_cancelled`; `close`: the WebSocket close handshake; `release`: trigger
    handlers are told to drop the bindings the connection carried. Leaving the block takes
    at most `total` seconds.
    """

    drain: float = 5.0
    cancel: float = 1.0
    close: float = 5.0
    release: float = 5.0

    def __post_init__(self) -> None:
        for name in ("drain", "cancel", "close", "release"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name}_timeout must be a number of seconds >= 0, not {value!r}")

    @property
    def total(self) -> float:
        """The documented bound of leaving `connect()`: every wait counted."""
        return self.drain + self.cancel + self.close + self.release


class Runtime:
    """A worker's state across connections (see the module docstring)."""

    def __init__(
        self,
        *,
        info: WorkerInfo,
        namespace: str | None,
        limits: WorkerLimits,
        shutdown: ShutdownTimeouts,
        telemetry: Telemetry | None = None,
        channels: ChannelPlane | None = None,
    ) -> None:
        self.info = info
        self.channels = channels
        """Where this worker's channel ends connect (None: channels are not available)."""
        self.namespace = namespace
        self.limits = limits
        self.shutdown = shutdown
        self.telemetry = telemetry
        self.registry = Registry()
        self.handlers: dict[str, Handler] = {}
        self.trigger_handlers: dict[str, Any] = {}
        self.runner = InvocationRunner(
            self.handlers,
            limits,
            telemetry=telemetry,
            refs=channel_resolver(channels) if channels is not None else None,
        )
        self.pending = PendingCalls()
        self.state = StateBroadcaster()
        self.current: Session | None = None
        self.connections = 0
        self.failure: BaseException | None = None
        self.finished = anyio.Event()
        self.token: anyio.lowlevel.EventLoopToken | None = None
        self.last_worker_id: str | None = None
        self._last_reattach_token: str | None = None
        self._connected = anyio.Event()
        self._late_results = 0
        self._violations = 0
        self._at_finish: list[Callable[[], None]] = []

    # --- what the supervisor sees (lifecycle.Supervised) --------------------------------------

    @property
    def stopping(self) -> bool:
        """The worker is leaving: no reconnect, no new work."""
        return self.runner.stopping

    def set_state(self, state: ConnectionState) -> None:
        """Tell everyone watching the connection state."""
        self.state.set(state)

    async def run_connection(self, transport: Transport, on_open: Callable[[], None]) -> None:
        """Serve one connection until it ends; raises ConnectionClosed when it does."""
        session = Session(
            transport,
            WorkerConnection(namespace=self.namespace),
            runner=self.runner,
            pending=self.pending,
            trigger_handlers=self.trigger_handlers,
            on_registered=self._registered,
            on_fatal=self._fatal,
            on_lost=self._lost,
        )
        opening = session.core.open_sequence(
            self.registry,
            self.info,
            previous_worker_id=self.last_worker_id,
            previous_reattach_token=self._last_reattach_token,
        )

        def opened() -> None:
            self.current = session
            self.connections += 1
            self._connected.set()
            on_open()

        try:
            await session.run(opening, opened)
        finally:
            await session.release_bindings(self.shutdown.release)

    async def drain(self) -> None:
        """Stop taking work, let running handlers finish, then cancel what is left; bounded
        by the drain and cancel timeouts."""
        session = self.current
        self.runner.stopping = True
        if session is not None:
            session.start_closing()
        await self.runner.drain(self.shutdown.drain, self.shutdown.cancel)

    async def close_connection(self) -> None:
        """Close the current connection politely, bounded by the close timeout."""
        session = self.current
        if session is not None:
            with anyio.move_on_after(self.shutdown.close):
                await session.transport.aclose(1000, "worker shutting down")

    def finish(self, failure: BaseException | None) -> None:
        """The worker is done: announce `disconnected` (unless it failed), wake
        `serve_forever()`, end every subscription."""
        if failure is not None and self.failure is None:
            self.failure = failure
        if self.state.state is not ConnectionState.FAILED:
            self.state.set(ConnectionState.DISCONNECTED)
        self.finished.set()
        self._connected.set()
        self.state.close()
        for callback in self._at_finish:
            callback()
        self._at_finish.clear()

    # --- what the facade uses -------------------------------------------------------------------

    def at_finish(self, callback: Callable[[], None]) -> None:
        """Run `callback` once when the worker finishes (closing a subscription, say)."""
        self._at_finish.append(callback)

    async def session_for_new_work(self) -> Session:
        """The current connection, waiting (within the caller's scope) while reconnecting."""
        while True:
            session = self.current
            if session is not None and session.open_for_new_work:
                return session
            if self.stopping or self.finished.is_set():
                raise InvocationError(
                    INVOCATION_STOPPED, "the worker is shutting down", function_id=None
                )
            await self._connected.wait()

    @property
    def late_results(self) -> int:
        """Answers that came after their call stopped waiting, over all connections."""
        session = self.current
        return self._late_results + (session.core.late_results if session else 0)

    @property
    def protocol_violations(self) -> int:
        """Invalid frames the engine sent, over all connections."""
        session = self.current
        return self._violations + (session.core.violations if session else 0)

    # --- what sessions report -------------------------------------------------------------------

    def _registered(self, worker_id: str, reattach_token: str | None) -> None:
        self.last_worker_id = worker_id
        self._last_reattach_token = reattach_token

    def _fatal(self, error: ConnectionClosed) -> None:
        self.failure = error

    def _lost(self, session: Session) -> None:
        if self.current is session:
            self.current = None
            self._connected = anyio.Event()
        self._late_results += session.core.late_results
        self._violations += session.core.violations
