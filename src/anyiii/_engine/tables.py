"""The embedded engine's tables: who is connected, what is registered, what is in flight.

Five tables (connections, functions, invocations, trigger types, trigger bindings), the
records they hold, and the queries asked of them. Only the router changes them: it decides,
then writes. The built-ins see them through `TableView`, which offers queries only, so a
built-in cannot change the engine's state behind the router's back.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, Protocol, TypeAlias, TypeVar

from .._protocol import events as ev
from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.engine import EngineConnection
from .._protocol.frames import RegisterFunction, RegisterTrigger, RegisterTriggerType
from .http_targets import HttpTarget
from .providers import TriggerProvider

__all__ = [
    "INTERNAL",
    "Binding",
    "Connection",
    "Function",
    "FunctionKey",
    "Held",
    "Invocation",
    "TableView",
    "Tables",
    "TriggerType",
    "TypeKey",
]

INTERNAL: Final = -1
"""The caller id of invocations the engine starts itself (HTTP requests, trigger fires)."""

FunctionKey: TypeAlias = tuple[str, str]
"""(namespace, function id): where a function is registered."""

TypeKey: TypeAlias = tuple[str, str]
"""(namespace, trigger type id): where a trigger type is provided."""

K = TypeVar("K", bound=Hashable)


class Held(Generic[K]):
    """The registrations of one kind a connection holds (function ids, binding ids, ...),
    each with the bytes it takes, and their running sum `nbytes`.

    The sum is what `RegistrationLimits.max_registration_bytes` bounds: kept as keys come
    and go, it is checked in O(1), and since it changes only with the keys (adding a held
    key again replaces its size), it cannot drift from what the connection holds.
    """

    __slots__ = ("_sizes", "nbytes")

    def __init__(self) -> None:
        self._sizes: dict[K, int] = {}
        self.nbytes = 0

    def add(self, key: K, size: int) -> None:
        """Hold `key`, taking `size` bytes (in place of what it took, if held already)."""
        self.nbytes += size - self._sizes.get(key, 0)
        self._sizes[key] = size

    def discard(self, key: K) -> None:
        """Hold `key` no more, giving its bytes back (nothing if it was not held)."""
        self.nbytes -= self._sizes.pop(key, 0)

    def size_of(self, key: K) -> int:
        """The bytes `key` takes (0 if it is not held)."""
        return self._sizes.get(key, 0)

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def __iter__(self) -> Iterator[K]:
        return iter(self._sizes)

    def __len__(self) -> int:
        return len(self._sizes)


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
    functions: Held[FunctionKey] = field(default_factory=Held)
    triggers: Held[str] = field(default_factory=Held)
    trigger_types: Held[TypeKey] = field(default_factory=Held)
    waiting: Held[FunctionKey] = field(default_factory=Held)
    """Function ids it was refused because another worker holds them, which it gets when
    they free up (`ownership.py`)."""
    reattached_from: str | None = None
    """The worker id of the connection it proved to be by `reattach` (its token): the ids
    reserved for that worker are its own (`ownership.py`)."""

    @property
    def worker_id(self) -> str:
        return self.core.worker_id

    @property
    def registered_bytes(self) -> int:
        """The bytes of everything it registered, waiting registrations included (what
        `RegistrationLimits.max_registration_bytes` bounds)."""
        return (
            self.functions.nbytes
            + self.triggers.nbytes
            + self.trigger_types.nbytes
            + self.waiting.nbytes
        )

    @property
    def name(self) -> str | None:
        name = self.info.get("name")
        return name if isinstance(name, str) else None

    @property
    def effective_namespace(self) -> str:
        """The namespace its registrations and calls resolve in: `default` until fixed."""
        return self.namespace if self.namespace is not None else DEFAULT_NAMESPACE


@dataclass(slots=True, eq=False)
class Function:
    """A registered function; `owner` None means it is built into the engine.

    `http` is set for an HTTP-invoked function: the engine calls it over HTTP, and `owner`
    is only the connection whose registration it is.
    """

    namespace: str
    frame: RegisterFunction
    owner: int | None
    http: HttpTarget | None = None


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
    through `engine::register_trigger`; `creator` says which worker made a durable one
    (its limit, `RegistrationLimits.max_durable_bindings`), None when the engine did.
    """

    frame: RegisterTrigger
    owner: int | None
    target_namespace: str
    provider: TypeKey | None = None
    creator: str | None = None


