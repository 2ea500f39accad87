"""The `Worker`: what `async with anyiii.connect() as worker:` gives you.

One worker lives as long as its `connect()` block and may go through several connections
(reconnects). Its registrations live in a declarative `Registry`, replayed on every new
connection; each connection gets a fresh sans-IO `WorkerConnection` core. One reader task
per connection only dispatches: it never runs user code and never waits on it. Each inbound
invocation runs in its own task, inside the connection's task group, under a concurrency
limit; outgoing calls wait on a pending slot registered before their frame is sent.
"""

from __future__ import annotations

import inspect
import logging
import traceback
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import msgspec
from msgspec import Raw

from .._errors import ConnectionClosed, InvocationError, LocalProtocolError
from .._protocol import events as ev
from .._protocol.codes import FUNCTION_NOT_FOUND, INVOCATION_FAILED, INVOCATION_STOPPED
from .._protocol.frames import (
    EnqueueAction,
    ErrorBody,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    VoidAction,
    decode_value,
    to_raw,
)
from .._protocol.registry import Registry, WorkerInfo
from .._protocol.state import State
from .._protocol.worker import WorkerConnection
from .._transport import Transport
from .calls import PendingCall, parse_request
from .context import Context, TraceContext, enter_context, leave_context, outgoing_trace
from .discovery import FUNCTIONS_AVAILABLE, FunctionInfo, FunctionsSubscription, parse_functions
from .handlers import Handler, HandlerFunction, adapt_handler
from .state import ConnectionState, StateBroadcaster, StateCallback, StateSubscription
from .streams import StreamHandle, register_stream
from .telemetry import Telemetry
from .trigger_types import ActiveBinding, binding_config

__all__ = [
    "FunctionHandle",
    "Trigger",
    "TriggerTypeHandle",
    "Worker",
    "WorkerLimits",
    "WorkerStatistics",
]

logger = logging.getLogger("anyiii.worker")

F = TypeVar("F", bound=HandlerFunction)

TIMEOUT: Final = "TIMEOUT"
WORKER_BUSY: Final = "worker_busy"
WORKER_STOPPING: Final = "worker_stopping"
INVOCATION_CANCELLED: Final = "invocation_cancelled"
TRIGGER_TYPE_NOT_FOUND: Final = "trigger_type_not_found"
BINDING_RELEASE_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """Bounds on what one worker takes on (see docs/backpressure.md).

    `max_concurrency` handlers run at once; up to `max_queued` more wait for a slot; an
    invocation beyond both is answered at once with the error `worker_busy`, so the reader
    never blocks and nothing queues without bound. `max_threads` bounds sync handlers
    running in threads. `invocation_timeout_ms` is the default wait for a call's result.
    """

    max_concurrency: int = 256
    max_queued: int = 4096
    max_threads: int = 40
    invocation_timeout_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a worker's counters."""

    connection_state: ConnectionState
    connections: int
    pending_calls: int
    running_invocations: int
    late_results: int
    protocol_violations: int
    rejected_busy: int


@dataclass(slots=True, eq=False)
class _Link:
    """One live connection: its transport, its core, its task group."""

    transport: Transport
    core: WorkerConnection
    tasks: anyio.abc.TaskGroup
    invocations: dict[str, anyio.CancelScope] = field(default_factory=dict)
    bindings: dict[str, ActiveBinding] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """It can still carry answers to invocations already in flight."""
        return self.core.state in (State.CONNECTING, State.OPEN, State.CLOSING) and not (
            self.transport.closed
        )

    @property
    def open_for_new_work(self) -> bool:
        """It accepts new calls and registrations (not closing, not lost)."""
        return self.core.state in (State.CONNECTING, State.OPEN)


class FunctionHandle:
    """A registered function: `await handle.unregister()` removes it."""

    def __init__(self, worker: Worker, function_id: str) -> None:
        self._worker = worker
        self.id = function_id

    async def unregister(self) -> None:
        """Stop serving this function (on this and every later connection)."""
        self._worker.unregister_function(self.id)

    def __repr__(self) -> str:
        return f"FunctionHandle({self.id!r})"


