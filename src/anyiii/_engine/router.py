"""The embedded engine's router: its routing decisions, with no I/O.

The I/O layer tells one `Router` what happened (`open`, `receive`, `close`, `tick`, `call`)
and carries out the `Action`s it returns, in order: the router decides, then acts only by
writing its `tables` (`tables.py`) and returning actions. Trigger bindings and providers
follow the rules of `triggers.py`, the discovery trigger types those of `discovery.py`, and
the `engine::*` functions are `builtins.py`'s; timers and the engine's own calls are
`engine_calls.py`'s, registrations `registration_handling.py`'s. Because nothing here
awaits, the whole engine's logic is tested synchronously, including by a Hypothesis state
machine.

The rules are those of the contract (`iii-protocol.md` §4.1, §4.6, §5, §6, §11, §16):
`workerregistered` first; registrations buffered until the connection's namespace is fixed
by `engine::workers::register` or the grace period ends; calls resolved strictly in their
target namespace; `_caller_worker_id` injected into worker-originated object payloads;
callee errors passed through unchanged; every invocation a closing connection was part of
stopped with `invocation_stopped`; bindings parked while their trigger type has no provider
and handed over when one appears.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Protocol

from msgspec import Raw

from .._protocol import events as ev
from .._protocol.codes import (
    CHANNEL_SEND_FAILED,
    DEFAULT_NAMESPACE,
    FUNCTION_NOT_FOUND,
    FUNCTIONS_AVAILABLE,
    HTTP_TRIGGER,
    INVALID_NAMESPACE,
    WORKERS_AVAILABLE,
)
from .._protocol.engine import EngineConnection
from .._protocol.frames import (
    EnqueueAction,
    ErrorBody,
    InvokeFunction,
    RegisterFunction,
    StreamChannelRef,
    VoidAction,
    present,
    to_raw,
)
from .._protocol.ids import random_uuid
from .._protocol.state import State
from .actions import STOPPED, Action, Close, Send, answer
from .builtins import BUILTINS, AwaitAck
from .configured import DEFAULT_SERVICES
from .discovery import Discovery, Fire
from .engine_calls import EngineCalls
from .enqueue import ENQUEUE_PROVIDER, enqueue_answer, enqueue_request
from .hosting import EngineContext, ServiceFactory, ServiceHost
from .http_routing import HttpFunctions
from .http_targets import HttpFunctionSettings
from .ownership import Ownership
from .payloads import with_caller
from .providers import HttpRoutes, TriggerProvider
from .registration_handling import RegistrationHandling
from .registration_limits import RegistrationLimits
from .tables import INTERNAL, Connection, Function, Invocation, Tables, TriggerType
from .triggers import Triggers

__all__ = ["Router"]

logger = logging.getLogger("anyiii.engine")

_BUFFERED: Final = (
    ev.FunctionRegistered,
    ev.FunctionUnregistered,
    ev.ServiceRegistered,
    ev.TriggerRegistered,
    ev.TriggerUnregistered,
    ev.TriggerTypeRegistered,
    ev.TriggerTypeUnregistered,
)
"""Frames held back until the connection's namespace is fixed (spec §4.1 step 6)."""


class ChannelBook(Protocol):
    """The engine's data channels as the router sees them (`channels.ChannelHub`)."""

    def create(
        self, buffer_size: int | None = None, owner: int | None = None
    ) -> tuple[StreamChannelRef, StreamChannelRef]: ...

    def drop_owner(self, owner: int) -> None: ...


