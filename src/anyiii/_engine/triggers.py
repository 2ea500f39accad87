"""The router's trigger rules: bindings, their providers, and the answers callers wait for.

A binding is handed to the provider of its trigger type (spec §3.3, §3.4): an in-engine
provider answers at once; a worker provider gets a `registertrigger` frame and may refuse
it later. Bindings whose type has no provider are parked and handed over when one appears;
when a provider leaves, its bindings move to another provider or are parked. Parking is
logged at warning level once per trigger type (a worker binding many triggers of a missing
type is one problem, not many), and again only after the type was provided in between. A call of
`engine::register_trigger` that needs a worker provider's answer waits for it here, for at
most `ack_timeout` seconds. Like the router, nothing here does I/O: every rule appends the
`Action`s it decides on to `out`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from msgspec import structs

from .._protocol.codes import DEFAULT_NAMESPACE, INVALID_NAMESPACE
from .._protocol.frames import (
    ErrorBody,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
    to_raw,
)
from .._protocol.state import State
from .actions import STOPPED, Action, Send, answer
from .registration_limits import binding_bytes, trigger_type_bytes
from .tables import Binding, Connection, Tables, TriggerType, TypeKey

__all__ = ["Triggers"]

logger = logging.getLogger("anyiii.engine")


@dataclass(slots=True, eq=False)
class _AwaitedAck:
    """An `engine::register_trigger` call waiting for a worker provider's answer."""

    invocation_id: str
    caller: int
    deadline: float