class Trigger:
    """A registered trigger binding: `await trigger.unregister()` removes it."""

    def __init__(self, worker: Worker, frame: RegisterTrigger) -> None:
        self._worker = worker
        self.id = frame.id
        self.trigger_type = frame.trigger_type
        self.function_id = frame.function_id

    async def unregister(self) -> None:
        """Remove the binding (on this and every later connection)."""
        self._worker._unregister_trigger(self.id, self.trigger_type)

    def __repr__(self) -> str:
        return f"Trigger({self.trigger_type!r} → {self.function_id!r}, id={self.id!r})"


class TriggerTypeHandle:
    """A trigger type this worker provides: `await handle.unregister()` stops providing it."""

    def __init__(self, worker: Worker, type_id: str) -> None:
        self._worker = worker
        self.id = type_id

    async def unregister(self) -> None:
        """Stop providing the type; its handler is told to drop every binding it holds."""
        self._worker.unregister_trigger_type(self.id)

    def __repr__(self) -> str:
        return f"TriggerTypeHandle({self.id!r})"


class Worker:
    """A connected iii worker. Get one from `anyiii.connect()`; do not construct it."""

    def __init__(
        self,
        *,
        info: WorkerInfo,
        namespace: str | None,
        limits: WorkerLimits,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._info = info
        self._telemetry = telemetry
        self._namespace = namespace
        self._limits = limits
        self._registry = Registry()
        self._handlers: dict[str, Handler] = {}
        self._trigger_handlers: dict[str, Any] = {}
        self._function_subscriptions: list[FunctionsSubscription] = []
        self._pending: dict[str, PendingCall] = {}
        self._link: _Link | None = None
        self._connected = anyio.Event()
        self._state = StateBroadcaster()
        self._slots = anyio.CapacityLimiter(limits.max_concurrency)
        self._threads = anyio.CapacityLimiter(limits.max_threads)
        self._running = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._stopping = False
        self._previous_worker_id: str | None = None
        self._previous_token: str | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._connections = 0
        self._late_results = 0
        self._violations = 0
        self._busy = 0
        self._failure: BaseException | None = None
        self._finished = anyio.Event()

    # --- state -----------------------------------------------------------------------------

    @property
    def connection_state(self) -> ConnectionState:
        """disconnected, connecting, connected, reconnecting or failed."""
        return self._state.state

    @property
    def worker_id(self) -> str | None:
        """The engine's id for the current connection (None until it said so)."""
        link = self._link
        return link.core.worker_id if link is not None else self._previous_worker_id

    @property
    def name(self) -> str:
        """The worker name sent to the engine."""
        return self._info.name

    def on_connection_state_change(self, callback: StateCallback) -> Callable[[], None]:
        """Call `callback(state)` whenever the connection state changes; returns `stop()`."""
        return self._state.add_callback(callback)

    def connection_states(self) -> StateSubscription:
        """Async iterator of connection states (starting with the current one)."""
        return self._state.subscribe()

    def statistics(self) -> WorkerStatistics:
        """Counters, as an immutable snapshot."""
        link = self._link
        return WorkerStatistics(
            connection_state=self.connection_state,
            connections=self._connections,
            pending_calls=len(self._pending),
            running_invocations=self._running,
            late_results=self._late_results + (link.core.late_results if link else 0),
            protocol_violations=self._violations + (link.core.violations if link else 0),
            rejected_busy=self._busy,
        )

    async def serve_forever(self) -> None:
        """Wait until the worker stops; raises what stopped it (e.g. `ConnectionClosed`).

        This replaces the official SDKs' `while True: await asyncio.sleep(60)`.
        """
        await self._finished.wait()
        if self._failure is not None:
            raise self._failure

    # --- registrations -----------------------------------------------------------------------

    def register_function(
        self,
        function_id: str,
        handler: HandlerFunction,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
    ) -> FunctionHandle:
        """Serve `function_id` with `handler`, now and after every reconnect.

        `request_format` / `response_format` default to JSON Schemas derived from the
        handler's annotations (msgspec Structs, dataclasses, typed containers).
        """
        if not function_id:
            raise ValueError("function_id must not be empty")
        adapted = adapt_handler(handler)
        request = request_format if request_format is not None else adapted.request_format
        response = response_format if response_format is not None else adapted.response_format
        frame = RegisterFunction(
            id=function_id,
            description=description,
            request_format=to_raw(request) if request is not None else msgspec.UNSET,
            response_format=to_raw(response) if response is not None else msgspec.UNSET,
            metadata=to_raw(metadata) if metadata is not None else msgspec.UNSET,
        )
        self._handlers[function_id] = adapted
        self._registry.add(frame)
        self._send_registration(lambda core: core.register(frame))
        return FunctionHandle(self, function_id)

    def function(
        self,
        function_id: str,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
    ) -> Callable[[F], F]:
        """Decorator form of `register_function`; returns the function unchanged."""

        def decorate(handler: F) -> F:
            self.register_function(
                function_id,
                handler,
                description=description,
                metadata=metadata,
                request_format=request_format,
                response_format=response_format,
            )
            return handler

        return decorate

    def unregister_function(self, function_id: str) -> None:
        """Stop serving `function_id`."""
        self._handlers.pop(function_id, None)
        if self._registry.remove_function(function_id) is not None:
            self._send_registration(
                lambda core: core.unregister(UnregisterFunction(id=function_id))
            )

    async def register_trigger(
        self,
        trigger_type: str,
        function_id: str,
        config: Any = None,
        *,
        metadata: Any = None,
    ) -> Trigger:
        """Bind a trigger of `trigger_type` (e.g. `"http"`) to `function_id`.

        The engine answers only when a binding fails; such failures are logged.
        """
        await anyio.lowlevel.checkpoint()
        return self._bind(trigger_type, function_id, config, metadata)

    def _bind(self, trigger_type: str, function_id: str, config: Any, metadata: Any) -> Trigger:
        if not trigger_type or not function_id:
            raise ValueError("a trigger needs a non-empty trigger_type and function_id")
        frame = RegisterTrigger(
            id=str(uuid.uuid4()),
            trigger_type=trigger_type,
            function_id=function_id,
            config=to_raw(config),
            metadata=to_raw(metadata) if metadata is not None else msgspec.UNSET,
            namespace=self._namespace,
        )
        self._registry.add(frame)
        self._send_registration(lambda core: core.register(frame))
        return Trigger(self, frame)

    def _unregister_trigger(self, trigger_id: str, trigger_type: str) -> None:
        if self._registry.remove_trigger(trigger_id) is not None:
            frame = UnregisterTrigger(id=trigger_id, trigger_type=trigger_type)
            self._send_registration(lambda core: core.unregister(frame))

    def register_trigger_type(
        self,
        trigger_type_id: str,
        handler: Any,
        *,
        description: str = "",
        trigger_request_format: Any = None,
        call_request_format: Any = None,
    ) -> TriggerTypeHandle:
        """Provide the trigger type `trigger_type_id`, now and after every reconnect.

        `handler` is a `TriggerHandler` (any object with `register_trigger(config)` and
        `unregister_trigger(config)`, async or plain). Each binding of this type, by any
        worker, reaches `handler.register_trigger` with a `TriggerConfig`; returning accepts
        it, raising refuses it and the binder's engine reports `trigger_registration_failed`
        with the exception's message. Fire a binding by calling its `function_id`.
        """
        if not trigger_type_id:
            raise ValueError("trigger_type_id must not be empty")
        for method in ("register_trigger", "unregister_trigger"):
            if not callable(getattr(handler, method, None)):
                raise TypeError(f"a trigger handler needs a {method}(config) method")
        frame = RegisterTriggerType(
            id=trigger_type_id,
            description=description,
            trigger_request_format=(
                to_raw(trigger_request_format)
                if trigger_request_format is not None
                else msgspec.UNSET
            ),
            call_request_format=(
                to_raw(call_request_format) if call_request_format is not None else msgspec.UNSET
            ),
            namespace=self._namespace,
        )
        self._trigger_handlers[trigger_type_id] = handler
        self._registry.add(frame)
        self._send_registration(lambda core: core.register(frame))
        return TriggerTypeHandle(self, trigger_type_id)

    def unregister_trigger_type(self, trigger_type_id: str) -> None:
        """Stop providing `trigger_type_id`; its handler is told to drop each binding.

        The real engine ignores the frame this sends (spec §15.1) and keeps the type until
        the connection ends; bindings it still delivers are refused with
        `trigger_type_not_found`.
        """
        self._trigger_handlers.pop(trigger_type_id, None)
        if self._registry.remove_trigger_type(trigger_type_id) is None:
            return
        frame = UnregisterTriggerType(id=trigger_type_id, namespace=self._namespace)
        self._send_registration(lambda core: core.unregister(frame))
        link = self._link
        if link is not None:
            for binding_id, binding in list(link.bindings.items()):
                if binding.config.trigger_type == trigger_type_id:
                    del link.bindings[binding_id]
                    link.tasks.start_soon(binding.unregister)

    def on_functions_available(
        self, callback: Callable[[list[FunctionInfo]], object]
    ) -> Callable[[], None]:
        """Call `callback(functions)` whenever the engine's set of functions changes.

        It binds the engine's `engine::functions-available` trigger to a private function of
        this worker; `callback` gets the full list of `FunctionInfo` (a plain function runs
        in a worker thread). The engine says nothing until the first change after
        subscribing. Returns `stop()`.
        """
        is_async = inspect.iscoroutinefunction(callback)

        async def notified(payload: Any) -> None:
            functions = parse_functions(payload)
            if is_async:
                await callback(functions)  # type: ignore[misc]
            else:
                await anyio.to_thread.run_sync(callback, functions, limiter=self._threads)

        return self._subscribe_functions(notified)

    def functions_available(self) -> FunctionsSubscription:
        """`on_functions_available` as an async iterator (use it in `async with`)."""
        subscription = FunctionsSubscription()

        async def notified(payload: Any) -> None:
            subscription._push(parse_functions(payload))

        subscription._stop = self._subscribe_functions(notified)
        self._function_subscriptions.append(subscription)
        return subscription

    def _subscribe_functions(self, notified: HandlerFunction) -> Callable[[], None]:
        function_id = f"anyiii::functions-available::{uuid.uuid4().hex[:12]}"
        self.register_function(function_id, notified, metadata={"internal": True})
        trigger = self._bind(FUNCTIONS_AVAILABLE, function_id, {}, None)

        def stop() -> None:
            self._unregister_trigger(trigger.id, trigger.trigger_type)
            self.unregister_function(function_id)

        return stop

    def _send_registration(self, produce: Callable[[WorkerConnection], bytes]) -> None:
        """Send a registration now if connected; otherwise the next connection replays it."""
        link = self._link
        if link is None or not link.open_for_new_work:
            return
        with suppress(ConnectionClosed):  # if the link is going, its successor replays
            link.transport.send_nowait(produce(link.core))

    def create_stream(self, name: str, impl: Any) -> StreamHandle:
        """Serve the storage of stream `name` with `impl` (an `IStream`).

        Registers `stream::get(<name>)`, `stream::set(<name>)`, `stream::delete(<name>)`,
        `stream::list(<name>)` and `stream::list_groups(<name>)`, which the real engine
        calls instead of its own store for that stream (spec §10.4).
        """
        return register_stream(self, name, impl)

    # --- calls -------------------------------------------------------------------------------

    async def trigger_async(self, request: Any) -> Any:
        """Call a function through the engine and return its result.

        `request` has the official SDK's shape (see `TriggerRequest`). A void call returns
        None as soon as it is sent. Raises `InvocationError` when the call fails: the
        callee raised (`invocation_failed`), nobody serves it (`function_not_found`), the
        connection dropped (`invocation_stopped`, at once), or `timeout_ms` passed
        (`TIMEOUT`). Any cancel scope around the call works too: the pending slot is
        removed at once and a late result is dropped.
        """
        call = parse_request(request)
        timeout_ms = call.timeout_ms or self._limits.invocation_timeout_ms
        try:
            with anyio.fail_after(timeout_ms / 1000):
                return await self._call(call.function_id, call, timeout_ms)
        except TimeoutError:
            raise InvocationError(
                TIMEOUT,
                f"invocation timed out after {timeout_ms}ms",
                function_id=call.function_id,
            ) from None

    async def _call(self, function_id: str, call: Any, timeout_ms: int) -> Any:
        link = await self._wait_connected()
        data = to_raw(call.payload)
        metadata = to_raw(call.metadata) if call.metadata is not None else None
        traceparent, baggage = (
            self._telemetry.outgoing() if self._telemetry is not None else outgoing_trace()
        )
        if isinstance(call.action, VoidAction):
            frame = link.core.call_void(
                function_id,
                data,
                metadata=metadata,
                namespace=call.namespace,
                traceparent=traceparent,
                baggage=baggage,
            )
            await link.transport.send(frame)
            return None
        queue = call.action.queue if isinstance(call.action, EnqueueAction) else None
        invocation_id, frame = link.core.call(
            function_id,
            data,
            metadata=metadata,
            namespace=call.namespace,
            enqueue=queue,
            traceparent=traceparent,
            baggage=baggage,
        )
        slot = PendingCall()
        self._pending[invocation_id] = slot
        try:
            await link.transport.send(frame)
            await slot.done.wait()
        finally:
            del self._pending[invocation_id]
            if not slot.done.is_set():
                link.core.forget_call(invocation_id)
        if slot.error is not None:
            raise InvocationError(
                slot.error.code,
                slot.error.message,
                function_id=function_id,
                stacktrace=slot.error.stacktrace,
                invocation_id=invocation_id,
            )
        return decode_value(slot.result) if slot.result is not None else None

    def trigger(self, request: Any) -> Any:
        """The blocking twin of `trigger_async`, for code running in a worker thread (a sync
        handler, or a thread started with `anyio.to_thread`). Never call it on the event
        loop's own thread: that would block the loop it waits on."""
        token = self._token
        if token is None:
            raise RuntimeError("the worker is not running")
        try:
            anyio.lowlevel.current_token()
        except RuntimeError:
            return anyio.from_thread.run(self.trigger_async, request, token=token)
        raise RuntimeError(
            "worker.trigger() blocks, so it cannot run on the event loop thread; "
            "use `await worker.trigger_async(...)` there"
        )

    async def _wait_connected(self) -> _Link:
        """The current connection, waiting (within the caller's scope) while reconnecting."""
        while True:
            link = self._link
            if link is not None and link.open_for_new_work:
                return link
            if self._stopping or self._finished.is_set():
                raise InvocationError(
                    INVOCATION_STOPPED, "the worker is shutting down", function_id=None
                )
            await self._connected.wait()

    # --- one connection --------------------------------------------------------------------

    async def _run_connection(self, transport: Transport, on_open: Callable[[], None]) -> None:
        """Serve one connection until it ends; raises ConnectionClosed when it does."""
        core = WorkerConnection(namespace=self._namespace)
        bindings: dict[str, ActiveBinding] = {}
        try:
            await self._serve(transport, core, bindings, on_open)
        finally:
            if bindings:
                await self._release_bindings(bindings)

    async def _serve(
        self,
        transport: Transport,
        core: WorkerConnection,
        bindings: dict[str, ActiveBinding],
        on_open: Callable[[], None],
    ) -> None:
        async with anyio.create_task_group() as tasks:
            link = _Link(transport, core, tasks, bindings=bindings)
            frames = core.open_sequence(
                self._registry,
                self._info,
                previous_worker_id=self._previous_worker_id,
                previous_reattach_token=self._previous_token,
            )
            for frame in frames:
                transport.send_nowait(frame)
            tasks.start_soon(transport.run_writer)
            self._link = link
            self._connections += 1
            self._connected.set()
            on_open()
            try:
                await self._read(link)
            finally:
                self._lose(link)
                tasks.cancel_scope.cancel()

    async def _read(self, link: _Link) -> None:
        transport, core = link.transport, link.core
        while True:
            data = await transport.receive()
            for event in core.receive(data):
                self._dispatch(link, event)

    def _dispatch(self, link: _Link, event: ev.Event) -> None:
        """Act on one event without ever waiting: the reader must keep reading."""
        if isinstance(event, ev.CallCompleted):
            slot = self._pending.get(event.invocation_id)
            if slot is not None:
                slot.resolve(event.result, None)
        elif isinstance(event, ev.CallFailed):
            slot = self._pending.get(event.invocation_id)
            if slot is not None:
                slot.resolve(None, event.error)
        elif isinstance(event, ev.InvocationRequested):
            self._start_invocation(link, event)
        elif isinstance(event, ev.InvalidInvocation):
            error = ErrorBody(INVOCATION_FAILED, f"malformed invocation: {event.message}")
            self._answer(link, event.invocation_id, error=error)
        elif isinstance(event, ev.Registered):
            self._previous_worker_id = event.worker_id
            self._previous_token = event.reattach_token
        elif isinstance(event, ev.PingReceived):
            self._send_nowait(link, link.core.pong())
        elif isinstance(event, ev.TriggerRegistrationFailed):
            logger.warning(
                "trigger %s (%s → %s) failed: %s",
                event.trigger_id,
                event.trigger_type,
                event.function_id,
                event.error.message,
            )
        elif isinstance(event, ev.RegistrationRefused):
            logger.warning("the engine refused a registration: %s", event)
            if event.fatal:
                self._failure = ConnectionClosed(1008, f"registration refused: {event.code}")
        elif isinstance(event, ev.EngineRefused):
            self._failure = ConnectionClosed(1008, f"{event.error.code}: {event.error.message}")
        elif isinstance(event, ev.ProtocolViolation):
            logger.warning("the engine sent something invalid: %s", event.error)
        elif isinstance(event, ev.TriggerBindingRequested):
            self._start_binding(link, event.binding)
        elif isinstance(event, ev.TriggerBindingRemoved):
            binding = link.bindings.pop(event.trigger_id, None)
            if binding is not None:
                link.tasks.start_soon(binding.unregister)
        else:
            logger.debug("engine event %r", event)

    def _start_binding(self, link: _Link, frame: RegisterTrigger) -> None:
        """Hand a binding of a type we provide to its handler; answer when it has decided."""
        handler = self._trigger_handlers.get(frame.trigger_type)
        if handler is None:
            message = f"this worker does not provide the trigger type {frame.trigger_type!r}"
            error = ErrorBody(TRIGGER_TYPE_NOT_FOUND, message)
            self._send_nowait(link, link.core.answer_binding(frame.id, error))
            return
        previous = link.bindings.get(frame.id)
        binding = ActiveBinding(binding_config(frame), handler)
        link.bindings[frame.id] = binding
        link.tasks.start_soon(self._register_binding, link, binding, previous)

    async def _register_binding(
        self, link: _Link, binding: ActiveBinding, previous: ActiveBinding | None
    ) -> None:
        if previous is not None:  # delivered again: the handler sees unregister, register
            await previous.unregister()
        error = await binding.register()
        if link.usable:
            try:
                frame = link.core.answer_binding(binding.config.id, error)
            except LocalProtocolError:
                return  # the connection ended while the handler decided
            self._send_nowait(link, frame)

    async def _release_bindings(self, bindings: dict[str, ActiveBinding]) -> None:
        """The connection is gone, and its bindings with it: tell the handlers (bounded)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(BINDING_RELEASE_TIMEOUT):
            for binding in list(bindings.values()):
                await binding.unregister()
        bindings.clear()

    def _lose(self, link: _Link) -> None:
        """The connection ended: fail every call waiting on it, at once."""
        if self._link is link:
            self._link = None
            self._connected = anyio.Event()
        link.core.receive(None)  # everything this connection carried is abandoned
        self._late_results += link.core.late_results
        self._violations += link.core.violations
        stopped = ErrorBody(INVOCATION_STOPPED, "Invocation stopped: the connection was lost")
        for slot in self._pending.values():
            slot.resolve(None, stopped)

    # --- inbound invocations -------------------------------------------------------------------

    def _start_invocation(self, link: _Link, event: ev.InvocationRequested) -> None:
        invocation_id = event.invocation_id
        handler = self._handlers.get(event.function_id)
        if handler is None:
            if invocation_id is not None:
                message = f"Function '{event.function_id}' not found"
                self._answer(link, invocation_id, error=ErrorBody(FUNCTION_NOT_FOUND, message))
            return
        if self._stopping:
            if invocation_id is not None:
                error = ErrorBody(WORKER_STOPPING, "the worker is shutting down")
                self._answer(link, invocation_id, error=error)
            return
        if self._running >= self._limits.max_concurrency + self._limits.max_queued:
            self._busy += 1
            if invocation_id is not None:
                message = f"the worker is at its limit of {self._running} invocations"
                self._answer(link, invocation_id, error=ErrorBody(WORKER_BUSY, message))
            return
        self._running += 1
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        scope = anyio.CancelScope()
        if invocation_id is not None:
            link.invocations[invocation_id] = scope
        # An explicit name spares anyio from deriving one for every invocation.
        link.tasks.start_soon(self._run_invocation, link, event, handler, scope, name="invocation")

    async def _run_invocation(
        self, link: _Link, event: ev.InvocationRequested, handler: Handler, scope: anyio.CancelScope
    ) -> None:
        invocation_id = event.invocation_id
        try:
            with scope:
                try:
                    result = await self._run_handler(handler, event)
                except anyio.get_cancelled_exc_class():
                    if invocation_id is not None:
                        error = ErrorBody(INVOCATION_CANCELLED, "the invocation was cancelled")
                        self._answer(link, invocation_id, error=error)
                    raise
                except Exception as exc:
                    if invocation_id is None:
                        logger.exception("void invocation of %s failed", event.function_id)
                        return
                    self._answer(link, invocation_id, error=_error_body(exc))
                    return
                if invocation_id is not None:
                    try:
                        encoded = to_raw(result)
                    except (TypeError, msgspec.EncodeError) as exc:
                        error = ErrorBody(
                            INVOCATION_FAILED, f"the result could not be encoded as JSON: {exc}"
                        )
                        self._answer(link, invocation_id, error=error)
                        return
                    self._answer(link, invocation_id, result=encoded)
        finally:
            if invocation_id is not None:
                link.invocations.pop(invocation_id, None)
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def _run_handler(self, handler: Handler, event: ev.InvocationRequested) -> Any:
        """Run the handler with its invocation context current (and its span, with OTel)."""
        context = Context(
            self,
            event.function_id,
            event.invocation_id,
            event.metadata,
            TraceContext(event.traceparent, event.baggage),
        )
        token = enter_context(context)
        try:
            if self._telemetry is None:
                return await self._run_in_slot(handler, event)
            with self._telemetry.invocation_span(
                event.function_id, event.invocation_id, event.traceparent, event.baggage
            ):
                return await self._run_in_slot(handler, event)
        finally:
            leave_context(token)

    async def _run_in_slot(self, handler: Handler, event: ev.InvocationRequested) -> Any:
        """Run the handler once one of `max_concurrency` slots is free."""
        try:
            # A free slot is taken without a checkpoint: two scheduling round trips fewer
            # per invocation than `async with limiter`, which matters at tens of thousands/s.
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._slots.acquire()
        try:
            return await handler.run(event.data, event.metadata, self._threads)
        finally:
            self._slots.release()

    def _answer(
        self,
        link: _Link,
        invocation_id: str,
        *,
        result: Raw | None = None,
        error: ErrorBody | None = None,
    ) -> None:
        """Send the one answer an invocation gets, if its connection can still carry it."""
        if not link.usable or invocation_id not in link.core.in_flight:
            return
        try:
            if error is not None:
                frame = link.core.fail(invocation_id, error)
            else:
                frame = link.core.complete(invocation_id, result)
        except LocalProtocolError:
            return  # the connection ended between the check and the answer
        self._send_nowait(link, frame)

    def _send_nowait(self, link: _Link, frame: bytes) -> None:
        try:
            link.transport.send_nowait(frame)
        except ConnectionClosed:
            if link.core.state not in (State.CLOSED, State.ERROR):
                link.core.send_failed()

    # --- shutdown ----------------------------------------------------------------------------

    async def _drain(self, grace: float) -> None:
        """Stop taking new work and wait up to `grace` seconds for running handlers, then cancel
        them (each answers its caller with an error while the connection still works)."""
        self._stopping = True
        link = self._link
        if link is not None and link.open_for_new_work:
            link.core.start_closing()
        with anyio.move_on_after(grace):
            await self._idle.wait()
        if link is not None and link.invocations:
            for scope in list(link.invocations.values()):
                scope.cancel()
            # Let the cancelled handlers queue their `invocation_cancelled` answers before
            # the connection closes; they only need to reach their next checkpoint.
            with anyio.move_on_after(1.0):
                await self._idle.wait()

    def _finish(self, failure: BaseException | None) -> None:
        """The worker is done: wake `serve_forever()` and end state subscriptions."""
        if failure is not None and self._failure is None:
            self._failure = failure
        self._finished.set()
        self._connected.set()
        self._state.close()
        for subscription in self._function_subscriptions:
            subscription.close()
        self._function_subscriptions.clear()

    def _set_state(self, state: ConnectionState) -> None:
        self._state.set(state)


def _error_body(exc: BaseException) -> ErrorBody:
    """The wire error for a handler exception, as the official SDKs send it."""
    stacktrace = "".join(traceback.format_exception(exc))
    return ErrorBody(INVOCATION_FAILED, str(exc) or type(exc).__name__, stacktrace)