class Router(RegistrationHandling, EngineCalls):
    """The embedded engine's routing rules over its `tables` (see the module docstring).

    `clock` returns seconds (monotonic); `namespace_grace` is how long a connection's
    registrations wait for `engine::workers::register` (spec: 5 s); `functions_debounce` is
    how long `engine::functions-available` waits for the function table to settle before it
    fires; `ack_timeout` bounds how long `engine::register_trigger` waits for a worker
    provider's answer (spec: 10 s). `http_functions` is the policy of HTTP-invoked
    functions, whose auth secrets are read from `environ` (default: `os.environ`);
    `registrations` bounds what one worker registers and how long a departed worker's ids
    stay reserved for it (`registration_limits.py`, `ownership.py`).

    It is the `EngineHost` the built-ins run against: they read `tables` and ask for the
    three changes they may make (`register_worker`, `add_durable_binding`,
    `remove_binding`).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        namespace_grace: float = 5.0,
        functions_debounce: float = 0.05,
        ack_timeout: float = 10.0,
        new_id: Callable[[], str] = random_uuid,
        services: Sequence[ServiceFactory] = DEFAULT_SERVICES,
        channels: ChannelBook | None = None,
        http_functions: HttpFunctionSettings | None = None,
        environ: Mapping[str, str] | None = None,
        registrations: RegistrationLimits | None = None,
    ) -> None:
        self._channels = channels
        self._clock = clock
        self._wall_clock_ms = wall_clock_ms
        self._grace = namespace_grace
        self._new_id = new_id
        self._next_conn = 1
        self.tables = Tables()
        self._triggers = Triggers(self.tables, clock=clock, ack_timeout=ack_timeout)
        self._limits = registrations or RegistrationLimits()
        self._ownership = Ownership(self.tables, clock=clock, grace=self._limits.reattach_grace)
        self._http = HttpFunctions(
            self.tables,
            http_functions or HttpFunctionSettings(),
            os.environ if environ is None else environ,
            wall_clock_ms,
            new_id,
        )
        self.timers_changed = False
        """Set when a new deadline may be earlier than `next_deadline()` said before; the
        I/O layer clears it and re-arms its timer."""
        self._service_deadline: float | None = None
        self._services_touched = False
        """Set when a message may have reached a service (a built-in call, a registration):
        only then does `receive` ask the services for their deadlines again. A call routed
        from one worker to another, the common case, cannot move a service's timer."""
        context = EngineContext(clock, wall_clock_ms, new_id, self.tables)
        self.services = ServiceHost(
            [make(context) for make in services],
            tables=self.tables,
            route=self._route_engine_call,
            context=context,
        )
        """The in-engine services (state, …); the I/O layer restores them from storage."""
        descriptions = {
            **{function_id: spec.description for function_id, spec in BUILTINS.items()},
            **self.services.descriptions(),
        }
        for function_id, description in descriptions.items():
            frame = RegisterFunction(id=function_id, description=description)
            self.tables.functions[(DEFAULT_NAMESPACE, function_id)] = Function(
                DEFAULT_NAMESPACE, frame, owner=None
            )
        self._discovery = Discovery(
            frozenset(self.tables.functions), clock=clock, debounce=functions_debounce
        )
        self.http_routes = HttpRoutes()
        providers: tuple[tuple[str, TriggerProvider], ...] = (
            (HTTP_TRIGGER, self.http_routes),
            (FUNCTIONS_AVAILABLE, self._discovery.functions_available),
            (WORKERS_AVAILABLE, self._discovery.workers_available),
            *self.services.trigger_types(),
        )
        for type_id, provider in providers:
            self.tables.trigger_types[(DEFAULT_NAMESPACE, type_id)] = TriggerType(
                DEFAULT_NAMESPACE, type_id, provider.description, builtin=provider
            )

    def create_channel(
        self, owner: int | None, buffer_size: int | None
    ) -> tuple[StreamChannelRef, StreamChannelRef] | None:
        """`engine::channels::create`: a channel owned by `owner`'s connection."""
        if self._channels is None:
            return None
        return self._channels.create(buffer_size, owner)

    # --- connections -----------------------------------------------------------------------

    def open(self, *, peer: str | None = None) -> tuple[int, list[Action]]:
        """A worker connected: returns its connection id and `workerregistered` to send."""
        conn_id = self._next_conn
        self._next_conn += 1
        core = EngineConnection(self._new_id(), self._new_id())
        conn = Connection(
            conn_id,
            core,
            connected_at_ms=self._wall_clock_ms(),
            grace_deadline=self._clock() + self._grace,
            peer=peer,
        )
        self.tables.connections[conn_id] = conn
        self.timers_changed = True
        out: list[Action] = [Send(conn_id, core.start())]
        self._fire_workers_available("worker_connected", conn, out)
        logger.info("worker %s connected from %s", core.worker_id, peer or "?")
        return conn_id, out

    def close(self, conn_id: int) -> list[Action]:
        """A connection ended: stop what it was part of and remove what it owned (§4.6)."""
        tables = self.tables
        conn = tables.connections.pop(conn_id, None)
        if conn is None:
            return []
        out: list[Action] = []
        lost = conn.core.receive(None)[0]
        assert isinstance(lost, ev.ConnectionLost)
        for invocation_id, _ in lost.invocations:
            invocation = tables.pop_invocation(invocation_id)
            if invocation is not None:
                answer(tables, invocation.caller, invocation_id, None, STOPPED, out)
        for invocation_id, _ in lost.calls:
            invocation = tables.invocations.get(invocation_id)
            if invocation is not None and invocation.caller == conn_id:
                invocation.caller = None  # the callee runs on; its result will be dropped
        self._drop_functions(conn, out)
        self._triggers.drop_connection(conn, out)
        if self._channels is not None:
            self._channels.drop_owner(conn_id)
        self._fire_workers_available("worker_disconnected", conn, out)
        logger.info("worker %s (%s) disconnected", conn.worker_id, conn.name or "unnamed")
        return out

    def receive(self, conn_id: int, data: bytes | str) -> list[Action]:
        """One message arrived from a worker."""
        return self.receive_many(conn_id, (data,))

    def receive_many(self, conn_id: int, messages: Iterable[bytes | str]) -> list[Action]:
        """Messages arrived from a worker, in this order (one read's worth, typically):
        the actions of all of them, in order, as if each had been received alone."""
        tables = self.tables
        out: list[Action] = []
        for data in messages:
            # Looked up per message: one of them may end the connection (a refusal).
            conn = tables.connections.get(conn_id)
            if conn is None:
                break
            for event in conn.core.receive(data):
                if conn.namespace is None and isinstance(event, _BUFFERED):
                    conn.held.append(event)
                else:
                    self._on_event(conn, event, out)
        if self._services_touched:
            self._services_touched = False
            self._watch_service_deadline()
        return out

    def shutdown(self) -> list[Action]:
        """The engine is stopping: answer everyone still waiting, then close every socket."""
        out: list[Action] = []
        for invocation_id, invocation in list(self.tables.invocations.items()):
            self.tables.pop_invocation(invocation_id)
            answer(self.tables, invocation.caller, invocation_id, None, STOPPED, out)
        self._triggers.stop(out)
        self.services.forget_calls()
        for conn in self.tables.connections.values():
            if conn.core.state is State.OPEN:
                conn.core.start_closing()
            out.append(Close(conn.id, 1001, "engine shutting down"))
        return out

    # --- events from a connection ------------------------------------------------------------

    def _on_event(self, conn: Connection, event: ev.Event, out: list[Action]) -> None:
        if isinstance(event, ev.CallRequested):
            call = event.call
            waits = call.invocation_id is not None and not isinstance(call.action, VoidAction)
            self._route_call(conn, call, conn.id if waits else None, present(call.metadata), out)
        elif isinstance(event, ev.ResultReceived):
            result = event.result
            invocation = self.tables.pop_invocation(result.invocation_id)
            if invocation is not None:
                answer(
                    self.tables,
                    invocation.caller,
                    result.invocation_id,
                    present(result.result),
                    result.error,
                    out,
                )
        elif isinstance(event, ev.InvalidCall):
            error = ErrorBody(code=event.code, message=event.message)
            out.append(Send(conn.id, conn.core.deliver_result(event.invocation_id, error=error)))
        else:
            self._services_touched = True
            self._on_registration_event(conn, event, out)

    # --- invocations -----------------------------------------------------------------------

    def _route_call(
        self,
        conn: Connection | None,
        call: InvokeFunction,
        caller: int | None,
        metadata: Raw | None,
        out: list[Action],
    ) -> None:
        """Resolve a call and run it: built-in here, worker-hosted by dispatch (§16.2)."""
        tables = self.tables
        invocation_id = call.invocation_id
        if isinstance(call.action, EnqueueAction):
            self._services_touched = True
            self._enqueue(call, call.action.queue, caller, out)
            return
        namespace = call.namespace if call.namespace is not None else DEFAULT_NAMESPACE
        if not namespace.strip():
            error = ErrorBody(INVALID_NAMESPACE, "namespace must not be blank")
            answer(tables, caller, invocation_id, None, error, out)
            return
        # The table itself, not `tables.function()`: this lookup is on every routed call.
        function = tables.functions.get((namespace, call.function_id))
        if function is None:
            error = ErrorBody(
                FUNCTION_NOT_FOUND, tables.not_found_message(call.function_id, namespace)
            )
            answer(tables, caller, invocation_id, None, error, out)
            return
        data = call.data if conn is None else with_caller(call.data, conn.worker_id)
        if function.owner is None:
            self._services_touched = True
            self._run_builtin(conn, call.function_id, data, caller, invocation_id, out)
            return
        if function.http is not None:
            self._http.call(call.function_id, function.http, invocation_id, data, caller, out)
            return
        callee = tables.connections[function.owner]
        dispatch_id = invocation_id if invocation_id is not None else self._new_id()
        if dispatch_id in tables.invocations or callee.core.state is not State.OPEN:
            reason = (
                f"invocation id {dispatch_id} is already in flight"
                if dispatch_id in tables.invocations
                else f"the worker serving {call.function_id} is closing"
            )
            answer(tables, caller, invocation_id, None, ErrorBody(CHANNEL_SEND_FAILED, reason), out)
            return
        frame = callee.core.dispatch(
            dispatch_id,
            call.function_id,
            data,
            metadata=metadata,
            traceparent=call.traceparent,
            baggage=call.baggage,
        )
        tables.add_invocation(dispatch_id, Invocation(call.function_id, caller, callee.id))
        out.append(Send(callee.id, frame))

    def _enqueue(
        self, call: InvokeFunction, queue: str, caller: int | None, out: list[Action]
    ) -> None:
        """The `enqueue` action (spec §5.1, `enqueue.py`): hand the call to the queue
        provider; answer the caller with a receipt id once the provider accepted it."""
        receipt = self._new_id()

        def acknowledge(result: Raw | None, error: ErrorBody | None, out: list[Action]) -> None:
            answer(self.tables, caller, call.invocation_id, *enqueue_answer(receipt, error), out)

        request = enqueue_request(call, queue, receipt)
        self.services.call(ENQUEUE_PROVIDER, request, acknowledge, out)

    def _run_builtin(
        self,
        conn: Connection | None,
        function_id: str,
        data: Raw,
        caller: int | None,
        invocation_id: str | None,
        out: list[Action],
    ) -> None:
        if self.services.owns(function_id):
            self.services.run(function_id, data, caller, invocation_id, out)
            return
        outcome = BUILTINS[function_id].run(self, conn, data, out)
        if isinstance(outcome, AwaitAck):
            if caller is not None and caller != INTERNAL and invocation_id is not None:
                self._triggers.await_ack(outcome.trigger_id, invocation_id, caller)
                self.timers_changed = True
                return
            outcome = to_raw({"id": outcome.trigger_id})
        if isinstance(outcome, ErrorBody):
            answer(self.tables, caller, invocation_id, None, outcome, out)
        else:
            answer(self.tables, caller, invocation_id, outcome, None, out)

    # --- discovery triggers ------------------------------------------------------------------

    def _route_engine_call(
        self, frame: InvokeFunction, caller: int | None, metadata: Raw | None, out: list[Action]
    ) -> None:
        self._route_call(None, frame, caller, metadata, out)

    def _fire(self, fires: list[Fire], out: list[Action]) -> None:
        for frame, metadata in fires:
            self._route_call(None, frame, None, metadata, out)

    def _fire_workers_available(self, event: str, conn: Connection, out: list[Action]) -> None:
        self._fire(self._discovery.worker_event(event, conn), out)
