"""The declarative registry: what a worker serves, whatever connection it is on.

A worker's functions, trigger types and trigger bindings live here, not in a connection.
Each new connection gets a fresh protocol core, and the core turns the registry's contents
into the replay sequence of spec §4.2. Entries are the registration frames themselves: they
are immutable, and they are exactly what gets sent again after a reconnect (same function
ids, same trigger ids).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from .frames import RegisterFunction, RegisterTrigger, RegisterTriggerType

__all__ = ["Registry", "WorkerInfo"]


class Registry:
    """Insertion-ordered tables of registrations, keyed by id. Later entries replace earlier."""

    __slots__ = ("_functions", "_trigger_types", "_triggers")

    def __init__(self) -> None:
        self._functions: dict[str, RegisterFunction] = {}
        self._trigger_types: dict[str, RegisterTriggerType] = {}
        self._triggers: dict[str, RegisterTrigger] = {}

    def add(self, frame: RegisterFunction | RegisterTriggerType | RegisterTrigger) -> None:
        """Record a registration (replacing one with the same id)."""
        if isinstance(frame, RegisterFunction):
            self._functions[frame.id] = frame
        elif isinstance(frame, RegisterTriggerType):
            self._trigger_types[frame.id] = frame
        else:
            self._triggers[frame.id] = frame

    def remove_function(self, function_id: str) -> RegisterFunction | None:
        """Forget a function; returns what was registered, if anything."""
        return self._functions.pop(function_id, None)

    def remove_trigger_type(self, type_id: str) -> RegisterTriggerType | None:
        """Forget a trigger type; returns what was registered, if anything."""
        return self._trigger_types.pop(type_id, None)

    def remove_trigger(self, trigger_id: str) -> RegisterTrigger | None:
        """Forget a trigger binding; returns what was registered, if anything."""
        return self._triggers.pop(trigger_id, None)

    def function(self, function_id: str) -> RegisterFunction | None:
        """The registration of one function, if any."""
        return self._functions.get(function_id)

    @property
    def functions(self) -> Iterator[RegisterFunction]:
        """Functions in registration order."""
        return iter(tuple(self._functions.values()))

    @property
    def trigger_types(self) -> Iterator[RegisterTriggerType]:
        """Trigger types in registration order."""
        return iter(tuple(self._trigger_types.values()))

    @property
    def triggers(self) -> Iterator[RegisterTrigger]:
        """Trigger bindings in registration order."""
        return iter(tuple(self._triggers.values()))

    def replay_order(self) -> Iterator[RegisterFunction | RegisterTriggerType | RegisterTrigger]:
        """What a new connection sends, in the official Python SDK's order (spec §4.2):
        trigger types, then functions, then trigger bindings."""
        yield from self.trigger_types
        yield from self.functions
        yield from self.triggers

    def __len__(self) -> int:
        return len(self._functions) + len(self._trigger_types) + len(self._triggers)


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The payload of the `engine::workers::register` call (spec §4.2).

    `namespace` and `isolation` are sent as JSON null when unset, as the official Python SDK
    does; `description` is left out when unset.
    """

    name: str
    runtime: str = "python"
    version: str = ""
    os: str = ""
    pid: int = 0
    isolation: str | None = None
    namespace: str | None = None
    description: str | None = None
    telemetry: dict[str, str] | None = None

    def to_builtins(self) -> dict[str, object]:
        """The JSON object to send, with `description`/`telemetry` omitted when unset."""
        payload: dict[str, object] = {
            "runtime": self.runtime,
            "version": self.version,
            "name": self.name,
            "os": self.os,
            "pid": self.pid,
            "isolation": self.isolation,
            "namespace": self.namespace,
        }
        if self.description is not None:
            payload["description"] = self.description
        if self.telemetry is not None:
            payload["telemetry"] = self.telemetry
        return payload
