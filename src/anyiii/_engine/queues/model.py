"""Queue messages, how they are stored, and the two changes that store them.

One table holds every message the engine accepted and has not finished with: waiting,
in flight, or dead (in its queue's dead-letter queue). A message is keyed by an id of the
engine's own; `seq` orders it within its lane (the order of acceptance, kept across
restarts). A change captures the row's values when it is made, so what reaches the disk is
the message as it was at that moment, whatever happens to it before the batch is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from ..service import Statement

__all__ = [
    "COLUMNS",
    "RESTORE_QUERY",
    "SCHEMA",
    "Deleted",
    "LaneKey",
    "Message",
    "Saved",
]

Kind: TypeAlias = Literal["queue", "topic"]

LaneKey: TypeAlias = tuple[str, ...]
"""("queue", name) for a named queue; ("topic", topic, namespace, function_id) for one
subscribed function of a topic (each gets its own copy of every message)."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS queue_messages (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    namespace TEXT NOT NULL,
    function_id TEXT NOT NULL,
    data BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    grp TEXT,
    receipt TEXT,
    created_ms INTEGER NOT NULL,
    dead INTEGER NOT NULL,
    error TEXT,
    failed_ms INTEGER
)
"""

COLUMNS: Final = (
    "id, seq, kind, name, namespace, function_id, data, attempts, grp, receipt, created_ms, "
    "dead, error, failed_ms"
)
RESTORE_QUERY: Final = f"SELECT {COLUMNS} FROM queue_messages ORDER BY seq"
_PLACES: Final = ", ".join("?" * 14)
_UPSERT: Final = f"INSERT OR REPLACE INTO queue_messages ({COLUMNS}) VALUES ({_PLACES})"
_DELETE: Final = "DELETE FROM queue_messages WHERE id = ?"


@dataclass(slots=True, eq=False)
class Message:
    """One accepted message (mutable: attempts, dead-letter state and timing change)."""

    id: str
    seq: int
    kind: Kind
    name: str
    """The queue's name, or the topic's."""
    namespace: str
    function_id: str
    data: bytes
    attempts: int = 0
    group: str | None = None
    receipt: str | None = None
    """The enqueue action's `messageReceiptId`."""
    created_ms: int = 0
    dead: bool = False
    error: str | None = None
    failed_ms: int | None = None
    ready_at: float = 0.0
    """When it may next be delivered (engine clock; not stored: after a restart, now)."""

    @property
    def lane(self) -> LaneKey:
        """Which lane delivers it."""
        if self.kind == "queue":
            return ("queue", self.name)
        return ("topic", self.name, self.namespace, self.function_id)

    def row(self) -> tuple[object, ...]:
        """Its stored columns, in `COLUMNS` order."""
        return (
            self.id,
            self.seq,
            self.kind,
            self.name,
            self.namespace,
            self.function_id,
            self.data,
            self.attempts,
            self.group,
            self.receipt,
            self.created_ms,
            int(self.dead),
            self.error,
            self.failed_ms,
        )

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> Message:
        """A message loaded back from its stored columns."""
        (id_, seq, kind, name, namespace, function_id, data) = row[:7]
        (attempts, group, receipt, created_ms, dead, error, failed_ms) = row[7:]
        assert kind in ("queue", "topic")
        return cls(
            id=str(id_),
            seq=int(seq),  # type: ignore[call-overload]
            kind=kind,
            name=str(name),
            namespace=str(namespace),
            function_id=str(function_id),
            data=bytes(data),  # type: ignore[call-overload]
            attempts=int(attempts),  # type: ignore[call-overload]
            group=None if group is None else str(group),
            receipt=None if receipt is None else str(receipt),
            created_ms=int(created_ms),  # type: ignore[call-overload]
            dead=bool(dead),
            error=None if error is None else str(error),
            failed_ms=None if failed_ms is None else int(failed_ms),  # type: ignore[call-overload]
        )


@dataclass(frozen=True, slots=True)
class Saved:
    """A message written as it is now (accepted, retried, dead-lettered or redriven)."""

    row: tuple[object, ...]

    @classmethod
    def of(cls, message: Message) -> Saved:
        return cls(message.row())

    def statements(self) -> Iterable[Statement]:
        yield (_UPSERT, self.row)


@dataclass(frozen=True, slots=True)
class Deleted:
    """A message finished with (delivered, consumed by a condition, or purged)."""

    id: str

    def statements(self) -> Iterable[Statement]:
        yield (_DELETE, (self.id,))
