"""Property: whatever sequence of state writes the engine makes, the SQLite database holds
exactly what the in-memory store holds, so a restart loads the same state."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiii._engine.state import StateChange, StateStore
from anyiii._engine.state_service import StateService
from anyiii._engine.storage import SqliteStorage
from anyiii._engine.update_ops import UpdateOp as _Op

SCOPES = st.sampled_from(["a", "b", "c"])
KEYS = st.sampled_from(["k1", "k2", "k3", "k4"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["x", "y", "z"]), children, max_size=3)
    ),
    max_leaves=8,
)
OPS = st.builds(
    _Op,
    type=st.sampled_from(["set", "merge", "increment", "decrement", "append", "remove"]),
    path=st.none() | st.sampled_from(["x", "x.y", "y"]) | st.just(["x", "z"]),
    value=VALUES,
    by=st.integers(-5, 5),
)
WRITES = st.lists(
    st.one_of(
        st.tuples(st.just("set"), SCOPES, KEYS, VALUES),
        st.tuples(st.just("delete"), SCOPES, KEYS, st.none()),
        st.tuples(st.just("update"), SCOPES, KEYS, st.lists(OPS, max_size=3)),
    ),
    max_size=25,
)


def apply(store: StateStore, write: tuple[str, str, str, Any]) -> StateChange:
    kind, scope, key, argument = write
    if kind == "set":
        return store.set(scope, key, argument)
    if kind == "delete":
        return store.delete(scope, key)
    return store.update(scope, key, argument)[0]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(WRITES, min_size=1, max_size=4))
async def test_the_database_holds_what_the_store_holds(
    batches: list[list[tuple[str, str, str, Any]]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        service = StateService()
        storage = await SqliteStorage.open(Path(directory), service.schema)
        try:
            store = StateStore()
            for batch in batches:  # each batch is one group commit
                await storage.write([apply(store, write) for write in batch])
            service.restore(await storage.load(service.restore_queries))
            loaded = service.store
        finally:
            await storage.aclose()
    for scope in ("a", "b", "c"):
        assert loaded.values(scope) == store.values(scope)
        for key in ("k1", "k2", "k3", "k4"):
            assert loaded.get(scope, key) == store.get(scope, key)
    assert loaded.groups() == store.groups()
