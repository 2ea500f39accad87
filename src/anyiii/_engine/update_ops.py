"""Update operations on a JSON value, shared by `state::update` and `stream::update`.

The real engine applies one list of operations (its `UpdateOp`) to state values and stream
items alike; so do we. An operation names a place inside the value by a path: a string of
dot-separated segments (`"a.b"`), or an array of segments (`["a", "b"]`); an empty path (or
none, for `merge` and `append`) is the value itself. Operations apply in order to a copy of
the value; one that cannot apply is skipped and reported, the others still apply.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Final

import msgspec

__all__ = ["UpdateOp", "apply_ops"]


class UpdateOp(msgspec.Struct):
    """One operation: `type` is set, merge, increment, decrement, append or remove."""

    type: str
    path: str | list[str] | None = None
    value: Any = None
    by: float | int = 1


def apply_ops(old: Any, ops: list[UpdateOp]) -> tuple[Any, list[dict[str, Any]]]:
    """The value after `ops`, and the skipped ones as `{op_index, code, message}`.

    `old` is not modified."""
    value = copy.deepcopy(old)
    errors: list[dict[str, Any]] = []
    for index, op in enumerate(ops):
        apply = _OPERATIONS.get(op.type)
        try:
            if apply is None:
                raise _OpError("unknown_operation", f"unknown update operation {op.type!r}")
            if isinstance(op.value, dict | list):
                # The result must not share containers with `ops`: later operations
                # change the result in place, and would change the caller's ops too.
                op = msgspec.structs.replace(op, value=copy.deepcopy(op.value))
            value = apply(value, _segments(op.path), op)
        except _OpError as exc:
            errors.append({"op_index": index, "code": exc.code, "message": str(exc)})
    return value, errors


class _OpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _segments(path: str | list[str] | None) -> list[str]:
    if path is None or path == "":
        return []
    return path.split(".") if isinstance(path, str) else [str(part) for part in path]


def _parent(value: Any, segments: list[str], op: str) -> tuple[dict[str, Any], str]:
    """The object holding the last segment (made as needed) and that segment."""
    if not isinstance(value, dict):
        raise _OpError("not_an_object", f"{op}: the value at the path's root is not an object")
    node = value
    for segment in segments[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise _OpError("not_an_object", f"{op}: {segment!r} is not an object")
        node = child
    return node, segments[-1]


def _root(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _set(value: Any, segments: list[str], op: UpdateOp) -> Any:
    if not segments:
        return op.value
    value = _root(value)
    node, last = _parent(value, segments, "set")
    node[last] = op.value
    return value


def _merge(value: Any, segments: list[str], op: UpdateOp) -> Any:
    if not isinstance(op.value, dict):
        raise _OpError("invalid_value", "merge: the value must be an object")
    if not segments:
        return {**_root(value), **op.value}
    value = _root(value)
    node, last = _parent(value, segments, "merge")
    current = node.get(last)
    node[last] = {**(current if isinstance(current, dict) else {}), **op.value}
    return value


def _adder(sign: int) -> Callable[[Any, list[str], UpdateOp], Any]:
    def add(value: Any, segments: list[str], op: UpdateOp) -> Any:
        if not segments:
            current = 0 if value is None else value
            if not isinstance(current, int | float) or isinstance(current, bool):
                raise _OpError("not_a_number", f"{op.type}: the value is not a number")
            return current + sign * op.by
        value = _root(value)
        node, last = _parent(value, segments, op.type)
        current = node.get(last, 0)
        if not isinstance(current, int | float) or isinstance(current, bool):
            raise _OpError("not_a_number", f"{op.type}: {last!r} is not a number")
        node[last] = current + sign * op.by
        return value

    return add


def _append(value: Any, segments: list[str], op: UpdateOp) -> Any:
    if not segments:
        current = [] if value is None else value
        if not isinstance(current, list):
            raise _OpError("not_an_array", "append: the value is not an array")
        return [*current, op.value]
    value = _root(value)
    node, last = _parent(value, segments, "append")
    current = node.get(last, [])
    if not isinstance(current, list):
        raise _OpError("not_an_array", f"append: {last!r} is not an array")
    node[last] = [*current, op.value]
    return value


def _remove(value: Any, segments: list[str], op: UpdateOp) -> Any:
    if not segments:
        return None
    if not isinstance(value, dict):
        return value
    node, last = _parent(value, segments, "remove")
    node.pop(last, None)
    return value


_OPERATIONS: Final[dict[str, Callable[[Any, list[str], UpdateOp], Any]]] = {
    "set": _set,
    "merge": _merge,
    "increment": _adder(1),
    "decrement": _adder(-1),
    "append": _append,
    "remove": _remove,
}
