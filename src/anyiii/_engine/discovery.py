"""The discovery trigger types: `engine::functions-available` and `engine::workers-available`.

Both are in-engine providers whose bindings are plain subscribers (spec §9). This module
decides when they fire and with what payload; it returns the calls to make, and the router
routes them like any other call, so nothing here does I/O either. The function table is
announced once it settles (`debounce` seconds after the last change) rather than on every
change, and not at all when it changed and changed back in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import InvokeFunction, present, to_raw
from .providers import Subscribers
from .tables import Connection, FunctionKey

__all__ = ["Discovery", "Fire"]

Fire: TypeAlias = tuple[InvokeFunction, Raw | None]
"""One subscriber to call: the void call to route and the binding's metadata."""


class Discovery:
    """When the discovery trigger types fire, and whom they call (see the module doc)."""

    def __init__(
        self,
        functions: frozenset[FunctionKey],
        *,
        clock: Callable[[], float],
        debounce: float,
    ) -> None:
        self._clock = clock
        self._debounce = debounce
        self._changed_at: float | None = None
        self._announced = functions
        self.functions_available = Subscribers("Fires when the set of functions changes")
        self.workers_available = Subscribers("Fires when workers connect or disconnect")

    def functions_changed(self) -> bool:
        """The function table changed; True if that starts a new debounce timer."""
        if self._changed_at is not None:
            return False
        self._changed_at = self._clock()
        return True

    def next_deadline(self) -> float | None:
        """When the function table is next due to be announced, or None."""
        return None if self._changed_at is None else self._changed_at + self._debounce

    def due(self, now: float) -> bool:
        """Whether the function table is due to be announced at `now`."""
        deadline = self.next_deadline()
        return deadline is not None and deadline <= now

    def announce_functions(
        self, functions: frozenset[FunctionKey], summaries: Callable[[], object]
    ) -> list[Fire]:
        """The table settled: the calls announcing it, unless it is what was last announced.

        `summaries` builds the payload's function list; it is only called if someone
        listens.
        """
        self._changed_at = None
        if functions == self._announced:
            return []  # changed and changed back within the debounce: nothing to say
        self._announced = functions
        if not len(self.functions_available):
            return []
        payload = {"event": "functions_changed", "functions": summaries()}
        return _calls(self.functions_available, payload)

    def worker_event(self, event: str, conn: Connection) -> list[Fire]:
        """A worker connected, left or described itself: the calls announcing it."""
        if not len(self.workers_available):
            return []
        return _calls(self.workers_available, {"event": event, "worker_id": conn.worker_id})


def _calls(subscribers: Subscribers, payload: object) -> list[Fire]:
    data = to_raw(payload)
    return [
        (
            InvokeFunction(
                function_id=binding.function_id,
                data=data,
                namespace=binding.namespace or DEFAULT_NAMESPACE,
            ),
            present(binding.metadata),
        )
        for binding in subscribers
    ]
