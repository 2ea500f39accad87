"""Builders of the update operations `state::update` and `stream::update` apply in order
(spec §10.3 `UpdateOp`). A path is a dot-separated string (`"a.b"`) or a list of segments
(`["a", "b"]`, for keys that contain dots); no path (for `merge` and `append`) or an empty
one is the value itself. Each builder returns the operation as the wire has it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

__all__ = ["Op", "Path", "append", "decrement", "increment", "merge", "remove", "set"]

Path: TypeAlias = str | Sequence[str]
Op: TypeAlias = dict[str, Any]
"""One operation, e.g. `{"type": "increment", "path": "count", "by": 1}`."""


def _path(path: Path) -> str | list[str]:
    return path if isinstance(path, str) else list(path)


def set(path: Path, value: Any) -> Op:
    """Put `value` at `path` (making the objects on the way)."""
    return {"type": "set", "path": _path(path), "value": value}


def merge(value: dict[str, Any], path: Path | None = None) -> Op:
    """Merge the keys of `value` into the object at `path` (or the value itself)."""
    op: Op = {"type": "merge", "value": value}
    if path is not None:
        op["path"] = _path(path)
    return op


def increment(path: Path, by: float = 1) -> Op:
    """Add `by` to the number at `path` (a missing one counts as 0)."""
    return {"type": "increment", "path": _path(path), "by": by}


def decrement(path: Path, by: float = 1) -> Op:
    """Subtract `by` from the number at `path` (a missing one counts as 0)."""
    return {"type": "decrement", "path": _path(path), "by": by}


def append(value: Any, path: Path | None = None) -> Op:
    """Append `value` to the list at `path` (or the value itself)."""
    op: Op = {"type": "append", "value": value}
    if path is not None:
        op["path"] = _path(path)
    return op


def remove(path: Path) -> Op:
    """Remove the key at `path`."""
    return {"type": "remove", "path": _path(path)}
