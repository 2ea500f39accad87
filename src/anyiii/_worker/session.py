"""One connection of a worker: its transport, its protocol core, its task group.

A `Session` lives as long as one WebSocket. Its reader task turns bytes into events with
the sans-IO `WorkerConnection` core and hands each event to the method that the event
table names for its type (the same shape as the protocol cores' frame tables). Handling an
event never waits: the reader must keep reading. Work that may wait (an invocation, a
trigger handler deciding on a binding) runs in its own task in the session's task group,
so none of it outlives the connection.

Every frame goes out through `send_nowait` or `send`, which mark the core broken when the
transport fails; so whether the connection can still carry an answer is the core's state
alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.abc

from .._errors import ConnectionClosed, LocalProtocolError
from .._protocol import events as ev
from .._protocol.codes import (
    INVOCATION_FAILED,
    INVOCATION_STOPPED,
    TIMEOUT,
    TRIGGER_TYPE_NOT_FOUND,
)
from .._protocol.frames import (
    EnqueueAction,
    ErrorBody,
    RegisterTrigger,
    VoidAction,
    decode_value,
    to_raw,
)
from .._protocol.state import State
from .._protocol.worker import WorkerConnection
from .._transport import Transport
from .calls import CallRequest, PendingCalls, call_outcome, timed_out
from .invocations import InvocationRunner
from .task_pool import TaskPool
from .trigger_types import ActiveBinding, binding_config

__all__ = ["Session"]

logger = logging.getLogger("anyiii.worker")

_USABLE = (State.CONNECTING, State.OPEN, State.CLOSING)
_OPEN_FOR_NEW_WORK = (State.CONNECTING, State.OPEN)
_LOST = ErrorBody(INVOCATION_STOPPED, "Invocation stopped: the connection was lost")


class Session:
    """One live connection (see the module docstring).

    `trigger_handlers` is the worker's live table of trigger types it provides;
    `on_registered(worker_id, reattach_token)` and `on_fatal(error)` report what the
    engine said about this worker as a whole; `on_lost(session)` runs once, as soon as the
    connection is known to be gone (before its tasks are cancelled).
    """

    def __init__(
        self,
        transport: Transport,
        core: WorkerConnection,
        *,
        runner: InvocationRunner,
        pending: PendingCalls,
        trigger_handlers: Mapping[str, Any],
        on_registered: Callable[[str, str | None], None],
        on_fatal: Callable[[ConnectionClosed], None],
        on_lost: Callable[[Session], None],
    ) -> None:
        self.transport = transport
        self.core = core
        self._runner = runner
        self._pending = pending
        self._trigger_handlers = trigger_handlers
        self._on_registered = on_registered
        self._on_fatal = on_fatal
        self._on_lost = on_lost
        self._tasks: anyio.abc.TaskGroup | None = None
        self._invocations: TaskPool | None = None
        self._bindings: dict[str, ActiveBinding] = {}
        self._table: dict[type[ev.Event], Callable[[Any], None]] = {
            ev.CallCompleted: self._on_call_completed,
            ev.CallFailed: self._on_call_failed,
            ev.InvocationRequested: self._on_invocation,
            ev.InvalidInvocation: self._on_invalid_invocation,
            ev.Registered: self._on_registered_event,
            ev.PingReceived: self._on_ping,
            ev.TriggerRegistrationFailed: self._on_trigger_failed,
            ev.RegistrationRefused: self._on_registration_refused,
            ev.EngineRefused: self._on_engine_refused,
            ev.ProtocolViolation: self._on_violation,
            ev.TriggerBindingRequested: self._on_binding,
            ev.TriggerBindingRemoved: self._on_binding_removed,
        }

    # --- state ------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """It can still carry answers to invocations already in flight."""
        return self.core.state in _USABLE

    @property
    def open_for_new_work(self) -> bool:
        """It accepts new calls and registrations (not closing, not lost)."""
        return self.core.state in _OPEN_FOR_NEW_WORK

    # --- running ----------------------------------------------------------------------------

    async def run(self, opening: Iterable[bytes], on_open: Callable[[], None]) -> None:
        """Serve the connection until it ends; raises ConnectionClosed when it does.

        `opening` are the frames of the open sequence; `on_open` runs once they are queued
        and the reader is about to start. When the connection ends, every call waiting on
        it fails with `invocation_stopped` at once, its tasks are cancelled, and the
        handlers of the bindings it carried are told to drop them (bounded by the caller:
        see `release_bindings`).
        """
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            for frame in opening:
                self.send_nowait(frame)
            tasks.start_soon(self.transport.run_writer)
            tasks.start_soon(self._pending.expire_forever)
            self._invocations = TaskPool(await tasks.start(self._runner.host), name="invocation")
            on_open()
            try:
                await self._read()
            finally:
                self._lose()
                tasks.cancel_scope.cancel()

    async def _read(self) -> None:
        transport, core, table = self.transport, self.core, self._table
        while True:
            for data in await transport.receive_some():  # one await per read, not message
                for event in core.receive(data):
                    handle = table.get(type(event))
                    if handle is None:
                        logger.debug("engine event %r", event)
                    else:
                        handle(event)

    def _lose(self) -> None:
        """The connection ended: everything it carried is abandoned, callers learn it now."""
        self.core.receive(None)
        self._on_lost(self)
        self._pending.fail_all(_LOST)

    def _start(self, function: Callable[..., Any], *args: Any) -> None:
        assert self._tasks is not None, "tasks start only while the session runs"
        self._tasks.start_soon(function, *args)

    # --- sending ----------------------------------------------------------------------------

    def send_nowait(self, frame: bytes) -> None:
        """Queue a frame; a failed transport marks the core broken instead of raising."""
        try:
            self.transport.send_nowait(frame)
        except ConnectionClosed:
            self._mark_broken()

    async def send(self, frame: bytes) -> None:
        """Send a frame and wait until it is written; a failure marks the core broken and
        raises ConnectionClosed."""
        try:
            await self.transport.send(frame)
        except ConnectionClosed:
            self._mark_broken()
            raise

    def _mark_broken(self) -> None:
        if self.core.state not in (State.CLOSED, State.ERROR):
            self.core.send_failed()

    def send_registration(self, produce: Callable[[WorkerConnection], bytes]) -> None:
        """Send a registration change now, if the connection takes new work; otherwise the
        next connection replays the registry."""
        if self.open_for_new_work:
            self.send_nowait(produce(self.core))

    def answer(self, invocation_id: str, result: Any, error: ErrorBody | None) -> None:
        """Send the one answer an invocation gets, if the connection can still carry it."""
        core = self.core
        # `self.usable`, written out: this is every invocation's path.
        if core.state not in _USABLE or not core.answers_due(invocation_id):
            return
        try:
            if error is not None:
                frame = core.fail(invocation_id, error)
            else:
                frame = core.complete(invocation_id, result)
        except LocalProtocolError:
            return  # the connection ended between the check and the answer
        self.send_nowait(frame)

    def start_closing(self) -> None:
        """Take no new work on this connection (the worker is leaving)."""
        if self.open_for_new_work:
            self.core.start_closing()

    # --- outgoing calls ---------------------------------------------------------------------

    async def call(
        self,
        request: CallRequest,
        trace: tuple[str | None, str | None],
        deadline: float = math.inf,
        timeout_ms: int = 0,
    ) -> Any:
        """Send a call and return its result (None at once for a void call).

        Raises InvocationError for an error answer, `TIMEOUT` once `deadline` (clock
        seconds) passes, ConnectionClosed when the frame could not be written. Cancelled
        while waiting, the call forgets its slot at once and a late answer is dropped.
        """
        if isinstance(request.action, VoidAction):
            try:
                await self.transport.send(self._void_frame(request, trace), deadline=deadline)
            except ConnectionClosed:
                self._mark_broken()
                raise
            except TimeoutError:
                raise timed_out(request.function_id, timeout_ms, None) from None
            return None
        core = self.core
        data = to_raw(request.payload)
        metadata = to_raw(request.metadata) if request.metadata is not None else None
        traceparent, baggage = trace
        queue = request.action.queue if isinstance(request.action, EnqueueAction) else None
        invocation_id, frame = core.call(
            request.function_id,
            data,
            metadata=metadata,
            namespace=request.namespace,
            enqueue=queue,
            traceparent=traceparent,
            baggage=baggage,
        )
        slot = self._pending.open(invocation_id, deadline, timeout_ms)
        try:
            try:  # `send`, written out, and without an await while there is room
                if not self.transport.offer(frame):
                    await self.transport.send(frame, deadline=deadline)
            except ConnectionClosed:
                self._mark_broken()
                raise
            except TimeoutError:
                raise timed_out(request.function_id, timeout_ms, invocation_id) from None
            await slot.wait()
        finally:
            self._pending.close(invocation_id)
            if not slot.resolved or (slot.error is not None and slot.error.code == TIMEOUT):
                core.forget_call(invocation_id)
        if slot.error is None:  # the common case, without a call to `call_outcome`
            return decode_value(slot.result) if slot.result is not None else None
        return call_outcome(slot, request.function_id, invocation_id)

    def queue_void_calls(
        self, requests: list[CallRequest], trace: tuple[str | None, str | None]
    ) -> None:
        """Queue fire-and-forget calls back to back, so they leave in one write. Raises
        ConnectionClosed (and marks the core broken) if the connection cannot take them."""
        for request in requests:
            frame = self._void_frame(request, trace)
            try:
                self.transport.send_nowait(frame)
            except ConnectionClosed:
                self._mark_broken()
                raise

    def _void_frame(self, request: CallRequest, trace: tuple[str | None, str | None]) -> bytes:
        """The frame of a fire-and-forget call."""
        traceparent, baggage = trace
        return self.core.call_void(
            request.function_id,
            to_raw(request.payload),
            metadata=to_raw(request.metadata) if request.metadata is not None else None,
            namespace=request.namespace,
            traceparent=traceparent,
            baggage=baggage,
        )

    # --- the event table --------------------------------------------------------------------

    def _on_call_completed(self, event: ev.CallCompleted) -> None:
        self._pending.resolve(event.invocation_id, event.result, None)

    def _on_call_failed(self, event: ev.CallFailed) -> None:
        self._pending.resolve(event.invocation_id, None, event.error)

    def _on_invocation(self, event: ev.InvocationRequested) -> None:
        admitted = self._runner.admit(event.function_id)
        if isinstance(admitted, ErrorBody):
            if event.invocation_id is not None:
                self.answer(event.invocation_id, None, admitted)
            return
        assert self._invocations is not None
        self._invocations.submit(self._runner.run, admitted, event, self.answer)

    def _on_invalid_invocation(self, event: ev.InvalidInvocation) -> None:
        error = ErrorBody(INVOCATION_FAILED, f"malformed invocation: {event.message}")
        self.answer(event.invocation_id, None, error)

    def _on_registered_event(self, event: ev.Registered) -> None:
        self._on_registered(event.worker_id, event.reattach_token)

    def _on_ping(self, event: ev.PingReceived) -> None:
        self.send_nowait(self.core.pong())

    def _on_trigger_failed(self, event: ev.TriggerRegistrationFailed) -> None:
        logger.warning(
            "trigger %s (%s → %s) failed: %s",
            event.trigger_id,
            event.trigger_type,
            event.function_id,
            event.error.message,
        )

    def _on_registration_refused(self, event: ev.RegistrationRefused) -> None:
        logger.warning("the engine refused a registration: %s", event)
        if event.fatal:
            self._on_fatal(ConnectionClosed(1008, f"registration refused: {event.code}"))

    def _on_engine_refused(self, event: ev.EngineRefused) -> None:
        self._on_fatal(ConnectionClosed(1008, f"{event.error.code}: {event.error.message}"))

    def _on_violation(self, event: ev.ProtocolViolation) -> None:
        logger.warning("the engine sent something invalid: %s", event.error)

    # --- bindings of trigger types this worker provides -------------------------------------

    def _on_binding(self, event: ev.TriggerBindingRequested) -> None:
        """Hand a binding of a type we provide to its handler; answer when it has decided."""
        frame: RegisterTrigger = event.binding
        handler = self._trigger_handlers.get(frame.trigger_type)
        if handler is None:
            message = f"this worker does not provide the trigger type {frame.trigger_type!r}"
            error = ErrorBody(TRIGGER_TYPE_NOT_FOUND, message)
            self.send_nowait(self.core.answer_binding(frame.id, error))
            return
        previous = self._bindings.get(frame.id)
        binding = ActiveBinding(binding_config(frame), handler, self._runner.threads)
        self._bindings[frame.id] = binding
        self._start(self._register_binding, binding, previous)

    async def _register_binding(
        self, binding: ActiveBinding, previous: ActiveBinding | None
    ) -> None:
        if previous is not None:  # delivered again: the handler sees unregister, register
            await previous.unregister()
        error = await binding.register()
        if self.usable:
            try:
                frame = self.core.answer_binding(binding.config.id, error)
            except LocalProtocolError:
                return  # the connection ended while the handler decided
            self.send_nowait(frame)

    def _on_binding_removed(self, event: ev.TriggerBindingRemoved) -> None:
        binding = self._bindings.pop(event.trigger_id, None)
        if binding is not None:
            self._start(binding.unregister)

    def drop_bindings_of_type(self, trigger_type: str) -> None:
        """The worker stopped providing `trigger_type`: its handler drops each binding."""
        for binding_id, binding in list(self._bindings.items()):
            if binding.config.trigger_type == trigger_type:
                del self._bindings[binding_id]
                self._start(binding.unregister)

    async def release_bindings(self, grace: float) -> None:
        """The connection is gone, and its bindings with it: tell the handlers, waiting at
        most `grace` seconds (shielded, so it also runs while the worker is cancelled)."""
        if not self._bindings:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
            for binding in list(self._bindings.values()):
                await binding.unregister()
        self._bindings.clear()
