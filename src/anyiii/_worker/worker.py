"""The `Worker`: what `async with anyiii.connect() as worker:` gives you.

A facade over the worker's `Runtime`: it keeps the declarative registry and the handler
tables, turns `register_*` / `unregister_*` into registry changes (sent at once when a
connection is open, replayed on every new one), makes calls through the current
connection, and offers subscriptions and statistics. How connections run lives in
`session.py`, how invocations run in `invocations.py`, supervision and shutdown in
`lifecycle.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import msgspec

from .._concurrency import backend_clock
from .._protocol.codes import FUNCTIONS_AVAILABLE
from .._protocol.frames import (
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    to_raw,
)
from .._protocol.worker import WorkerConnection
from .calls import parse_request, timed_out
from .channels import Channel, create_channel
from .context import outgoing_trace
from .discovery import FunctionInfo, FunctionsSubscription, parse_functions
from .handlers import HandlerFunction, adapt_handler, call_user
from .handles import FunctionHandle, Trigger, TriggerTypeHandle, WorkerStatistics
from .http_functions import HttpAuth, http_function_frame
from .runtime import Runtime
from .state import ConnectionState, StateCallback, StateSubscription
from .streams import StreamHandle, register_stream
from .trigger_types import check_trigger_handler

__all__ = ["Servable", "Worker"]

F = TypeVar("F", bound=HandlerFunction)


class Servable(Protocol):
    """A declarative set of functions a worker can serve (an `anyiii.Registry`)."""

    def serve_on(self, worker: Worker) -> None:
        """Register every function of the set on `worker`."""
        ...


class Worker:
    """A connected iii worker. Get one from `anyiii.connect()`; do not construct it."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._clock: Callable[[], float] | None = None
        """The event loop's clock (`backend_clock`), taken at the first call."""
        self._registry = runtime.registry
        self._namespace = runtime.namespace
        runtime.runner.worker = self

    # --- state -----------------------------------------------------------------------------

    @property
    def connection_state(self) -> ConnectionState:
        """disconnected, connecting, connected, reconnecting or failed."""
        return self._runtime.state.state

    @property
    def worker_id(self) -> str | None:
        """The engine's id for the current connection (None until it said so)."""
        session = self._runtime.current
        return session.core.worker_id if session is not None else self._runtime.last_worker_id

    @property
    def name(self) -> str:
        """The worker name sent to the engine."""
        return self._runtime.info.name

    def on_connection_state_change(self, callback: StateCallback) -> Callable[[], None]:
        """Call `callback(state)` whenever the connection state changes; returns `stop()`."""
        return self._runtime.state.add_callback(callback)

    def connection_states(self) -> StateSubscription:
        """Async iterator of connection states (starting with the current one)."""
        return self._runtime.state.subscribe()

    def statistics(self) -> WorkerStatistics:
        """Counters, as an immutable snapshot."""
        runtime = self._runtime
        return WorkerStatistics(
            connection_state=self.connection_state,
            connections=runtime.connections,
            pending_calls=len(runtime.pending),
            running_invocations=runtime.runner.running,
            late_results=runtime.late_results,
            protocol_violations=runtime.protocol_violations,
            rejected_busy=runtime.runner.rejected_busy,
        )

    async def serve_forever(self) -> None:
        """Wait until the worker stops; raises what stopped it (e.g. `ConnectionClosed`).

        This replaces the official SDKs' `while True: await asyncio.sleep(60)`.
        """
        await self._runtime.finished.wait()
        if self._runtime.failure is not None:
            raise self._runtime.failure

    # --- registrations -----------------------------------------------------------------------

    def serve(self, registry: Servable) -> None:
        """Serve every function of `registry` (an `anyiii.Registry`), now and after every
        reconnect. Several workers may serve one registry: that is how to scale out."""
        registry.serve_on(self)

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
        self._runtime.handlers[function_id] = adapted
        self._registry.add(frame)
        self._send_registration(lambda core: core.register(frame))
        return FunctionHandle(function_id, self.unregister_function)

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

    def register_http_function(
        self,
        function_id: str,
        url: str,
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        auth: HttpAuth | Mapping[str, Any] | None = None,
        description: str | None = None,
        metadata: Any = None,
    ) -> FunctionHandle:
        """Register `function_id` as served by `url`: the engine itself sends each call's
        payload there (as JSON) and answers with the response (see docs/http-functions.md).
        `auth` (`HttpAuthHmac`, `HttpAuthBearer`, `HttpAuthApiKey`) names environment
        variables of the engine. Replayed on every reconnect, like `register_function`."""
        frame = http_function_frame(
            function_id,
            url,
            method=method,
            headers=headers,
            timeout_ms=timeout_ms,
            auth=auth,
            description=description,
            metadata=metadata,
        )
        self._runtime.handlers.pop(function_id, None)  # no longer served here
        self._registry.add(frame)
        self._send_registration(lambda core: core.register(frame))
        return FunctionHandle(function_id, self.unregister_function)

    def unregister_function(self, function_id: str) -> None:
        """Stop serving `function_id`."""
        self._runtime.handlers.pop(function_id, None)
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
        return self.bind_trigger(trigger_type, function_id, config, metadata=metadata)

    def bind_trigger(
        self, trigger_type: str, function_id: str, config: Any = None, *, metadata: Any = None
    ) -> Trigger:
        """`register_trigger` without the checkpoint, for code that cannot await (a
        decorator, say): a registration is queued, never waited for."""
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
        return Trigger(frame, self._unregister_trigger)

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
        check_trigger_handler(handler)
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
        self._runtime.trigger_handlers[trigger_type_id] = handler
        self._registry.add(frame)
        self._send_registration(lambda core: core.register(frame))
        return TriggerTypeHandle(trigger_type_id, self.unregister_trigger_type)

    def unregister_trigger_type(self, trigger_type_id: str) -> None:
        """Stop providing `trigger_type_id`; its handler is told to drop each binding.

        The real engine ignores the frame this sends (spec §15.1) and keeps the type until
        the connection ends; bindings it still delivers are refused with
        `trigger_type_not_found`.
        """
        self._runtime.trigger_handlers.pop(trigger_type_id, None)
        if self._registry.remove_trigger_type(trigger_type_id) is None:
            return
        frame = UnregisterTriggerType(id=trigger_type_id, namespace=self._namespace)
        self._send_registration(lambda core: core.unregister(frame))
        session = self._runtime.current
        if session is not None:
            session.drop_bindings_of_type(trigger_type_id)

    def on_functions_available(
        self, callback: Callable[[list[FunctionInfo]], object]
    ) -> Callable[[], None]:
        """Call `callback(functions)` whenever the engine's set of functions changes.

        It binds the engine's `engine::functions-available` trigger to a private function of
        this worker; `callback` gets the full list of `FunctionInfo` (a plain function runs
        in a worker thread). The engine says nothing until the first change after
        subscribing. Returns `stop()`.
        """
        threads = self._runtime.runner.threads

        async def notified(payload: Any) -> None:
            await call_user(callback, parse_functions(payload), limiter=threads)

        return self._subscribe_functions(notified)

    def functions_available(self) -> FunctionsSubscription:
        """`on_functions_available` as an async iterator (use it in `async with`)."""

        # The notification only pushes into a bounded buffer, so it runs on the loop.
        async def notified(payload: Any) -> None:
            subscription.push(parse_functions(payload))

        subscription = FunctionsSubscription(on_close=self._subscribe_functions(notified))
        self._runtime.at_finish(subscription.close)
        return subscription

    def _subscribe_functions(self, notified: HandlerFunction) -> Callable[[], None]:
        function_id = f"anyiii::functions-available::{uuid.uuid4().hex[:12]}"
        self.register_function(function_id, notified, metadata={"internal": True})
        trigger = self.bind_trigger(FUNCTIONS_AVAILABLE, function_id, {})

        def stop() -> None:
            self._unregister_trigger(trigger.id, trigger.trigger_type)
            self.unregister_function(function_id)

        return stop

    def _send_registration(self, produce: Callable[[WorkerConnection], bytes]) -> None:
        """Send a registration now if connected; otherwise the next connection replays it."""
        session = self._runtime.current
        if session is not None:
            session.send_registration(produce)

    def create_stream(self, name: str, impl: Any) -> StreamHandle:
        """Serve the storage of stream `name` with `impl` (an `IStream`).

        Registers `stream::get(<name>)`, `stream::set(<name>)`, `stream::delete(<name>)`,
        `stream::list(<name>)` and `stream::list_groups(<name>)`, which the real engine
        calls instead of its own store for that stream (spec §10.4).
        """
        return register_stream(self, name, impl)

    async def create_channel(self, buffer_size: int | None = None) -> Channel:
        """A new data channel (spec §12): `channel.writer` and `channel.reader`, both lazy.

        Calls the engine's `engine::channels::create`; `buffer_size` is how many items the
        engine holds between the ends (its default 64). Keep one end and put the other in
        a call's payload, where it travels as its ref. See docs/channels.md.
        """
        if self._runtime.channels is None:
            raise RuntimeError("this worker was not made by connect(): it has no channels")
        return await create_channel(self, self._runtime.channels, buffer_size)

    # --- calls -------------------------------------------------------------------------------

    async def trigger_async(self, request: Any) -> Any:
        """Call a function through the engine and return its result.

        `request` has the official SDK's shape (see `TriggerRequest`). A void call returns
        None as soon as it is sent. Raises `InvocationError` when the call fails: the
        callee raised (`invocation_failed`), nobody serves it (`function_not_found`), the
        connection dropped (`invocation_stopped`, at once), or `timeout_ms` passed
        (`TIMEOUT`). Any cancel scope around the call works too: the pending slot is
        removed at once and a late result is dropped. A call made inside a scope that is
        already cancelled is never sent.
        """
        # The frame may be queued without an await, so a cancelled scope must stop the
        # call here, before anything can reach the engine.
        await anyio.lowlevel.checkpoint_if_cancelled()
        call = parse_request(request)
        runtime = self._runtime
        timeout_ms = call.timeout_ms or runtime.limits.invocation_timeout_ms
        clock = self._clock
        if clock is None:  # the first call: inside the event loop now
            clock = self._clock = backend_clock()
        deadline = clock() + timeout_ms / 1000
        session = runtime.current
        if session is None or not session.open_for_new_work:
            # Only a call that must wait for a connection needs a scope with the deadline;
            # once sent, the pending-call table times it out (no timer per call).
            session = None
            with anyio.CancelScope(deadline=deadline):
                session = await runtime.session_for_new_work()
            if session is None:  # only the scope's own deadline ends up here
                raise timed_out(call.function_id, timeout_ms, None)
        return await session.call(call, self._outgoing_trace(), deadline, timeout_ms)

    async def trigger_void_batch(self, requests: Sequence[Any]) -> None:
        """Send fire-and-forget calls together: all are queued before the first is written,
        so they leave in one write. Each request has `trigger_async`'s shape; its action is
        taken to be void. Raises ConnectionClosed if the connection cannot take them. Inside
        a cancelled scope, none is sent."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        calls = [parse_request(request) for request in requests]
        session = await self._runtime.session_for_new_work()
        session.queue_void_calls(calls, self._outgoing_trace())
        await anyio.lowlevel.checkpoint()

    def _outgoing_trace(self) -> tuple[str | None, str | None]:
        """The traceparent and baggage a call made here carries (OpenTelemetry's, if on)."""
        telemetry = self._runtime.telemetry
        return telemetry.outgoing() if telemetry is not None else outgoing_trace()

    def trigger(self, request: Any) -> Any:
        """The blocking twin of `trigger_async`, for code running in a worker thread (a sync
        handler, or a thread started with `anyio.to_thread`). Never call it on the event
        loop's own thread: that would block the loop it waits on."""
        token = self._runtime.token
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
