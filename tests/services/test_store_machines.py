"""Stateful properties of the state and stream stores: any sequence of writes, deletes,
update operations (both path forms) and restarts from what the writes persisted leaves
each store agreeing with a plain dict model."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from anyiii._engine.state import StateStore
from anyiii._engine.state_service import StateService
from anyiii._engine.streams import STREAM_ITEMS_SCHEMA, STREAM_RESTORE_QUERY, StreamStore
from anyiii._engine.update_ops import UpdateOp

NAMES = st.sampled_from(["a", "b"])
KEYS = st.sampled_from(["k1", "k2", "k3"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["x", "y", "z"]), children, max_size=3)
    ),
    max_leaves=6,
)
PATHS = (
    st.none()
    | st.just("")
    | st.sampled_from(["x", "y", "x.y", "x.z.y"])
    | st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3)
)
OPS = st.lists(
    st.builds(
        UpdateOp,
        type=st.sampled_from(["set", "merge", "increment", "decrement", "append", "remove", "?"]),
        path=PATHS,
        value=VALUES,
        by=st.integers(-5, 5),
    ),
    max_size=4,
)


# --- the model of update operations: a value in, a value out, or a refusal -------------------


class Refused(Exception):
    pass


def segments(path: str | list[str] | None) -> list[str]:
    if not path:
        return []
    return path.split(".") if isinstance(path, str) else list(path)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def at(node: Any, path: list[str], change: Any) -> Any:
    """A copy of the object `node` whose `path` holds `change(old, present)`; missing
    objects along the way are made, other values there refuse."""
    node = dict(node)
    head, rest = path[0], path[1:]
    if not rest:
        node[head] = change(node.get(head), head in node)
        return node
    child = node.get(head, {}) if head in node else {}
    if not isinstance(child, dict):
        raise Refused
    node[head] = at(child, rest, change)
    return node


def model_op(value: Any, op: UpdateOp) -> Any:
    path = segments(op.path)
    kind = op.type
    if kind == "merge" and not isinstance(op.value, dict):
        raise Refused
    if kind not in {"set", "merge", "increment", "decrement", "append", "remove"}:
        raise Refused
    sign = -1 if kind == "decrement" else 1

    def change(old: Any, present: bool) -> Any:
        if kind == "set":
            return op.value
        if kind == "merge":
            return {**(old if isinstance(old, dict) else {}), **op.value}
        # Inside an object a missing member counts as 0 (or []), a null one does not; the
        # whole value counts as 0 (or []) when it is null.
        empty = not present if path else old is None
        if kind in ("increment", "decrement"):
            base = 0 if empty else old
            if not is_number(base):
                raise Refused
            return base + sign * op.by
        if kind == "append":
            base = [] if empty else old
            if not isinstance(base, list):
                raise Refused
            return [*base, op.value]
        raise AssertionError(kind)

    if kind == "remove":
        if not path:
            return None
        if not isinstance(value, dict):
            return value
        parent_path, last = path[:-1], path[-1]
        if not parent_path:
            return {k: v for k, v in value.items() if k != last}

        def without_last(old: Any, present: bool) -> Any:
            if present and not isinstance(old, dict):
                raise Refused
            return {k: v for k, v in (old or {}).items() if k != last}

        return at(value, parent_path, without_last)
    if not path:
        return change(value, True)
    return at(value if isinstance(value, dict) else {}, path, change)


def model_update(value: Any, ops: list[UpdateOp]) -> tuple[Any, list[int]]:
    refused: list[int] = []
    for index, op in enumerate(ops):
        try:
            value = model_op(value, op)
        except Refused:
            refused.append(index)
    return value, refused


# --- the state store -------------------------------------------------------------------------


class StateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = StateStore()
        self.model: dict[tuple[str, str], Any] = {}
        self.db = sqlite3.connect(":memory:")
        for statement in StateService.schema:
            self.db.execute(statement)

    def persist(self, change: Any) -> None:
        for sql, parameters in change.statements():
            self.db.execute(sql, parameters)

    @rule(scope=NAMES, key=KEYS, value=VALUES)
    def set(self, scope: str, key: str, value: Any) -> None:
        change = self.store.set(scope, key, value)
        assert (change.old, change.existed) == (
            self.model.get((scope, key)),
            (scope, key) in self.model,
        )
        self.model[(scope, key)] = value
        self.persist(change)

    @rule(scope=NAMES, key=KEYS)
    def delete(self, scope: str, key: str) -> None:
        change = self.store.delete(scope, key)
        assert change.old == self.model.pop((scope, key), None)
        self.persist(change)

    @rule(scope=NAMES, key=KEYS, ops=OPS)
    def update(self, scope: str, key: str, ops: list[UpdateOp]) -> None:
        change, errors = self.store.update(scope, key, ops)
        expected, refused = model_update(self.model.get((scope, key)), ops)
        assert [e["op_index"] for e in errors] == refused
        assert change.new == expected
        self.model[(scope, key)] = expected
        self.persist(change)

    @rule()
    def restart(self) -> None:
        service = StateService()
        (query,) = service.restore_queries
        service.restore([list(self.db.execute(query))])
        self.store = service.store

    @invariant()
    def agrees_with_the_model(self) -> None:
        for scope in ("a", "b"):
            keys = sorted(k for s, k in self.model if s == scope)
            assert self.store.values(scope) == [self.model[(scope, k)] for k in keys]
            for key in ("k1", "k2", "k3"):
                assert self.store.get(scope, key) == self.model.get((scope, key))
        assert self.store.groups() == sorted({s for s, _ in self.model})

    def teardown(self) -> None:
        self.db.close()


# --- the stream store ------------------------------------------------------------------------


class StreamMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = StreamStore()
        self.model: dict[tuple[str, str], dict[str, Any]] = {}
        self.db = sqlite3.connect(":memory:")
        self.db.execute(STREAM_ITEMS_SCHEMA)

    def persist(self, change: Any) -> None:
        for sql, parameters in change.statements():
            self.db.execute(sql, parameters)

    def write(self, stream: str, group: str, item: str, value: Any) -> None:
        self.model.setdefault((stream, group), {})[item] = value

    @rule(stream=NAMES, group=NAMES, item=KEYS, value=VALUES)
    def set(self, stream: str, group: str, item: str, value: Any) -> None:
        change = self.store.set(stream, group, item, value)
        assert change.existed == (item in self.model.get((stream, group), {}))
        assert change.old == self.model.get((stream, group), {}).get(item)
        self.write(stream, group, item, value)
        self.persist(change)

    @rule(stream=NAMES, group=NAMES, item=KEYS)
    def delete(self, stream: str, group: str, item: str) -> None:
        change = self.store.delete(stream, group, item)
        items = self.model.get((stream, group), {})
        assert change.existed == (item in items)
        assert change.old == items.pop(item, None)
        if not items:
            self.model.pop((stream, group), None)
        self.persist(change)

    @rule(stream=NAMES, group=NAMES, item=KEYS, ops=OPS)
    def update(self, stream: str, group: str, item: str, ops: list[UpdateOp]) -> None:
        change, errors = self.store.update(stream, group, item, ops)
        old = self.model.get((stream, group), {}).get(item)
        expected, refused = model_update(old, ops)
        assert [e["op_index"] for e in errors] == refused
        assert change.new == expected
        self.write(stream, group, item, expected)
        self.persist(change)

    @rule()
    def restart(self) -> None:
        rows = self.db.execute(STREAM_RESTORE_QUERY)
        self.store = StreamStore((s, g, i, q, msgspec.json.decode(v)) for s, g, i, q, v in rows)

    @invariant()
    def agrees_with_the_model(self) -> None:
        for stream in ("a", "b"):
            assert self.store.groups(stream) == sorted(g for s, g in self.model if s == stream)
            for group in ("a", "b"):
                items = self.model.get((stream, group), {})
                assert self.store.items(stream, group) == list(items.values())
                for item in ("k1", "k2", "k3"):
                    assert self.store.get(stream, group, item) == items.get(item)
        expected = {}
        for stream, group in sorted(self.model):
            expected.setdefault(stream, []).append(group)
        assert self.store.streams() == expected

    def teardown(self) -> None:
        self.db.close()


TestStateStore = StateMachine.TestCase
TestStateStore.settings = settings(max_examples=100, stateful_step_count=20, deadline=None)
TestStreamStore = StreamMachine.TestCase
TestStreamStore.settings = settings(max_examples=100, stateful_step_count=20, deadline=None)
