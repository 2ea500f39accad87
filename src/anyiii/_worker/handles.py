"""What `Worker.register_*` hand back (handles whose `unregister()` undoes the
registration) and the worker's statistics snapshot.

A handle holds only the worker's unregister function for its kind, so this module needs
nothing from `worker.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._protocol.frames import RegisterTrigger
from .state import ConnectionState

__all__ = ["FunctionHandle", "Trigger", "TriggerTypeHandle", "WorkerStatistics"]


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


class FunctionHandle:
    """A registered function: `await handle.unregister()` removes it."""

    def __init__(self, function_id: str, unregister: Callable[[str], None]) -> None:
        self._unregister = unregister
        self.id = function_id

    async def unregister(self) -> None:
        """Stop serving this function (on this and every later connection)."""
        self._unregister(self.id)

    def __repr__(self) -> str:
        return f"FunctionHandle({self.id!r})"


class Trigger:
    """A registered trigger binding: `await trigger.unregister()` removes it."""

    def __init__(self, frame: RegisterTrigger, unregister: Callable[[str, str], None]) -> None:
        self._unregister = unregister
        self.id = frame.id
        self.trigger_type = frame.trigger_type
        self.function_id = frame.function_id

    async def unregister(self) -> None:
        """Remove the binding (on this and every later connection)."""
        self._unregister(self.id, self.trigger_type)

    def __repr__(self) -> str:
        return f"Trigger({self.trigger_type!r} → {self.function_id!r}, id={self.id!r})"


class TriggerTypeHandle:
    """A trigger type this worker provides: `await handle.unregister()` stops providing it."""

    def __init__(self, type_id: str, unregister: Callable[[str], None]) -> None:
        self._unregister = unregister
        self.id = type_id

    async def unregister(self) -> None:
        """Stop providing the type; its handler is told to drop every binding it holds."""
        self._unregister(self.id)

    def __repr__(self) -> str:
        return f"TriggerTypeHandle({self.id!r})"
