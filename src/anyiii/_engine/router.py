"""The embedded engine's router: every table and every routing rule, with no I/O.

One `Router` holds the engine's state: connections (each with its own `EngineConnection`
protocol core), functions, invocations in flight, trigger types and trigger bindings. The
I/O layer tells it what happened (`open`, `receive`, `close`, `tick`, `call`) and carries
out the `Action`s it returns, in order. Because nothing here awaits, the whole engine's
logic is tested synchronously, including by a Hypothesis state machine.

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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from msgspec import Raw, structs

from .._protocol import events as ev
from .._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    FUNCTION_NOT_FOUND,
    INVOCATION_STOPPED,
)
from .._protocol.engine import EngineConnection
from .._protocol.frames import (
    EnqueueAction,
    ErrorBody,
    InvokeFunction,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    VoidAction,
    present,
    to_raw,
)
from .._protocol.ids import random_uuid
from .._protocol.state import State
from . import builtins
from .actions import Action, Close, Completed, Send
from .providers import (
    FUNCTIONS_AVAILABLE,
    HTTP,
    WORKERS_AVAILABLE,
    HttpRoutes,
    Subscribers,
    TriggerProvider,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "INTERNAL",
    "Binding",
    "Connection",
    "Function",
    "Invocation",
    "Router",
    "TriggerType",
]

logger = logging.getLogger("anyiii.engine")

DEFAULT_NAMESPACE: Final = "default"
INTERNAL: Final = -1
"""The caller id of invocations the engine starts itself (HTTP requests, trigger fires)."""

STOPPED: Final = ErrorBody(code=INVOCATION_STOPPED, message="Invocation stopped")
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


@dataclass(slots=True, eq=False)
class Connection:
    """One live worker connection and everything it owns."""

    id: int
    core: EngineConnection
    connected_at_ms: int
    grace_deadline: float
    peer: str | None = None
    namespace: str | None = None
    """None until `engine::workers::register` (or the grace period) fixes it."""
    held: list[ev.Event] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)
    functions: set[tuple[str, str]] = field(default_factory=set)
    triggers: set[str] = field(default_factory=set)
    trigger_types: set[tuple[str, str]] = field(default_factory=set)

    @property
    def worker_id(self) -> str:
        return self.core.worker_id

    @property
    def name(self) -> str | None:
        name = self.info.get("name")
        return name if isinstance(name, str) else None


@dataclass(slots=True, eq=False)
class Function:
    """A registered function; `owner` None means it is built into the engine."""

    namespace: str
    frame: RegisterFunction
    owner: int | None


@dataclass(slots=True, eq=False)
class Invocation:
    """An invocation in flight: who waits for it (`caller`) and who runs it (`callee`).

    `caller` is a connection id, `INTERNAL`, or None when nobody waits (a void call).
    """

    function_id: str
    caller: int | None
    callee: int | None


@dataclass(slots=True, eq=False)
class TriggerType:
    """A trigger type: provided in-engine (`builtin`) or by a worker connection (`owner`)."""

    namespace: str
    id: str
    description: str
    owner: int | None = None
    builtin: TriggerProvider | None = None
    frame: RegisterTriggerType | None = None


@dataclass(slots=True, eq=False)
class Binding:
    """A trigger binding; `provider` is the (namespace, type id) serving it, None if parked.

    `owner` is the connection that registered it, or None for a durable binding made
    through `engine::register_trigger`.
    """

    frame: RegisterTrigger
    owner: int | None
    target_namespace: str
    provider: tuple[str, str] | None = None


@dataclass(slots=True, eq=False)
class _AwaitedAck:
    """An `engine::register_trigger` call waiting for a worker provider's answer."""

    invocation_id: str
    caller: int
    deadline: float


