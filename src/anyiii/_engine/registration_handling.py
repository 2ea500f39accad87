"""What the router does with everything a worker sends besides calls and results.

Registrations of functions, triggers and trigger types, binding answers, reattach, pings
and protocol trouble, and the three changes the built-ins may ask for
(`builtins.EngineHost`). It is a part of `Router` (a base class of it), kept apart so the
router's own module stays about routing calls.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .._protocol import events as ev
from .._protocol.codes import CALLER_WORKER_ID_KEY, DEFAULT_NAMESPACE
from .._protocol.frames import ErrorBody, RegisterFunction, RegisterTrigger
from .actions import Action, Close, Send
from .discovery import Discovery
from .http_routing import HttpFunctions
from .registrations import register_function, unregister_function
from .tables import Binding, Connection, Tables
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
            self._unregister_function(conn, event.function_id)
        elif isinstance(event, ev.TriggerRegistered):
            self._triggers.register(conn, event.frame, out)
        elif isinstance(event, ev.TriggerUnregistered):
            self._triggers.unregister(conn, event.trigger_id, out)
        elif isinstance(event, ev.TriggerTypeRegistered):
            self._triggers.register_type(conn, event.frame, out)
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

    def add_durable_binding(self, frame: RegisterTrigger, out: list[Action]) -> Binding | ErrorBody:
        """`engine::register_trigger`: a binding nobody owns, which outlives its caller.

        Returns the binding, or the error with which an in-engine provider refused it.
        """
        return self._triggers.add_durable(frame, out)

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
        if register_function(self.tables, conn, frame, out, self._http.target(frame)):
            self._functions_changed()

    def _unregister_function(self, conn: Connection, function_id: str) -> None:
        if unregister_function(self.tables, conn, function_id):
            self._functions_changed()

    def _functions_changed(self) -> None:
        if self._discovery.functions_changed():
            self.timers_changed = True

    # --- reattach ------------------------------------------------------------------------------

    def _reattach(self, conn: Connection, event: ev.ReattachRequested, out: list[Action]) -> None:
        """Retire the worker's previous connection if it proves it owns it (spec §3.10)."""
        previous = self.tables.find_worker(event.previous_worker_id)
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
