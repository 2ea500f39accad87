"""The contract between the router and the engine's in-engine services, with no I/O.

A service (state, streams, pub/sub, cron, queues) is a sans-IO object that owns some
function ids and trigger types. The router runs its functions synchronously: a function
gets the raw payload and answers a `Reply`. A reply can carry `changes` that must be on disk
before anyone hears of them (the router turns them into a `Persist` action, and the answer
and the reply's `effects` are carried out only once the changes are committed), and
`effects`: calls the engine should make on the service's behalf (`Invoke`), or more durable
changes (`Commit`). Services with timers (cron ticks, queue retries) say when they next
have work (`next_deadline`) and produce effects from `tick`.

An `Invoke` may name a `condition_function_id` (checked first, in the target's namespace;
only a literal `false` skips, an error skips and is logged, as the real engine does) and an
`on_done` callback that receives the call's outcome, from which a service continues (a queue
acknowledges or retries a message). Callbacks run inside the router, synchronously.

Storage is declared, not performed: a service lists its tables (`schema`), the queries that
load it back (`restore_queries`) and takes their rows in `restore`; a `Change` describes its
own SQL statements. The SQLite layer (`storage.py`) runs them; nothing here touches a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import ErrorBody
from .providers import TriggerProvider

__all__ = [
    "BaseService",
    "Change",
    "Commit",
    "Effect",
    "Forward",
    "Invoke",
    "Notify",
    "OnDone",
    "Reply",
    "Service",
    "ServiceContext",
    "ServiceFunction",
    "ServiceRunner",
    "Statement",
]

Statement: TypeAlias = tuple[str, tuple[Any, ...]]
"""One SQL statement and its parameters."""


class Change(Protocol):
    """One write to make durable."""

    def statements(self) -> Iterable[Statement]:
        """The SQL that records this change (run in one transaction with its batch)."""
        ...


OnDone: TypeAlias = Callable[[Raw | None, ErrorBody | None], "Sequence[Effect]"]
"""Continues after an `Invoke`: gets its result or error (both None when a condition
skipped the call) and returns what to do next."""


@dataclass(frozen=True, slots=True)
class Invoke:
    """Call a function on the service's behalf (spec §5.3: a fresh invocation id, the
    binding's metadata, no `_caller_worker_id`)."""

    function_id: str
    data: Raw
    namespace: str = DEFAULT_NAMESPACE
    metadata: Raw | None = None
    condition_function_id: str | None = None
    on_done: OnDone | None = None
    """None: fire and forget (the outcome is dropped)."""


@dataclass(frozen=True, slots=True)
class Commit:
    """Make `changes` durable, then carry out `effects`."""

    changes: tuple[Change, ...]
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True, slots=True)
class Notify:
    """Run `run` (sans-IO, quick, no raising) once what precedes it is durable: how a
    service tells in-process listeners (stream subscribers) about a change only after
    the change is committed, like every other announcement."""

    run: Callable[[], None]


Effect: TypeAlias = "Invoke | Commit | Notify"


@dataclass(frozen=True, slots=True)
class Forward:
    """Answer the caller with what another function answers (a stream whose storage a
    worker took over, say). The forwarded call keeps the caller's invocation."""

    function_id: str
    data: Raw
    namespace: str = DEFAULT_NAMESPACE
    then: Callable[[Raw | None, ErrorBody | None], Reply] | None = None
    """None: the caller gets the other function's answer as is. Otherwise the engine makes
    the call itself and `then` turns its outcome into the reply the caller gets (and its
    changes and effects: a custom stream's write still announces itself)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a service function answers: a result (or `Forward`) or an error, `changes` to
    commit before the answer is sent, and `effects` to carry out after it."""

    result: Raw | Forward | None = None
    error: ErrorBody | None = None
    changes: tuple[Change, ...] = ()
    effects: tuple[Effect, ...] = ()


ServiceRunner: TypeAlias = Callable[[Raw], Reply]


@dataclass(frozen=True, slots=True)
class ServiceFunction:
    """One in-engine function: its description (for the listings) and its runner."""

    description: str
    run: ServiceRunner


class ServiceContext(Protocol):
    """What a service may ask of the engine (the router implements it)."""

    def now(self) -> float:
        """The engine's monotonic clock, in seconds (timers and deadlines use it)."""
        ...

    def wall_clock_ms(self) -> int:
        """Milliseconds since the epoch (timestamps in payloads)."""
        ...

    def new_id(self) -> str:
        """A fresh random id."""
        ...

    def has_function(self, namespace: str, function_id: str) -> bool:
        """Whether the function is registered (worker-hosted or in-engine)."""
        ...


class Service(Protocol):
    """An in-engine service (see the module docstring)."""

    @property
    def name(self) -> str:
        """As in logs and the engine's configuration (`iii-state`, `iii-cron`, …)."""
        ...

    @property
    def functions(self) -> Mapping[str, ServiceFunction]:
        """The function ids it owns (all in namespace `default`)."""
        ...

    @property
    def trigger_types(self) -> Mapping[str, TriggerProvider]:
        """The trigger types it provides (in namespace `default`)."""
        ...

    @property
    def schema(self) -> Sequence[str]:
        """`CREATE TABLE IF NOT EXISTS …` statements for what it persists."""
        ...

    @property
    def restore_queries(self) -> Sequence[str]:
        """The `SELECT`s whose rows `restore` takes, in this order."""
        ...

    def restore(self, rows: Sequence[Sequence[tuple[Any, ...]]]) -> None:
        """Load what was persisted (called once, before the engine serves anyone)."""
        ...

    def next_deadline(self) -> float | None:
        """When `tick` next has work (the context's clock), or None."""
        ...

    def tick(self) -> Sequence[Effect]:
        """Run whatever is due now."""
        ...


class BaseService:
    """Defaults for a service without timers or storage; subclasses set `name` and fill
    `functions` and `trigger_types`."""

    name = "service"
    schema: tuple[str, ...] = ()
    restore_queries: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.functions: dict[str, ServiceFunction] = {}
        self.trigger_types: dict[str, TriggerProvider] = {}

    def restore(self, rows: Sequence[Sequence[tuple[Any, ...]]]) -> None:
        return None

    def next_deadline(self) -> float | None:
        return None

    def tick(self) -> Sequence[Effect]:
        return ()
