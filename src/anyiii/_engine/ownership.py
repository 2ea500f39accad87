"""Who may take, keep and remove what: reserved ids, reattach grace, waiting replicas.

The rules (docs/security.md "Ownership" tells them for users):

* Reserved ids: a worker may not register a function the engine serves itself (its
  built-ins and its services' functions), nor any other `engine::*` id but the few a worker
  may provide (`engine::queue::enqueue`: a worker-hosted queue); nor a trigger type the
  engine provides (`http`, `cron`, …) or any `engine::*` trigger type, in any namespace:
  either would capture calls or bindings meant for the engine.
* Trigger types are provided in the provider's own namespace: a `registertriggertype`
  naming another namespace is refused, so a worker cannot capture another namespace's
  bindings (which look for a provider in their own namespace first, spec §11).
* Reattach grace: when a worker's connection ends, the function ids it served stay reserved
  for it for `reattach_grace` seconds. The same worker is recognised by the `reattach`
  frame its SDK sends first on reconnecting (spec §3.10, §4.3): the previous worker id and
  its secret reattach token. Worker names are not secret, so they do not count.
* Waiting replicas: a registration refused because another worker holds the id (a live
  owner, or a reservation) is remembered, and applied when the id frees up (the owner
  unregisters it, or its reservation ends) — the earliest refused first. The official SDKs
  never retry a refused registration, so without this a function would vanish while a live
  replica of it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import RegisterFunction, RegisterTrigger, RegisterTriggerType
from .enqueue import ENQUEUE_PROVIDER
from .registration_limits import function_bytes
from .tables import Connection, FunctionKey, Tables

__all__ = ["WORKER_PROVIDED_ENGINE_IDS", "Ownership"]

WORKER_PROVIDED_ENGINE_IDS: Final = frozenset({ENQUEUE_PROVIDER})
"""The `engine::*` function ids a worker may register (in `default`, while the engine does
not serve them itself): the extension points the engine calls."""


@dataclass(frozen=True, slots=True)
class _Reservation:
    """A departed worker's function id, kept for it until `deadline`."""

    worker_id: str
    token: str | None
    deadline: float


class Ownership:
    """The reservations and the waiting registrations (see the module docstring)."""

    def __init__(self, tables: Tables, *, clock: Callable[[], float], grace: float) -> None:
        self._tables = tables
        self._clock = clock
        self._grace = grace
        self._reserved: dict[FunctionKey, _Reservation] = {}
        self._waiting: dict[FunctionKey, dict[int, RegisterFunction]] = {}
        """Per id, the connections refused it and what they asked, earliest first."""

    # --- reserved ids --------------------------------------------------------------------

    def reserved_function(self, conn: Connection, function_id: str) -> bool:
        """Whether the id is the engine's and no worker may register it (`conn`'s
        namespace decides: `engine::*` ids belong to `default`, spec §11)."""
        if not function_id.startswith("engine::"):
            existing = self._tables.functions.get((conn.effective_namespace, function_id))
            return existing is not None and existing.owner is None
        if conn.effective_namespace != DEFAULT_NAMESPACE:
            return True
        existing = self._tables.functions.get((DEFAULT_NAMESPACE, function_id))
        engine_serves = existing is not None and existing.owner is None
        return engine_serves or function_id not in WORKER_PROVIDED_ENGINE_IDS

    def trigger_type_refusal(self, conn: Connection, frame: RegisterTriggerType) -> str | None:
        """Why `conn` may not provide this trigger type, or None."""
        own = conn.effective_namespace
        if frame.namespace is not None and frame.namespace != own:
            return f"a worker in namespace {own!r} may not provide types in {frame.namespace!r}"
        engine_type = self._tables.trigger_types.get((DEFAULT_NAMESPACE, frame.id))
        if frame.id.startswith("engine::") or (
            engine_type is not None and engine_type.builtin is not None
        ):
            return f"{frame.id!r} is a trigger type of the engine's own"
        return None

    def binding_refusal(self, conn: Connection, frame: RegisterTrigger) -> str | None:
        """Why `conn` may not (re)bind under this trigger id: it belongs to someone else (a
        durable binding, or a live worker's that `conn` did not reattach from)."""
        previous = self._tables.bindings.get(frame.id)
        if previous is None or previous.owner == conn.id:
            return None
        owner = self._tables.connection(previous.owner)
        if owner is not None and owner.worker_id == conn.reattached_from:
            return None
        return f"trigger id {frame.id} belongs to another worker"

    # --- reservations ----------------------------------------------------------------------

    def holder(self, key: FunctionKey, conn: Connection) -> str | None:
        """The worker id the id is reserved for, unless that worker is `conn`."""
        reservation = self._reserved.get(key)
        if reservation is None or reservation.worker_id == conn.reattached_from:
            return None
        return reservation.worker_id

    def claim(self, key: FunctionKey) -> None:
        """The reserved id went back to its worker: the reservation is over."""
        self._reserved.pop(key, None)

    def reserve(self, conn: Connection, keys: list[FunctionKey]) -> list[FunctionKey]:
        """`conn` ended while serving `keys`: reserve them for it. Returns the ids that free
        up at once instead (no grace)."""
        if self._grace <= 0:
            return keys
        deadline = self._clock() + self._grace
        for key in keys:
            self._reserved[key] = _Reservation(conn.worker_id, conn.core.reattach_token, deadline)
        return []

    def adopt(self, conn: Connection, worker_id: str, token: str | None) -> bool:
        """`conn` reattaches as a departed `worker_id`: if the token is that worker's, the
        ids reserved for it are `conn`'s. Whether it was recognised."""
        if token is None:
            return False
        if any(r.worker_id == worker_id and r.token == token for r in self._reserved.values()):
            conn.reattached_from = worker_id
            return True
        return False

    def next_deadline(self) -> float | None:
        """When the earliest reservation ends, or None."""
        return min((r.deadline for r in self._reserved.values()), default=None)

    def expire(self, now: float) -> list[FunctionKey]:
        """End the reservations due by `now`; the ids that freed up."""
        due = [key for key, r in self._reserved.items() if r.deadline <= now]
        for key in due:
            del self._reserved[key]
        return due

    # --- waiting registrations -------------------------------------------------------------

    def wait(self, key: FunctionKey, conn: Connection, frame: RegisterFunction) -> None:
        """`conn` was refused `key` because another worker holds it: remember its request
        (a repeated request keeps its place in line and its latest frame)."""
        self._waiting.setdefault(key, {})[conn.id] = frame
        conn.waiting.add(key, function_bytes(frame))

    def stop_waiting(self, key: FunctionKey, conn: Connection) -> None:
        """`conn` no longer wants `key` (it unregistered it, or got it)."""
        line = self._waiting.get(key)
        if line is not None and line.pop(conn.id, None) is not None and not line:
            del self._waiting[key]
        conn.waiting.discard(key)

    def forget(self, conn: Connection) -> None:
        """`conn` ended: it waits for nothing."""
        for key in list(conn.waiting):
            self.stop_waiting(key, conn)

    def next_in_line(self, key: FunctionKey) -> tuple[Connection, RegisterFunction] | None:
        """The earliest connection still waiting for `key`, removed from the line."""
        line = self._waiting.get(key)
        while line:
            conn_id = next(iter(line))
            frame = line[conn_id]
            conn = self._tables.connection(conn_id)
            if conn is None:  # defensive: `forget` removes ended connections
                del line[conn_id]
                continue
            self.stop_waiting(key, conn)
            return conn, frame
        return None