class TableView(Protocol):
    """The tables seen read-only: every query the built-ins ask, and nothing that writes.

    Queries return fresh sequences, so a caller may change the tables while it walks one.
    """

    def connection(self, conn_id: int | None) -> Connection | None:
        """The live connection with this id (None for None)."""
        ...

    def live_connections(self) -> Sequence[Connection]:
        """Every live connection, oldest first."""
        ...

    def worker_named(self, name: str, namespace: str) -> Connection | None:
        """The first live connection of that worker name in that namespace."""
        ...

    def function(self, namespace: str, function_id: str) -> Function | None:
        """The function registered under this id in this namespace."""
        ...

    def all_functions(self) -> Sequence[Function]:
        """Every registered function, built-ins included."""
        ...

    def functions_of(self, owner: int | None) -> Sequence[Function]:
        """The functions a connection registered (None: the engine's built-ins)."""
        ...

    def active_invocations(self, conn_id: int) -> int:
        """How many invocations the connection is running."""
        ...

    def trigger_type(self, key: TypeKey | None) -> TriggerType | None:
        """The trigger type provided at this key (None for None)."""
        ...

    def all_trigger_types(self) -> Sequence[TriggerType]:
        """Every trigger type, the engine's own included."""
        ...

    def trigger_types_of(self, owner: int) -> Sequence[TriggerType]:
        """The trigger types a connection provides."""
        ...

    def binding(self, trigger_id: str) -> Binding | None:
        """The binding with this trigger id."""
        ...

    def all_bindings(self) -> Sequence[Binding]:
        """Every binding, parked ones included."""
        ...

    def bindings_of_provider(self, key: TypeKey) -> Sequence[Binding]:
        """The bindings the trigger type at `key` serves."""
        ...

    def bindings_of_owner(self, owner: int) -> Sequence[Binding]:
        """The bindings a connection registered."""
        ...

    def bindings_of_function(self, function_id: str, namespace: str) -> Sequence[Binding]:
        """The bindings that call this function in this namespace."""
        ...


class Tables:
    """The five tables, written by the router and read through the queries below."""

    def __init__(self) -> None:
        self.connections: dict[int, Connection] = {}
        self.functions: dict[FunctionKey, Function] = {}
        self.invocations: dict[str, Invocation] = {}
        """Read it freely; change it only through `add_invocation` and `pop_invocation`,
        which keep `_running` (each callee's count) right."""
        self._running: dict[int, int] = {}
        self.trigger_types: dict[TypeKey, TriggerType] = {}
        self.bindings: dict[str, Binding] = {}

    # --- connections -----------------------------------------------------------------------

    def connection(self, conn_id: int | None) -> Connection | None:
        return None if conn_id is None else self.connections.get(conn_id)

    def live_connections(self) -> Sequence[Connection]:
        return list(self.connections.values())

    def find_worker(self, worker_id: str) -> Connection | None:
        """The live connection with this worker id, if any."""
        return next((c for c in self.connections.values() if c.worker_id == worker_id), None)

    def worker_named(self, name: str, namespace: str) -> Connection | None:
        return next(
            (
                c
                for c in self.connections.values()
                if c.name == name and c.effective_namespace == namespace
            ),
            None,
        )

    # --- functions and invocations ---------------------------------------------------------

    def function(self, namespace: str, function_id: str) -> Function | None:
        return self.functions.get((namespace, function_id))

    def all_functions(self) -> Sequence[Function]:
        return list(self.functions.values())

    def functions_of(self, owner: int | None) -> Sequence[Function]:
        return [f for f in self.functions.values() if f.owner == owner]

    def namespaces_of(self, function_id: str) -> list[str]:
        """Every namespace a function of this id is registered in, sorted."""
        return sorted(namespace for namespace, fid in self.functions if fid == function_id)

    def not_found_message(self, function_id: str, namespace: str) -> str:
        """`function_not_found`'s message (spec §5.1): where else the id is registered."""
        elsewhere = self.namespaces_of(function_id)
        message = f"Function {function_id} not found in namespace {namespace}"
        if elsewhere:
            message += f". It is registered in namespace(s): {', '.join(elsewhere)}"
        return message

    def active_invocations(self, conn_id: int) -> int:
        # A counter, not a scan: `engine::workers::list` asks this for every worker, and
        # scanning would cost workers times calls in flight while the engine does nothing else.
        return self._running.get(conn_id, 0)

    def add_invocation(self, invocation_id: str, invocation: Invocation) -> None:
        """Record an invocation in flight (replacing one of the same id, as a dict would)."""
        self.pop_invocation(invocation_id)
        self.invocations[invocation_id] = invocation
        if invocation.callee is not None:
            self._running[invocation.callee] = self._running.get(invocation.callee, 0) + 1

    def pop_invocation(self, invocation_id: str) -> Invocation | None:
        """Forget an invocation that ended; the invocation, or None if none was in flight."""
        invocation = self.invocations.pop(invocation_id, None)
        callee = None if invocation is None else invocation.callee
        if callee is not None:
            left = self._running[callee] - 1
            if left:
                self._running[callee] = left
            else:
                del self._running[callee]
        return invocation

    # --- trigger types and bindings --------------------------------------------------------

    def trigger_type(self, key: TypeKey | None) -> TriggerType | None:
        return None if key is None else self.trigger_types.get(key)

    def all_trigger_types(self) -> Sequence[TriggerType]:
        return list(self.trigger_types.values())

    def trigger_types_of(self, owner: int) -> Sequence[TriggerType]:
        return [t for t in self.trigger_types.values() if t.owner == owner]

    def binding(self, trigger_id: str) -> Binding | None:
        return self.bindings.get(trigger_id)

    def all_bindings(self) -> Sequence[Binding]:
        return list(self.bindings.values())

    def bindings_of_provider(self, key: TypeKey) -> Sequence[Binding]:
        return [b for b in self.bindings.values() if b.provider == key]

    def bindings_of_owner(self, owner: int) -> Sequence[Binding]:
        return [b for b in self.bindings.values() if b.owner == owner]

    def bindings_of_function(self, function_id: str, namespace: str) -> Sequence[Binding]:
        return [
            b
            for b in self.bindings.values()
            if b.frame.function_id == function_id and b.target_namespace == namespace
        ]
