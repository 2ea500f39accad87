"""What the router does with everything a worker sends besides calls and results.

Registrations of functions, triggers and trigger types, binding answers, reattach, pings
and protocol trouble, and the three changes the built-ins may ask for
(`builtins.EngineHost`). It is a part of `Router` (a base class of it), kept apart so the
router's own module stays about routing calls. Every registration is checked against the
`RegistrationLimits` (`registration_limits.py`) and the ownership rules (`ownership.py`:
reserved ids, reattach grace, waiting replicas) before it is applied.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._protocol import events as ev
from .._protocol.codes import (
    CALLER_WORKER_ID_KEY,
    DEFAULT_NAMESPACE,
    TRIGGER_REGISTRATION_FAILED,
)
from .._protocol.frames import (
    ErrorBody,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
)
from .._protocol.state import State
from .actions import Action, Close, Send
from .discovery import Discovery
from .http_routing import HttpFunctions
from .ownership import Ownership
from .registration_limits import (
    RegistrationLimits,
    binding_refusal,
    durable_binding_refusal,
    function_refusal,
    trigger_type_refusal,
)
from .registrations import Registered, refuse_function, register_function, unregister_function
from .tables import Binding, Connection, FunctionKey, Tables
from .triggers import Triggers

__all__ = ["RegistrationHandling"]

logger = logging.getLogger("anyiii.engine")


class RegistrationHandling:
    """The registration side of `Router` (see the module docstring)."""

    tables: Tables
    timers_changed: bool
    _triggers: Triggers
    _discovery: Discovery
    _http: HttpFunctions
    _limits: RegistrationLimits
    _ownership: Ownership

    if TYPE_CHECKING:  # provided by `Router`

        def _on_event(self, conn: Connection, event: ev.Event, out: list[Action]) -> None: ...

        def close(self, conn_id: int) -> list[Action]: ...

        def _fire_workers_available(
            self, event: str, conn: Connection, out: list[Action]
        ) -> None: ...

    def _on_registration_event(self, conn: Connection, event: ev.Event, out: list[Action]) -> None:
        """Everything but calls and results: registrations, pings, protocol trouble."""
        if isinstance(event, ev.FunctionRegistered):
            self._register_function(conn, event.frame, out)
        elif isinstance(event, ev.FunctionUnregistered):
            self._unregister_function(conn, event.function_id, out)
        elif isinstance(event, ev.TriggerRegistered):
            self._register_binding(conn, event.frame, out)
        elif isinstance(event, ev.TriggerUnregistered):
            self._triggers.unregister(conn, event.trigger_id, out)
        elif isinstance(event, ev.TriggerTypeRegistered):
            self._register_trigger_type(conn, event.frame, out)
        elif isinstance(event, ev.TriggerTypeUnregistered):
            self._triggers.unregister_type(conn, event.namespace, event.trigger_type, out)
        elif isinstance(event, ev.BindingAnswered):
            self._triggers.on_answer(conn, event.frame, out)
        elif isinstance(event, ev.ReattachRequested):
            self._reattach(conn, event, out)
        elif isinstance(event, ev.PingReceived):
            out.append(Send(conn.id, conn.core.pong()))
        elif isinstance(event, ev.ProtocolViolation):
            logger.warning("worker %s: %s", conn.worker_id, event.error)
        else:  # pongs, unknown frames, late results, registerservice: nothing to do
            logger.debug("worker %s: %r", conn.worker_id, event)

    # --- what the built-ins may ask (`builtins.EngineHost`) ----------------------------------

    def register_worker(self, conn: Connection, info: dict[str, object], out: list[Action]) -> None:
        """`engine::workers::register`: record what the worker says about itself and fix its
        namespace (the first call decides; later ones are bound to it, spec §4.1)."""
        conn.info = {k: v for k, v in info.items() if k != CALLER_WORKER_ID_KEY}
        if conn.namespace is None:
            namespace = info.get("namespace")
            self._fix_namespace(
                conn, namespace if isinstance(namespace, str) else DEFAULT_NAMESPACE, out
            )
        self._fire_workers_available("worker_metadata_updated", conn, out)

    @property
    def limits(self) -> RegistrationLimits:
        """What one worker may register, and how big a listing's answer may be."""
        return self._limits

    def add_durable_binding(
        self, frame: RegisterTrigger, caller: Connection | None, out: list[Action]
    ) -> Binding | ErrorBody:
        """`engine::register_trigger`: a binding nobody owns, which outlives its caller.

        Returns the binding, or why it was refused: over a limit (a worker `caller` may
        hold `max_durable_bindings`, counted by its worker name and namespace, as the
        bindings outlive its connection; all of them together may take
        `max_durable_binding_bytes`), or by an in-engine provider.
        """
        creator = None if caller is None else _creator(caller)
        triggers = self._triggers
        made = None if creator is None else triggers.durable_made_by(creator)
        reason = durable_binding_refusal(self._limits, frame, made, triggers.durable_bytes)
        if reason is not None:
            return ErrorBody(TRIGGER_REGISTRATION_FAILED, reason)
        return triggers.add_durable(frame, out, creator)

    def remove_binding(self, binding: Binding, out: list[Action]) -> None:
        """`engine::unregister_trigger`: remove a binding and tell its provider."""
        self._triggers.remove(binding, out)

    # --- namespaces and function registrations -----------------------------------------------

    def _fix_namespace(self, conn: Connection, namespace: str, out: list[Action]) -> None:
        conn.namespace = namespace
        held, conn.held = conn.held, []
        for event in held:
            self._on_event(conn, event, out)

    def _register_function(
        self, conn: Connection, frame: RegisterFunction, out: list[Action]
    ) -> None:
        key = (conn.effective_namespace, frame.id)
        existing = self.tables.functions.get(key)
        held = (existing is not None and existing.owner == conn.id) or key in conn.waiting
        reason = function_refusal(self._limits, conn, frame, is_new=not held)
        if reason is not None:
            logger.warning("worker %s: function %r refused: %s", conn.worker_id, frame.id, reason)
            refuse_function(conn, frame, "", out)
            return
        outcome = register_function(
            self.tables,
            conn,
            frame,
            out,
            self._http.target(frame),
            reserved=self._ownership.reserved_function(conn, frame.id),
            holder=self._ownership.holder(key, conn),
        )
        if outcome is Registered.HELD:
            self._ownership.wait(key, conn, frame)
            return
        self._ownership.stop_waiting(key, conn)
        if outcome is not Registered.REFUSED:
            self._ownership.claim(key)
        if outcome is Registered.CHANGED:
            self._functions_changed()

    def _unregister_function(self, conn: Connection, function_id: str, out: list[Action]) -> None:
        key = (conn.effective_namespace, function_id)
        self._ownership.stop_waiting(key, conn)
        if unregister_function(self.tables, conn, function_id):
            self._functions_changed()
            self._hand_over(key, out)

    def _drop_functions(self, conn: Connection, out: list[Action]) -> None:
        """`conn` ended: it waits for nothing, and the ids it served are reserved for it
        (or, with no grace, handed to whoever waits for them)."""
        self._ownership.forget(conn)
        served: list[FunctionKey] = []
        for key in conn.functions:
            function = self.tables.functions.get(key)
            if function is not None and function.owner == conn.id:
                del self.tables.functions[key]
                served.append(key)
        if served:
            self._functions_changed()
            self.timers_changed = True
        for key in self._ownership.reserve(conn, served):
            self._hand_over(key, out)

    def _end_reservations(self, now: float, out: list[Action]) -> None:
        """Reservations whose grace ended free their ids for whoever waits for them."""
        for key in self._ownership.expire(now):
            self._hand_over(key, out)

    def _hand_over(self, key: FunctionKey, out: list[Action]) -> None:
        """`key` is free: the earliest worker refused it while another held it gets it."""
        while key not in self.tables.functions:
            waiting = self._ownership.next_in_line(key)
            if waiting is None:
                return
            conn, frame = waiting
            if conn.core.state is State.OPEN:
                logger.info("worker %s takes over function %r", conn.worker_id, frame.id)
                self._register_function(conn, frame, out)
                if key in conn.waiting:  # held again (cannot happen: nobody holds `key`)
                    return

    def _register_binding(
        self, conn: Connection, frame: RegisterTrigger, out: list[Action]
    ) -> None:
        reason = binding_refusal(self._limits, conn, frame) or self._ownership.binding_refusal(
            conn, frame
        )
        if reason is None:
            self._triggers.register(conn, frame, out)
            return
        logger.warning("worker %s: trigger %s refused: %s", conn.worker_id, frame.id, reason)
        result = TriggerRegistrationResult(
            id=frame.id,
            trigger_type=frame.trigger_type,
            function_id=frame.function_id,
            error=ErrorBody(TRIGGER_REGISTRATION_FAILED, reason),
        )
        if conn.core.state is State.OPEN:
            out.append(Send(conn.id, conn.core.report_trigger_failure(result)))

    def _register_trigger_type(
        self, conn: Connection, frame: RegisterTriggerType, out: list[Action]
    ) -> None:
        """No answer exists for `registertriggertype`: a refusal is only logged (as the real
        engine does), loudly, since every binding meant for the type will park."""
        key = (frame.namespace or conn.effective_namespace, frame.id)
        reason = self._ownership.trigger_type_refusal(conn, frame) or trigger_type_refusal(
            self._limits, conn, frame, key
        )
        if reason is None:
            self._triggers.register_type(conn, frame, out)
        else:
            logger.error("worker %s: trigger type %r refused: %s", conn.worker_id, frame.id, reason)

    def _functions_changed(self) -> None:
        if self._discovery.functions_changed():
            self.timers_changed = True

    # --- reattach ------------------------------------------------------------------------------

    def _reattach(self, conn: Connection, event: ev.ReattachRequested, out: list[Action]) -> None:
        """Retire the worker's previous connection if it proves it owns it (spec §3.10)."""
        previous = self.tables.find_worker(event.previous_worker_id)
        if previous is None:  # gone already: its reserved ids are `conn`'s if the token fits
            if self._ownership.adopt(conn, event.previous_worker_id, event.reattach_token):
                logger.info("worker %s reattaches as %s", event.previous_worker_id, conn.worker_id)
            return
        if (
            previous is conn
            or event.reattach_token is None
            or previous.core.reattach_token != event.reattach_token
        ):
            return
        logger.info("worker %s reattaches as %s", previous.worker_id, conn.worker_id)
        conn.reattached_from = previous.worker_id
        out.extend(self.close(previous.id))
        out.append(Close(previous.id, 1000, "replaced by a reattached connection"))


def _creator(conn: Connection) -> str:
    """Who made a durable binding, for `max_durable_bindings`: the worker by name and
    namespace (it keeps them across connections), else its connection's worker id."""
    name = conn.name
    return f"{conn.effective_namespace}/{name}" if name else conn.worker_id