class Triggers:
    """Trigger bindings and trigger types, kept in the router's `tables` (see module doc)."""

    def __init__(self, tables: Tables, *, clock: Callable[[], float], ack_timeout: float):
        self._tables = tables
        self._clock = clock
        self._ack_timeout = ack_timeout
        self._awaited_acks: dict[str, _AwaitedAck] = {}
        self._warned_missing: set[str] = set()
        self.durable_bytes = 0
        """Bytes of the durable bindings (`binding_bytes`), all creators together."""
        self._durable_made: dict[str | None, int] = {}
        """Durable bindings per creator, so a limit check never walks the bindings."""
        """Trigger types whose parked bindings were already reported."""

    # --- bindings ----------------------------------------------------------------------------

    def register(self, conn: Connection, frame: RegisterTrigger, out: list[Action]) -> None:
        """A connection bound a trigger (`registertrigger`)."""
        for name in (frame.namespace, frame.trigger_namespace):
            if name is not None and not name.strip():
                error = ErrorBody(INVALID_NAMESPACE, "namespace must not be blank")
                self._report_failure(conn, frame, error, out)
                return
        previous = self._tables.binding(frame.id)
        if previous is not None:
            self.remove(previous, out)  # trigger ids overwrite (spec §4.3)
        binding = Binding(frame, conn.id, frame.namespace or DEFAULT_NAMESPACE)
        self._tables.bindings[frame.id] = binding
        conn.triggers.add(frame.id, binding_bytes(frame))
        self._bind(binding, out)

    def unregister(self, conn: Connection, trigger_id: str, out: list[Action]) -> None:
        """A connection removed one of its bindings (`unregistertrigger`)."""
        binding = self._tables.binding(trigger_id)
        if binding is not None and binding.owner == conn.id:
            self.remove(binding, out)

    def add_durable(
        self, frame: RegisterTrigger, out: list[Action], creator: str | None = None
    ) -> Binding | ErrorBody:
        """A durable binding (from `engine::register_trigger`): nobody's, survives callers;
        `creator` names the worker that made it (None: the engine).

        Returns the binding, or the error with which an in-engine provider refused it.
        """
        binding = Binding(frame, None, frame.namespace or DEFAULT_NAMESPACE, creator=creator)
        self._tables.bindings[frame.id] = binding
        self._tally(binding, 1)
        refusal = self._bind(binding, out)
        return binding if refusal is None else refusal

    def remove(self, binding: Binding, out: list[Action]) -> None:
        """Remove a binding and tell its provider."""
        frame = binding.frame
        self._forget(frame.id)
        ack = self._awaited_acks.pop(frame.id, None)
        if ack is not None:  # it was registered, then removed before its provider answered
            self._answer_ack(ack, frame.id, out)
        owner = self._tables.connection(binding.owner)
        if owner is not None:
            owner.triggers.discard(frame.id)
        trigger_type = self._tables.trigger_type(binding.provider)
        if trigger_type is None:
            return
        if trigger_type.builtin is not None:
            trigger_type.builtin.unregister(frame)
            return
        provider = self._tables.connection(trigger_type.owner)
        if provider is not None and provider.core.state is State.OPEN:
            out.append(
                Send(provider.id, provider.core.forward_unbinding(frame.id, frame.trigger_type))
            )

    def durable_made_by(self, creator: str) -> int:
        """How many durable bindings `creator` has made that are still there."""
        return self._durable_made.get(creator, 0)

    def _forget(self, binding_id: str) -> None:
        """Take a binding out of the table (if there), keeping the durable tallies right."""
        binding = self._tables.bindings.pop(binding_id, None)
        if binding is not None and binding.owner is None:
            self._tally(binding, -1)

    def _tally(self, binding: Binding, sign: int) -> None:
        self.durable_bytes += sign * binding_bytes(binding.frame)
        made = self._durable_made.get(binding.creator, 0) + sign
        if made:
            self._durable_made[binding.creator] = made
        else:
            self._durable_made.pop(binding.creator, None)

    def _provider_key(self, binding: Binding) -> TypeKey | None:
        """Where a binding's trigger type is provided: the explicit `trigger_namespace`, else
        the registering connection's namespace, then `default` (spec §3.4)."""
        frame = binding.frame
        if frame.trigger_namespace is not None:
            candidates = [frame.trigger_namespace]
        else:
            owner = self._tables.connection(binding.owner)
            candidates = [owner.effective_namespace] if owner is not None else []
            candidates.append(DEFAULT_NAMESPACE)
        for namespace in candidates:
            if (namespace, frame.trigger_type) in self._tables.trigger_types:
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
            self._warn_parked(binding)
            return None
        self._warned_missing.discard(binding.frame.trigger_type)
        trigger_type = self._tables.trigger_types[key]
        if trigger_type.builtin is not None:
            error = trigger_type.builtin.register(binding.frame)
            if error is not None:
                self._forget(binding.frame.id)
                binding.provider = None
                self._report_failure_to_owner(binding, error, out)
            return error
        provider = self._tables.connections[trigger_type.owner]  # type: ignore[index]
        # The provider sees the namespaces as the binder wrote them: `default` is implied.
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

    def _warn_parked(self, binding: Binding) -> None:
        """Say once per trigger type that its bindings wait for a provider."""
        type_id = binding.frame.trigger_type
        if type_id in self._warned_missing:
            logger.debug("binding %s parked: no provider of %s", binding.frame.id, type_id)
            return
        self._warned_missing.add(type_id)
        logger.warning(
            "trigger type %r is not registered: binding %s (function %s) and any further "
            "bindings of this type are parked until a provider registers it (listed with "
            '"parked": true by engine::registered-triggers::list)',
            type_id,
            binding.frame.id,
            binding.frame.function_id,
        )

    # --- trigger types -----------------------------------------------------------------------

    def register_type(
        self, conn: Connection, frame: RegisterTriggerType, out: list[Action]
    ) -> None:
        """A connection provides a trigger type (`registertriggertype`)."""
        namespace = frame.namespace or conn.effective_namespace
        key = (namespace, frame.id)
        existing = self._tables.trigger_type(key)
        if existing is not None and existing.builtin is not None:
            logger.warning(
                "worker %s may not replace the engine's trigger type %s", conn.worker_id, frame.id
            )
            return
        if existing is not None and existing.owner != conn.id:
            # The previous provider holds the type no more: its count and bytes go down.
            previous = self._tables.connection(existing.owner)
            if previous is not None:
                previous.trigger_types.discard(key)
        self._tables.trigger_types[key] = TriggerType(
            namespace, frame.id, frame.description, owner=conn.id, frame=frame
        )
        conn.trigger_types.add(key, trigger_type_bytes(frame))
        # The new provider gets every binding of this type (spec §3.3): those the previous
        # provider served and the parked ones that now resolve to it.
        for binding in self._tables.all_bindings():
            if binding.frame.trigger_type == frame.id and (
                binding.provider == key or binding.provider is None
            ):
                binding.provider = None
                self._bind(binding, out)

    def unregister_type(
        self, conn: Connection, namespace: str | None, type_id: str, out: list[Action]
    ) -> None:
        """A connection stops providing a trigger type (`unregistertriggertype`)."""
        key = (namespace or conn.effective_namespace, type_id)
        trigger_type = self._tables.trigger_type(key)
        if trigger_type is not None and trigger_type.owner == conn.id:
            del self._tables.trigger_types[key]
            conn.trigger_types.discard(key)
            self._rehome(key, out)

    def _rehome(self, key: TypeKey, out: list[Action]) -> None:
        """A provider went away: move its bindings to another provider, or park them."""
        for binding in self._tables.bindings_of_provider(key):
            binding.provider = None
            self._bind(binding, out)

    # --- providers' answers ------------------------------------------------------------------

    def on_answer(
        self, conn: Connection, frame: TriggerRegistrationResult, out: list[Action]
    ) -> None:
        """A worker provider accepted or refused a binding (spec §3.5)."""
        binding = self._tables.binding(frame.id)
        if binding is not None and not self._provides(conn, binding):
            # Only the current provider of the binding's type may answer (spec §3.5); a
            # replaced provider's late answer must not park what the new one serves.
            logger.debug("ignoring an answer for %s from a former provider", frame.id)
            return
        ack = self._awaited_acks.pop(frame.id, None)
        if frame.error is None:
            if ack is not None:
                self._answer_ack(ack, frame.id, out)
            return
        logger.warning("trigger %s refused by its provider: %s", frame.id, frame.error.message)
        if ack is not None:
            error = ErrorBody(
                frame.error.code,
                f"{frame.error.code}: {frame.error.message}",
                frame.error.stacktrace,
            )
            answer(self._tables, ack.caller, ack.invocation_id, None, error, out)
            if binding is not None and binding.owner is None:
                # The caller of engine::register_trigger was told it failed: drop it.
                self._forget(frame.id)
                return
        if binding is None:
            return
        binding.provider = None  # parked until a provider accepts it (spec §3.5)
        owner = self._tables.connection(binding.owner)
        if owner is not None and owner.core.state is State.OPEN:
            out.append(Send(owner.id, owner.core.report_trigger_failure(frame)))

    def _provides(self, conn: Connection, binding: Binding) -> bool:
        """Whether `conn` is the provider currently serving `binding`."""
        trigger_type = self._tables.trigger_type(binding.provider)
        return trigger_type is not None and trigger_type.owner == conn.id

    def _report_failure(
        self, conn: Connection, frame: RegisterTrigger, error: ErrorBody, out: list[Action]
    ) -> None:
        result = TriggerRegistrationResult(
            id=frame.id, trigger_type=frame.trigger_type, function_id=frame.function_id, error=error
        )
        if conn.core.state is State.OPEN:
            out.append(Send(conn.id, conn.core.report_trigger_failure(result)))

    def _report_failure_to_owner(
        self, binding: Binding, error: ErrorBody, out: list[Action]
    ) -> None:
        owner = self._tables.connection(binding.owner)
        if owner is not None:
            owner.triggers.discard(binding.frame.id)
            if owner.core.state is State.OPEN:
                self._report_failure(owner, binding.frame, error, out)
        ack = self._awaited_acks.pop(binding.frame.id, None)
        if ack is not None:
            wrapped = ErrorBody(error.code, f"{error.code}: {error.message}")
            answer(self._tables, ack.caller, ack.invocation_id, None, wrapped, out)

    # --- callers waiting for a provider ------------------------------------------------------

    def await_ack(self, trigger_id: str, invocation_id: str, caller: int) -> None:
        """Answer `caller` once the binding's provider answers, or `ack_timeout` passes."""
        deadline = self._clock() + self._ack_timeout
        self._awaited_acks[trigger_id] = _AwaitedAck(invocation_id, caller, deadline)

    def next_deadline(self) -> float | None:
        """When the earliest waiting caller is answered regardless, or None."""
        return min((ack.deadline for ack in self._awaited_acks.values()), default=None)

    def expire(self, now: float, out: list[Action]) -> None:
        """Answer the callers whose provider did not answer in time: no news is success."""
        for trigger_id, ack in list(self._awaited_acks.items()):
            if ack.deadline <= now:
                del self._awaited_acks[trigger_id]
                self._answer_ack(ack, trigger_id, out)

    def _answer_ack(self, ack: _AwaitedAck, trigger_id: str, out: list[Action]) -> None:
        answer(self._tables, ack.caller, ack.invocation_id, to_raw({"id": trigger_id}), None, out)

    # --- connections ending, the engine stopping ---------------------------------------------

    def drop_connection(self, conn: Connection, out: list[Action]) -> None:
        """A connection closed: forget its waits, remove its bindings, re-home its types."""
        for trigger_id, ack in list(self._awaited_acks.items()):
            if ack.caller == conn.id:
                del self._awaited_acks[trigger_id]
        for trigger_id in list(conn.triggers):
            binding = self._tables.binding(trigger_id)
            if binding is not None and binding.owner == conn.id:
                self.remove(binding, out)
        for key in conn.trigger_types:
            trigger_type = self._tables.trigger_type(key)
            if trigger_type is not None and trigger_type.owner == conn.id:
                del self._tables.trigger_types[key]
                self._rehome(key, out)

    def stop(self, out: list[Action]) -> None:
        """The engine is stopping: every caller still waiting is told it stopped."""
        for ack in self._awaited_acks.values():
            answer(self._tables, ack.caller, ack.invocation_id, None, STOPPED, out)
        self._awaited_acks.clear()
