"""The `state` service's key-value store (spec §10.3), sans-IO.

Values live in memory, by (scope, key), as plain JSON values. Each write returns what
changed (`StateChange`); the engine's I/O layer makes the changes durable (see
`storage.py`) before the caller is answered, so an acknowledged write survives a crash.

Update operations (`state::update`) are those of `update_ops.py`, shared with streams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from msgspec import Raw

from .._protocol.codes import DESERIALIZATION_ERROR, INVALID_ARGUMENTS
from .._protocol.frames import ErrorBody, decode_value, to_raw
from .service import Statement
from .update_ops import UpdateOp, apply_ops

__all__ = ["STATE_FUNCTIONS", "Durable", "StateChange", "StateStore"]


@dataclass(frozen=True, slots=True)
class StateChange:
    """One write to make durable: `new` is None when the key was deleted."""

    scope: str
    key: str
    old: Any
    new: Any
    deleted: bool = False
    existed: bool = True
    """Whether the key held a value before (a set of a new key is `state:created`)."""

    def statements(self) -> Iterable[Statement]:
        """The row of the `state` table this change writes or removes."""
        if self.deleted:
            return (("DELETE FROM state WHERE scope = ? AND key = ?", (self.scope, self.key)),)
        return (
            (
                "INSERT OR REPLACE INTO state (scope, key, value) VALUES (?, ?, ?)",
                (self.scope, self.key, msgspec.json.encode(self.new)),
            ),
        )


@dataclass(frozen=True, slots=True)
class Durable:
    """A built-in's answer that may only be sent once `changes` are on disk."""

    result: Raw
    changes: tuple[StateChange, ...]


class _Address(msgspec.Struct):
    scope: str
    key: str


class _Scope(msgspec.Struct):
    scope: str


class _Set(msgspec.Struct):
    scope: str
    key: str
    value: Any = None
    data: Any = None


class _Update(msgspec.Struct):
    scope: str
    key: str
    ops: list[UpdateOp]


class StateStore:
    """Every (scope, key) → value, and the operations of the `state::*` functions."""

    def __init__(self, items: Iterable[tuple[str, str, Any]] = ()) -> None:
        self._values: dict[tuple[str, str], Any] = {(s, k): v for s, k, v in items}

    def get(self, scope: str, key: str) -> Any:
        """The value, or None."""
        return self._values.get((scope, key))

    def set(self, scope: str, key: str, value: Any) -> StateChange:
        """Store `value`."""
        existed = (scope, key) in self._values
        old = self._values.get((scope, key))
        self._values[(scope, key)] = value
        return StateChange(scope, key, old, value, existed=existed)

    def delete(self, scope: str, key: str) -> StateChange:
        """Remove the key (a no-op change when it is absent)."""
        existed = (scope, key) in self._values
        old = self._values.pop((scope, key), None)
        return StateChange(scope, key, old, None, deleted=True, existed=existed)

    def values(self, scope: str) -> list[Any]:
        """The values of a scope, in key order."""
        return [v for (s, _), v in sorted(self._values.items(), key=_by_key) if s == scope]

    def groups(self) -> list[str]:
        """Every scope that holds a key, sorted."""
        return sorted({scope for scope, _ in self._values})

    def update(
        self, scope: str, key: str, ops: list[UpdateOp]
    ) -> tuple[StateChange, list[dict[str, Any]]]:
        """Apply `ops` in order to a copy of the value (see `update_ops.apply_ops`)."""
        existed = (scope, key) in self._values
        old = self._values.get((scope, key))
        value, errors = apply_ops(old, ops)
        self._values[(scope, key)] = value
        return StateChange(scope, key, old, value, existed=existed), errors


def _by_key(item: tuple[tuple[str, str], Any]) -> str:
    return item[0][1]


# --- the state::* functions --------------------------------------------------------------------

StateOutcome = Raw | ErrorBody | Durable


def _parse(data: Raw, shape: type[Any]) -> Any:
    try:
        return msgspec.convert(decode_value(data), shape, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _InputError(str(exc)) from None


class _InputError(Exception):
    pass


def _state_set(store: StateStore, data: Raw) -> StateOutcome:
    request: _Set = _parse(data, _Set)
    value = request.value if request.value is not None else request.data
    change = store.set(request.scope, request.key, value)
    return Durable(to_raw({"old_value": change.old, "new_value": change.new}), (change,))


def _state_get(store: StateStore, data: Raw) -> StateOutcome:
    request: _Address = _parse(data, _Address)
    return to_raw(store.get(request.scope, request.key))


def _state_delete(store: StateStore, data: Raw) -> StateOutcome:
    request: _Address = _parse(data, _Address)
    change = store.delete(request.scope, request.key)
    return Durable(to_raw(change.old), (change,))


def _state_update(store: StateStore, data: Raw) -> StateOutcome:
    request: _Update = _parse(data, _Update)
    change, errors = store.update(request.scope, request.key, request.ops)
    answer: dict[str, Any] = {"old_value": change.old, "new_value": change.new}
    if errors:
        answer["errors"] = errors
    return Durable(to_raw(answer), (change,))


def _state_list(store: StateStore, data: Raw) -> StateOutcome:
    request: _Scope = _parse(data, _Scope)
    return to_raw(store.values(request.scope))


def _state_list_groups(store: StateStore, data: Raw) -> StateOutcome:
    return to_raw({"groups": store.groups()})


def _guarded(run: Callable[[StateStore, Raw], StateOutcome]) -> Callable[..., StateOutcome]:
    def guarded(store: StateStore, data: Raw) -> StateOutcome:
        try:
            return run(store, data)
        except _InputError as exc:
            return ErrorBody(DESERIALIZATION_ERROR, str(exc))
        except (TypeError, ValueError) as exc:  # a value JSON cannot hold, say
            return ErrorBody(INVALID_ARGUMENTS, str(exc))

    return guarded


STATE_FUNCTIONS: Final[dict[str, tuple[str, Callable[[StateStore, Raw], StateOutcome]]]] = {
    function_id: (description, _guarded(run))
    for function_id, description, run in (
        ("state::set", "Store a value under (scope, key)", _state_set),
        ("state::get", "The value under (scope, key), or null", _state_get),
        ("state::delete", "Remove (scope, key); answers the old value", _state_delete),
        ("state::update", "Apply update operations to (scope, key)", _state_update),
        ("state::list", "The values of a scope", _state_list),
        ("state::list_groups", "Every scope that holds a key", _state_list_groups),
    )
}
"""The state service's functions: id → (description, runner)."""