class Router:
    """All of the embedded engine's state and routing rules (see the module docstring).

    `clock` returns seconds (monotonic); `namespace_grace` is how long a connection's
    registrations wait for `engine::workers::register` (spec: 5 s); `functions_debounce` is
    how long `engine::functions-available` waits for the function table to settle before it
    fires; `ack_timeout` bounds how long `engine::register_trigger` waits for a worker
    provider's answer (spec: 10 s).
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
    ) -> None:
        self._clock = clock
        self._wall_clock_ms = wall_clock_ms
        self._grace = namespace_grace
        self._debounce = functions_debounce
        self._ack_timeout = ack_timeout
        self._new_id = new_id
        self._next_conn = 1
        self.connections: dict[int, Connection] = {}
        self.functions: dict[tuple[str, str], Function] = {}
        self.invocations: dict[str, Invocation] = {}
        self.trigger_types: dict[tuple[str, str], TriggerType] = {}
        self.bindings: dict[str, Binding] = {}
        self._awaited_acks: dict[str, _AwaitedAck] = {}
        self._functions_changed_at: float | None = None
        self.timers_changed = False
        """Set when a new deadline may be earlier than `next_deadline()` said before; the
        I/O layer clears it and re-arms its timer."""
        self._functions_fired: frozenset[tuple[str, str]] = frozenset()
        self.http_routes = HttpRoutes()
        self._functions_available = Subscribers("Fires when the set of functions changes")
        self._workers_available = Subscribers("Fires when workers connect or disconnect")
        for type_id, provider in (
            (HTTP, self.http_routes),
            (FUNCTIONS_AVAILABLE, self._functions_available),
            (WORKERS_AVAILABLE, self._workers_available),
        ):
            self.trigger_types[(DEFAULT_NAMESPACE, type_id)] = TriggerType(
                DEFAULT_NAMESPACE, type_id, provider.description, builtin=provider
            )
        for function_id, spec in builtins.BUILTINS.items():
            frame = RegisterFunction(id=function_id, description=spec.description)
            self.functions[(DEFAULT_NAMESPACE, function_id)] = Function(
                DEFAULT_NAMESPACE, frame, owner=None
            )
        self._functions_fired = frozenset(self.functions)

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
        self.connections[conn_id] = conn
        self.timers_changed = True
        out: list[Action] = [Send(conn_id, core.start())]
        self._fire_workers_available("worker_connected", conn, out)
        logger.info("worker %s connected from %s", core.worker_id, peer or "?")
        return conn_id, out

    def close(self, conn_id: int) -> list[Action]:
        """A connection ended: stop what it was part of and remove what it owned (§4.6)."""
        conn = self.connections.pop(conn_id, None)
        if conn is None:
            return []
        out: list[Action] = []
        lost = conn.core.receive(None)[0]
        assert isinstance(lost, ev.ConnectionLost)
        for invocation_id, _ in lost.invocations:
            invocation = self.invocations.pop(invocation_id, None)
            if invocation is not None:
                self._answer(invocation.caller, invocation_id, None, STOPPED, out)
        for invocation_id, _ in lost.calls:
            invocation = self.invocations.get(invocation_id)
            if invocation is not None and invocation.caller == conn_id:
                invocation.caller = None  # the callee runs on; its result will be dropped
        for trigger_id, ack in list(self._awaited_acks.items()):
            if ack.caller == conn_id:
                del self._awaited_acks[trigger_id]
        for key in conn.functions:
            function = self.functions.get(key)
            if function is not None and function.owner == conn_id:
                del self.functions[key]
                self._functions_changed()
        for trigger_id in conn.triggers:
            binding = self.bindings.get(trigger_id)
            if binding is not None and binding.owner == conn_id:
                self.remove_binding(binding, out)
        for key in conn.trigger_types:
            trigger_type = self.trigger_types.get(key)
            if trigger_type is not None and trigger_type.owner == conn_id:
                del self.trigger_types[key]
                self._rehome(key, out)
        self._fire_workers_available("worker_disconnected", conn, out)
        logger.info("worker %s (%s) disconnected", conn.worker_id, conn.name or "unnamed")
        return out

    def receive(self, conn_id: int, data: bytes | str) -> list[Action]:
        """One message arrived from a worker."""
        conn = self.connections.get(conn_id)
        if conn is None:
            return []
        out: list[Action] = []
        for event in conn.core.receive(data):
            if conn.namespace is None and isinstance(event, _BUFFERED):
                conn.held.append(event)
            else:
                self._on_event(conn, event, out)
        return out

    def shutdown(self) -> list[Action]:
        """The engine is stopping: answer everyone still waiting, then close every socket."""
        out: list[Action] = []
        for invocation_id, invocation in list(self.invocations.items()):
            del self.invocations[invocation_id]
            self._answer(invocation.caller, invocation_id, None, STOPPED, out)
        for ack in self._awaited_acks.values():
            self._answer(ack.caller, ack.invocation_id, None, STOPPED, out)
        self._awaited_acks.clear()
        for conn in self.connections.values():
            if conn.core.state is State.OPEN:
                conn.core.start_closing()
            out.append(Close(conn.id, 1001, "engine shutting down"))
        return out

    # --- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `tick()` next has work to do (clock seconds), or None."""
        deadlines = [c.grace_deadline for c in self.connections.values() if c.namespace is None]
        deadlines.extend(ack.deadline for ack in self._awaited_acks.values())
        if self._functions_changed_at is not None:
            deadlines.append(self._functions_changed_at + self._debounce)
        return min(deadlines, default=None)

    def tick(self) -> list[Action]:
        """Run whatever timers are due: namespace grace, provider answers, discovery."""
        now = self._clock()
        out: list[Action] = []
        for conn in list(self.connections.values()):
            if conn.namespace is None and conn.grace_deadline <= now:
                self._fix_namespace(conn, DEFAULT_NAMESPACE, out)
        for trigger_id, ack in list(self._awaited_acks.items()):
            if ack.deadline <= now:
                del self._awaited_acks[trigger_id]
                self._answer(ack.caller, ack.invocation_id, to_raw({"id": trigger_id}), None, out)
        changed_at = self._functions_changed_at
        if changed_at is not None and changed_at + self._debounce <= now:
            self._fire_functions_available(out)
        return out

    # --- engine-originated calls -----------------------------------------------------------

    def call(
        self,
        function_id: str,
        data: Raw,
        *,
        metadata: Raw | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> tuple[str, list[Action]]:
        """Invoke a function on the engine's own behalf; a `Completed` action ends it."""
        invocation_id = self._new_id()
        out: list[Action] = []
        frame = InvokeFunction(
            function_id=function_id,
            invocation_id=invocation_id,
            data=data,
            traceparent=traceparent,
            baggage=baggage,
            namespace=namespace,
        )
        self._route_call(None, frame, INTERNAL, metadata, out)
        return invocation_id, out

    def abandon(self, invocation_id: str) -> None:
        """The engine stopped waiting for one of its own calls (e.g. an HTTP timeout)."""
        invocation = self.invocations.get(invocation_id)
        if invocation is not None and invocation.caller == INTERNAL:
            invocation.caller = None

    # --- events from a connection ------------------------------------------------------------

    def _on_event(self, conn: Connection, event: ev.Event, out: list[Action]) -> None:
        if isinstance(event, ev.CallRequested):
            call = event.call
            waits = call.invocation_id is not None and not isinstance(call.action, VoidAction)
            self._route_call(conn, call, conn.id if waits else None, present(call.metadata), out)
        elif isinstance(event, ev.ResultReceived):
            result = event.result
            invocation = self.invocations.pop(result.invocation_id, None)
            if invocation is not None:
                self._answer(
                    invocation.caller,
                    result.invocation_id,
                    present(result.result),
                    result.error,
                    out,
                )
        elif isinstance(event, ev.InvalidCall):
            error = ErrorBody(code=event.code, message=event.message)
            out.append(Send(conn.id, conn.core.deliver_result(event.invocation_id, error=error)))
        elif isinstance(event, ev.FunctionRegistered):
            self._register_function(conn, event.frame, out)
        elif isinstance(event, ev.FunctionUnregistered):
            self._unregister_function(conn, event.function_id)
        elif isinstance(event, ev.TriggerRegistered):
            self._register_binding(conn, event.frame, out)
        elif isinstance(event, ev.TriggerUnregistered):
            binding = self.bindings.get(event.trigger_id)
            if binding is not None and binding.owner == conn.id:
                self.remove_binding(binding, out)
        elif isinstance(event, ev.TriggerTypeRegistered):
            self._register_trigger_type(conn, event.frame, out)
        elif isinstance(event, ev.TriggerTypeUnregistered):
            key = (event.namespace or self._namespace_of(conn), event.trigger_type)
            trigger_type = self.trigger_types.get(key)
            if trigger_type is not None and trigger_type.owner == conn.id:
                del self.trigger_types[key]
                conn.trigger_types.discard(key)
                self._rehome(key, out)
        elif isinstance(event, ev.BindingAnswered):
            self._on_binding_answer(conn, event.frame, out)
        elif isinstance(event, ev.ReattachRequested):
            self._reattach(conn, event, out)
        elif isinstance(event, ev.PingReceived):
            out.append(Send(conn.id, conn.core.pong()))
        elif isinstance(event, ev.ProtocolViolation):
            logger.warning("worker %s: %s", conn.worker_id, event.error)
        else:  # pongs, unknown frames, late results, registerservice: nothing to do
            logger.debug("worker %s: %r", conn.worker_id, event)

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
        invocation_id = call.invocation_id
        if isinstance(call.action, EnqueueAction):
            message = (
                f"Function engine::queue::enqueue not found in namespace {DEFAULT_NAMESPACE}: "
                "the embedded engine has no queue worker"
            )
            self._answer(caller, invocation_id, None, ErrorBody("enqueue_error", message), out)
            return
        namespace = call.namespace if call.namespace is not None else DEFAULT_NAMESPACE
        if not namespace.strip():
            error = ErrorBody("INVALID_NAMESPACE", "namespace must not be blank")
            self._answer(caller, invocation_id, None, error, out)
            return
        function = self.functions.get((namespace, call.function_id))
        if function is None:
            error = ErrorBody(
                FUNCTION_NOT_FOUND, self._not_found_message(call.function_id, namespace)
            )
            self._answer(caller, invocation_id, None, error, out)
            return
        data = call.data if conn is None else _with_caller(call.data, conn.worker_id)
        if function.owner is None:
            self._run_builtin(conn, call.function_id, data, caller, invocation_id, out)
            return
        callee = self.connections[function.owner]
        dispatch_id = invocation_id if invocation_id is not None else self._new_id()
        if dispatch_id in self.invocations or callee.core.state is not State.OPEN:
            reason = (
                f"invocation id {dispatch_id} is already in flight"
                if dispatch_id in self.invocations
                else f"the worker serving {call.function_id} is closing"
            )
            self._answer(caller, invocation_id, None, ErrorBody("channel_send_failed", reason), out)
            return
        frame = callee.core.dispatch(
            dispatch_id,
            call.function_id,
            data,
            metadata=metadata,
            traceparent=call.traceparent,
            baggage=call.baggage,
        )
        self.invocations[dispatch_id] = Invocation(call.function_id, caller, callee.id)
        out.append(Send(callee.id, frame))

    def _run_builtin(
        self,
        conn: Connection | None,
        function_id: str,
        data: Raw,
        caller: int | None,
        invocation_id: str | None,
        out: list[Action],
    ) -> None:
        outcome = builtins.BUILTINS[function_id].run(self, conn, data, out)
        if isinstance(outcome, builtins.AwaitAck):
            if caller is not None and caller != INTERNAL and invocation_id is not None:
                deadline = self._clock() + self._ack_timeout
                self._awaited_acks[outcome.trigger_id] = _AwaitedAck(
                    invocation_id, caller, deadline
                )
                self.timers_changed = True
                return
            outcome = to_raw({"id": outcome.trigger_id})
        if isinstance(outcome, ErrorBody):
            self._answer(caller, invocation_id, None, outcome, out)
        else:
            self._answer(caller, invocation_id, outcome, None, out)

    def _answer(
        self,
        caller: int | None,
        invocation_id: str | None,
        result: Raw | None,
        error: ErrorBody | None,
        out: list[Action],
    ) -> None:
        """Tell whoever waits for `invocation_id` how it ended (nobody, for void calls)."""
        if caller is None or invocation_id is None:
            return
        if caller == INTERNAL:
            out.append(Completed(invocation_id, result, error))
            return
        conn = self.connections.get(caller)
        if conn is not None and invocation_id in conn.core.awaiting_results:
            out.append(Send(caller, conn.core.deliver_result(invocation_id, result, error=error)))

    def _not_found_message(self, function_id: str, namespace: str) -> str:
        elsewhere = sorted(ns for ns, fid in self.functions if fid == function_id)
        message = f"Function {function_id} not found in namespace {namespace}"
        if elsewhere:
            message += f". It is registered in namespace(s): {', '.join(elsewhere)}"
        return message

    # --- namespaces and registrations --------------------------------------------------------

    def _namespace_of(self, conn: Connection) -> str:
        return conn.namespace if conn.namespace is not None else DEFAULT_NAMESPACE

    def register_worker(self, conn: Connection, info: dict[str, object], out: list[Action]) -> None:
        """`engine::workers::register`: record what the worker says about itself and fix its
        namespace (the first call decides; later ones are bound to it, spec §4.1)."""
        conn.info = {k: v for k, v in info.items() if k != "_caller_worker_id"}
        if conn.namespace is None:
            namespace = info.get("namespace")
            self._fix_namespace(
                conn, namespace if isinstance(namespace, str) else DEFAULT_NAMESPACE, out
            )
        self._fire_workers_available("worker_metadata_updated", conn, out)

    def _fix_namespace(self, conn: Connection, namespace: str, out: list[Action]) -> None:
        conn.namespace = namespace
        held, conn.held = conn.held, []
        for event in held:
            self._on_event(conn, event, out)

    def _register_function(
        self, conn: Connection, frame: RegisterFunction, out: list[Action]
    ) -> None:
        namespace = self._namespace_of(conn)
        key = (namespace, frame.id)
        existing = self.functions.get(key)
        reserved = frame.id.startswith("engine::") and (
            namespace != DEFAULT_NAMESPACE or frame.id in builtins.BUILTINS
        )
        live_owner = (
            existing is not None
            and existing.owner != conn.id
            and existing.owner is not None
            and existing.owner in self.connections
        )
        if reserved or live_owner:
            owner = (
                ""
                if reserved or existing is None or existing.owner is None
                else (self.connections[existing.owner].worker_id)
            )
            rejection = RegistrationRejected(
                code=FUNCTION_NAMESPACE_CONFLICT,
                namespace=namespace,
                owner_worker_id=owner,
                function_id=frame.id,
            )
            if conn.core.state is State.OPEN:
                out.append(Send(conn.id, conn.core.reject_registration(rejection)))
            return
        self.functions[key] = Function(namespace, frame, conn.id)
        conn.functions.add(key)
        if existing is None or existing.owner != conn.id:
            self._functions_changed()

    def _unregister_function(self, conn: Connection, function_id: str) -> None:
        key = (self._namespace_of(conn), function_id)
        function = self.functions.get(key)
        if function is not None and function.owner == conn.id:
            del self.functions[key]
            conn.functions.discard(key)
            self._functions_changed()

    def _functions_changed(self) -> None:
        if self._functions_changed_at is None:
            self._functions_changed_at = self._clock()
            self.timers_changed = True

    # --- triggers ----------------------------------------------------------------------------

    def _register_binding(
        self, conn: Connection, frame: RegisterTrigger, out: list[Action]
    ) -> None:
        for name in (frame.namespace, frame.trigger_namespace):
            if name is not None and not name.strip():
                error = ErrorBody("INVALID_NAMESPACE", "namespace must not be blank")
                self._report_binding_failure(conn, frame, error, out)
                return
        previous = self.bindings.get(frame.id)
        if previous is not None:
            self.remove_binding(previous, out)  # trigger ids overwrite (spec §4.3)
        binding = Binding(frame, conn.id, frame.namespace or DEFAULT_NAMESPACE)
        self.bindings[frame.id] = binding
        conn.triggers.add(frame.id)
        self._bind(binding, out)

    def add_ownerless_binding(
        self, frame: RegisterTrigger, out: list[Action]
    ) -> Binding | ErrorBody:
        """A durable binding (from `engine::register_trigger`): nobody's, survives callers.

        Returns the binding, or the error with which an in-engine provider refused it.
        """
        binding = Binding(frame, None, frame.namespace or DEFAULT_NAMESPACE)
        self.bindings[frame.id] = binding
        refusal = self._bind(binding, out)
        return binding if refusal is None else refusal

    def _provider_key(self, binding: Binding) -> tuple[str, str] | None:
        """Where a binding's trigger type is provided: the explicit `trigger_namespace`, else
        the registering connection's namespace, then `default` (spec §3.4)."""
        frame = binding.frame
        if frame.trigger_namespace is not None:
            candidates = [frame.trigger_namespace]
        else:
            owner = self.connections.get(binding.owner) if binding.owner is not None else None
            candidates = [self._namespace_of(owner)] if owner is not None else []
            candidates.append(DEFAULT_NAMESPACE)
        for namespace in candidates:
            if (namespace, frame.trigger_type) in self.trigger_types:
                return (namespace, frame.trigger_type)
        return None

    def _bind(self, binding: Binding, out: list[Action]) -> ErrorBody | None:
        """Hand a binding to its provider, or park it until one appears.

        An in-engine provider answers at once: if it refuses, the binding is dropped, its
        owner is told, and the refusal is returned.
        """
        key = self._provider_key(binding)
        binding.provider = key
        if key is None:
            return None
        trigger_type = self.trigger_types[key]
        if trigger_type.builtin is not None:
            error = trigger_type.builtin.register(binding.frame)
            if error is not None:
                del self.bindings[binding.frame.id]
                binding.provider = None
                self._report_binding_failure_to_owner(binding, error, out)
            return error
        provider = self.connections[trigger_type.owner]  # type: ignore[index]
        delivery = structs.replace(
            binding.frame,
            namespace=None
            if binding.target_namespace == DEFAULT_NAMESPACE
            else binding.target_namespace,
            trigger_namespace=None if key[0] == DEFAULT_NAMESPACE else key[0],
        )
        if provider.core.state is State.OPEN:
            out.append(Send(provider.id, provider.core.forward_binding(delivery)))
        return None

    def remove_binding(self, binding: Binding, out: list[Action]) -> None:
        """Remove a binding and tell its provider."""
        frame = binding.frame
        self.bindings.pop(frame.id, None)
        ack = self._awaited_acks.pop(frame.id, None)
        if ack is not None:  # it was registered, then removed before its provider answered
            self._answer(ack.caller, ack.invocation_id, to_raw({"id": frame.id}), None, out)
        owner = self.connections.get(binding.owner) if binding.owner is not None else None
        if owner is not None:
            owner.triggers.discard(frame.id)
        if binding.provider is None:
            return
        trigger_type = self.trigger_types.get(binding.provider)
        if trigger_type is None:
            return
        if trigger_type.builtin is not None:
            trigger_type.builtin.unregister(frame)
            return
        provider = self.connections.get(trigger_type.owner)  # type: ignore[arg-type]
        if provider is not None and provider.core.state is State.OPEN:
            out.append(
                Send(provider.id, provider.core.forward_unbinding(frame.id, frame.trigger_type))
            )

    def _register_trigger_type(
        self, conn: Connection, frame: RegisterTriggerType, out: list[Action]
    ) -> None:
        namespace = frame.namespace or self._namespace_of(conn)
        key = (namespace, frame.id)
        existing = self.trigger_types.get(key)
        if existing is not None and existing.builtin is not None:
            logger.warning(
                "worker %s may not replace the engine's trigger type %s", conn.worker_id, frame.id
            )
            return
        self.trigger_types[key] = TriggerType(
            namespace, frame.id, frame.description, owner=conn.id, frame=frame
        )
        conn.trigger_types.add(key)
        # The new provider gets every binding of this type (spec §3.3): those the previous
        # provider served and the parked ones that now resolve to it.
        for binding in list(self.bindings.values()):
            if binding.frame.trigger_type == frame.id and (
                binding.provider == key or binding.provider is None
            ):
                binding.provider = None
                self._bind(binding, out)

    def _rehome(self, key: tuple[str, str], out: list[Action]) -> None:
        """A provider went away: move its bindings to another provider, or park them."""
        for binding in list(self.bindings.values()):
            if binding.provider == key:
                binding.provider = None
                self._bind(binding, out)

    def _on_binding_answer(
        self, conn: Connection, frame: TriggerRegistrationResult, out: list[Action]
    ) -> None:
        binding = self.bindings.get(frame.id)
        if binding is not None and not self._provides(conn, binding):
            # Only the current provider of the binding's type may answer (spec §3.5); a
            # replaced provider's late answer must not park what the new one serves.
            logger.debug("ignoring an answer for %s from a former provider", frame.id)
            return
        ack = self._awaited_acks.pop(frame.id, None)
        if frame.error is None:
            if ack is not None:
                self._answer(ack.caller, ack.invocation_id, to_raw({"id": frame.id}), None, out)
            return
        logger.warning("trigger %s refused by its provider: %s", frame.id, frame.error.message)
        if ack is not None:
            error = ErrorBody(
                frame.error.code,
                f"{frame.error.code}: {frame.error.message}",
                frame.error.stacktrace,
            )
            self._answer(ack.caller, ack.invocation_id, None, error, out)
            if binding is not None and binding.owner is None:
                # The caller of engine::register_trigger was told it failed: drop it.
                self.bindings.pop(frame.id, None)
                return
        if binding is None:
            return
        binding.provider = None  # parked until a provider accepts it (spec §3.5)
        owner = self.connections.get(binding.owner) if binding.owner is not None else None
        if owner is not None and owner.core.state is State.OPEN:
            out.append(Send(owner.id, owner.core.report_trigger_failure(frame)))

    def _provides(self, conn: Connection, binding: Binding) -> bool:
        """Whether `conn` is the provider currently serving `binding`."""
        trigger_type = self.trigger_types.get(binding.provider) if binding.provider else None
        return trigger_type is not None and trigger_type.owner == conn.id

    def _report_binding_failure(
        self, conn: Connection, frame: RegisterTrigger, error: ErrorBody, out: list[Action]
    ) -> None:
        result = TriggerRegistrationResult(
            id=frame.id, trigger_type=frame.trigger_type, function_id=frame.function_id, error=error
        )
        if conn.core.state is State.OPEN:
            out.append(Send(conn.id, conn.core.report_trigger_failure(result)))

    def _report_binding_failure_to_owner(
        self, binding: Binding, error: ErrorBody, out: list[Action]
    ) -> None:
        owner = self.connections.get(binding.owner) if binding.owner is not None else None
        if owner is not None:
            owner.triggers.discard(binding.frame.id)
            if owner.core.state is State.OPEN:
                self._report_binding_failure(owner, binding.frame, error, out)
        ack = self._awaited_acks.pop(binding.frame.id, None)
        if ack is not None:
            wrapped = ErrorBody(error.code, f"{error.code}: {error.message}")
            self._answer(ack.caller, ack.invocation_id, None, wrapped, out)

    # --- discovery triggers ------------------------------------------------------------------

    def _fire(self, subscribers: Subscribers, payload: object, out: list[Action]) -> None:
        data = to_raw(payload)
        for binding in subscribers:
            frame = InvokeFunction(
                function_id=binding.function_id,
                data=data,
                namespace=binding.namespace or DEFAULT_NAMESPACE,
            )
            self._route_call(None, frame, None, present(binding.metadata), out)

    def _fire_workers_available(self, event: str, conn: Connection, out: list[Action]) -> None:
        if len(self._workers_available):
            self._fire(self._workers_available, {"event": event, "worker_id": conn.worker_id}, out)

    def _fire_functions_available(self, out: list[Action]) -> None:
        self._functions_changed_at = None
        current = frozenset(self.functions)
        if current == self._functions_fired:
            return  # changed and changed back within the debounce: nothing to say
        self._functions_fired = current
        if len(self._functions_available):
            payload = {
                "event": "functions_changed",
                "functions": builtins.function_summaries(self, everything=True),
            }
            self._fire(self._functions_available, payload, out)

    # --- reattach ------------------------------------------------------------------------------

    def _reattach(self, conn: Connection, event: ev.ReattachRequested, out: list[Action]) -> None:
        """Retire the worker's previous connection if it proves it owns it (spec §3.10)."""
        previous = self.find_worker(event.previous_worker_id)
        if (
            previous is None
            or previous is conn
            or event.reattach_token is None
            or previous.core.reattach_token != event.reattach_token
        ):
            return
        logger.info("worker %s reattaches as %s", previous.worker_id, conn.worker_id)
        out.extend(self.close(previous.id))
        out.append(Close(previous.id, 1000, "replaced by a reattached connection"))

    # --- views -----------------------------------------------------------------------------

    def find_worker(self, worker_id: str) -> Connection | None:
        """The live connection with this worker id, if any."""
        return next((c for c in self.connections.values() if c.worker_id == worker_id), None)

    def bindings_of(self, trigger_type: str | None = None) -> Iterator[Binding]:
        """Every binding, or those of one trigger type."""
        for binding in self.bindings.values():
            if trigger_type is None or binding.frame.trigger_type == trigger_type:
                yield binding


def _with_caller(data: Raw, worker_id: str) -> Raw:
    """`data` with `_caller_worker_id` added if it is a JSON object (spec §5.1).

    The key is spliced in last, so it wins over a caller-supplied one in every decoder that
    keeps the last duplicate, as the engine's own map insert does.
    """
    raw = bytes(data)
    if not raw.startswith(b"{"):
        return data
    entry = b'"_caller_worker_id":"' + worker_id.encode() + b'"'
    body = raw[1:-1]
    if body.strip():
        return Raw(raw[:-1] + b"," + entry + b"}")
    return Raw(b"{" + entry + b"}")
