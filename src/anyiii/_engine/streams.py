"""The `stream` service's item store (spec §10.4), sans-IO.

A stream is a named collection of groups; a group holds items by id, each a JSON value.
Items of a group keep the order they were first set in (setting an existing item keeps
its place, deleting it removes it), as the real engine's default `kv` adapter does with
its ordered maps; a group whose last item is deleted no longer exists (it leaves
`list_groups`). Each write returns what changed (`StreamChange`), which the service
commits before answering and announcing it, like state.

Persistence: the real engine's stream worker ships configured with its `kv` adapter in
`file_based` mode (`engine/src/workers/stream/iii.worker.yaml`), so items outlive a
restart there; here they are rows of the `stream_items` table when the engine has a
`data_dir`. `seq` records the insertion order so a restart lists a group as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from .service import Statement
from .update_ops import UpdateOp, apply_ops

__all__ = [
    "STREAM_ITEMS_SCHEMA",
    "STREAM_RESTORE_QUERY",
    "StreamChange",
    "StreamStore",
]

STREAM_ITEMS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS stream_items (
    stream TEXT NOT NULL,
    grp TEXT NOT NULL,
    item TEXT NOT NULL,
    seq INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (stream, grp, item)
)
"""

STREAM_RESTORE_QUERY: Final = "SELECT stream, grp, item, seq, value FROM stream_items ORDER BY seq"


@dataclass(frozen=True, slots=True)
class StreamChange:
    """One item written or deleted: `existed` says whether it held a value before (a
    write of a new item is a `create`, a delete of a missing one announces nothing)."""

    stream: str
    group: str
    item: str
    old: Any
    new: Any
    seq: int
    existed: bool
    deleted: bool = False

    def statements(self) -> Iterable[Statement]:
        """The row of `stream_items` this change writes or removes."""
        key = (self.stream, self.group, self.item)
        if self.deleted:
            sql = "DELETE FROM stream_items WHERE stream = ? AND grp = ? AND item = ?"
            return ((sql, key),)
        sql = (
            "INSERT OR REPLACE INTO stream_items (stream, grp, item, seq, value) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        return ((sql, (*key, self.seq, msgspec.json.encode(self.new))),)


class StreamStore:
    """Every stream's groups and items (see the module docstring)."""

    def __init__(self, rows: Iterable[tuple[str, str, str, int, Any]] = ()) -> None:
        """`rows` are (stream, group, item, seq, value), in `seq` order."""
        self._groups: dict[tuple[str, str], dict[str, Any]] = {}
        self._seqs: dict[tuple[str, str, str], int] = {}
        self._next_seq = 1
        for stream, group, item, seq, value in rows:
            self._groups.setdefault((stream, group), {})[item] = value
            self._seqs[(stream, group, item)] = seq
            self._next_seq = max(self._next_seq, seq + 1)

    def get(self, stream: str, group: str, item: str) -> Any:
        """The item's value, or None."""
        return self._groups.get((stream, group), {}).get(item)

    def set(self, stream: str, group: str, item: str, value: Any) -> StreamChange:
        """Store `value` as the item."""
        items = self._groups.setdefault((stream, group), {})
        existed = item in items
        old = items.get(item)
        items[item] = value
        return StreamChange(
            stream, group, item, old, value, self._seq(stream, group, item), existed
        )

    def update(
        self, stream: str, group: str, item: str, ops: list[UpdateOp]
    ) -> tuple[StreamChange, list[dict[str, Any]]]:
        """Apply update operations to the item (see `update_ops`); a missing item starts
        as null, as in the real engine."""
        old = self.get(stream, group, item)
        value, errors = apply_ops(old, ops)
        return self.set(stream, group, item, value), errors

    def delete(self, stream: str, group: str, item: str) -> StreamChange:
        """Remove the item (a change with `existed` false when it was absent)."""
        items = self._groups.get((stream, group), {})
        existed = item in items
        old = items.pop(item, None)
        if not items:
            self._groups.pop((stream, group), None)
        seq = self._seqs.pop((stream, group, item), 0)
        return StreamChange(stream, group, item, old, None, seq, existed, deleted=True)

    def items(self, stream: str, group: str) -> list[Any]:
        """The group's values, in insertion order."""
        return list(self._groups.get((stream, group), {}).values())

    def groups(self, stream: str) -> list[str]:
        """The stream's groups that hold an item, sorted."""
        return sorted(group for name, group in self._groups if name == stream)

    def streams(self) -> dict[str, list[str]]:
        """Every stream that holds an item, by name (sorted), with its sorted groups."""
        out: dict[str, list[str]] = {}
        for stream, group in sorted(self._groups):
            out.setdefault(stream, []).append(group)
        return out

    def __iter__(self) -> Iterator[tuple[str, str, str, Any]]:
        """Every (stream, group, item, value), for tests and checks."""
        for (stream, group), items in self._groups.items():
            for item, value in items.items():
                yield stream, group, item, value

    def _seq(self, stream: str, group: str, item: str) -> int:
        key = (stream, group, item)
        seq = self._seqs.get(key)
        if seq is None:
            seq = self._seqs[key] = self._next_seq
            self._next_seq += 1
        return seq
