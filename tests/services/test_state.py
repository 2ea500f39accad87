"""The `state` service (spec §10.3): the store's rules without I/O, the functions through
the embedded engine on both backends, and persistence across a `kill -9` of a real engine
process."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from engine_process import engine_process

import anyiii
from anyiii._engine.state import StateStore
from anyiii._engine.update_ops import UpdateOp as _Op
from anyiii.testing import running_engine

# --- the store, without I/O ------------------------------------------------------------------


def op(kind: str, path: Any = None, **fields: Any) -> _Op:
    return _Op(type=kind, path=path, **fields)


def test_update_operations_in_order_with_both_path_forms() -> None:
    store = StateStore()
    store.set("s", "k", {"count": 1, "tags": ["a"]})
    change, errors = store.update(
        "s",
        "k",
        [
            op("increment", "count", by=4),
            op("decrement", ["count"], by=2),
            op("append", "tags", value="b"),
            op("merge", "profile", value={"name": "Ada"}),
            op("set", ["profile", "age"], value=36),
            op("remove", "tags"),
        ],
    )
    assert errors == []
    assert change.old == {"count": 1, "tags": ["a"]}
    assert change.new == {"count": 3, "profile": {"name": "Ada", "age": 36}}
    assert store.get("s", "k") == change.new


def test_a_failing_operation_is_reported_and_the_others_still_apply() -> None:
    store = StateStore()
    store.set("s", "k", {"name": "x"})
    change, errors = store.update(
        "s", "k", [op("increment", "name", by=1), op("set", "ok", value=True), op("nope")]
    )
    assert [(e["op_index"], e["code"]) for e in errors] == [
        (0, "not_a_number"),
        (2, "unknown_operation"),
    ]
    assert change.new == {"name": "x", "ok": True}


def test_root_operations_and_missing_values() -> None:
    store = StateStore()
    assert store.update("s", "n", [op("increment", by=2)])[0].new == 2
    assert store.update("s", "l", [op("append", value=1), op("append", value=2)])[0].new == [1, 2]
    assert store.update("s", "m", [op("merge", value={"a": 1})])[0].new == {"a": 1}
    assert store.delete("s", "n").old == 2
    assert store.get("s", "n") is None
    assert store.values("s") == [[1, 2], {"a": 1}]
    assert store.groups() == ["s"]


# --- through the engine ----------------------------------------------------------------------


async def call(worker: anyiii.Worker, function_id: str, payload: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def test_the_state_functions_through_the_engine() -> None:
    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            first = await call(w, "state::set", {"scope": "users", "key": "ada", "value": 1})
            assert first == {"old_value": None, "new_value": 1}
            alias = await call(w, "state::set", {"scope": "users", "key": "bob", "data": {"n": 2}})
            assert alias == {"old_value": None, "new_value": {"n": 2}}
            assert await call(w, "state::get", {"scope": "users", "key": "ada"}) == 1
            updated = await call(
                w,
                "state::update",
                {
                    "scope": "users",
                    "key": "bob",
                    "ops": [{"type": "increment", "path": "n", "by": 3}],
                },
            )
            assert updated == {"old_value": {"n": 2}, "new_value": {"n": 5}}
            assert await call(w, "state::list", {"scope": "users"}) == [1, {"n": 5}]
            await call(w, "state::set", {"scope": "orders", "key": "o1", "value": "x"})
            groups = await call(w, "state::list_groups", {})
            assert groups == {"groups": ["orders", "users"]}
            assert await call(w, "state::delete", {"scope": "users", "key": "ada"}) == 1
            assert await call(w, "state::get", {"scope": "users", "key": "ada"}) is None
            with pytest.raises(anyiii.InvocationError) as bad:
                await call(w, "state::get", {"key": "no scope"})
            assert bad.value.code == "deserialization_error"


async def test_state_in_a_data_dir_outlives_the_engine(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None, data_dir=tmp_path) as engine:
            async with anyiii.connect(engine.url) as w:
                await call(w, "state::set", {"scope": "s", "key": "k", "value": [1, 2]})
                await call(w, "state::set", {"scope": "s", "key": "gone", "value": 0})
                await call(w, "state::delete", {"scope": "s", "key": "gone"})
        async with anyiii.engine.run(http_port=None, data_dir=tmp_path) as engine:
            async with anyiii.connect(engine.url) as w:
                assert await call(w, "state::get", {"scope": "s", "key": "k"}) == [1, 2]
                assert await call(w, "state::list", {"scope": "s"}) == [[1, 2]]


@pytest.mark.parametrize("engine_backend", ["asyncio", "trio"])
async def test_acknowledged_state_survives_kill_9(tmp_path: Path, engine_backend: str) -> None:
    """Every write the engine answered is on disk: a SIGKILL right after loses none."""
    data = str(tmp_path / "data")
    with anyio.fail_after(60):
        async with engine_process(engine_backend, "--data-dir", data) as engine:
            async with anyiii.connect(engine.url, close_timeout=0.5) as w:
                for n in range(50):
                    await call(w, "state::set", {"scope": "kill", "key": f"k{n}", "value": n})
                await call(
                    w,
                    "state::update",
                    {"scope": "kill", "key": "k0", "ops": [{"type": "increment", "by": 100}]},
                )
                engine.process.send_signal(signal.SIGKILL)
                await engine.process.wait()
        async with engine_process(engine_backend, "--data-dir", data) as engine:
            async with anyiii.connect(engine.url) as w:
                values = await call(w, "state::list", {"scope": "kill"})
                assert sorted(values) == sorted([100, *range(1, 50)])


async def test_the_state_trigger_announces_changes_to_matching_bindings() -> None:
    events: list[dict[str, Any]] = []
    seen = anyio.Event()

    async def on_change(event: dict[str, Any]) -> None:
        events.append(event)
        if len(events) == 3:
            seen.set()

    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            w.register_function("app::on_change", on_change)
            await w.register_trigger("state", "app::on_change", {"scope": "carts"})
            await call(w, "engine::functions::list", {})
            await call(w, "state::set", {"scope": "other", "key": "x", "value": 1})
            await call(w, "state::set", {"scope": "carts", "key": "c1", "value": {"n": 1}})
            await call(w, "state::set", {"scope": "carts", "key": "c1", "value": {"n": 2}})
            await call(w, "state::delete", {"scope": "carts", "key": "c1"})
            await call(w, "state::delete", {"scope": "carts", "key": "never"})
            await seen.wait()
    assert [(e["event_type"], e["old_value"], e["new_value"]) for e in events] == [
        ("state:created", None, {"n": 1}),
        ("state:updated", {"n": 1}, {"n": 2}),
        ("state:deleted", {"n": 2}, None),
    ]
    assert all(e["type"] == "state" and e["scope"] == "carts" for e in events)
    assert all("_caller_worker_id" not in e for e in events)


async def test_a_state_binding_with_a_condition_is_called_only_unless_it_answers_false() -> None:
    """Only a literal `false` skips; `null`, `0` or an object let the call through, and a
    failing condition skips it (and is logged), as the real engine's `check_condition`."""
    called: list[str] = []
    checked: list[str] = []
    done = anyio.Event()

    async def condition(event: dict[str, Any]) -> Any:
        checked.append(event["key"])
        answers: dict[str, Any] = {"no": False, "zero": 0, "null": None, "yes": True}
        if event["key"] == "boom":
            raise RuntimeError("condition failed")
        return answers[event["key"]]

    async def on_change(event: dict[str, Any]) -> None:
        called.append(event["key"])
        if len(called) == 3:
            done.set()

    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            w.register_function("app::condition", condition)
            w.register_function("app::on_change", on_change)
            await w.register_trigger(
                "state",
                "app::on_change",
                {"scope": "c", "condition_function_id": "app::condition"},
            )
            for key in ("no", "boom", "zero", "null", "yes"):
                await call(w, "state::set", {"scope": "c", "key": key, "value": 1})
            await done.wait()
            # The skipped ones were decided before the last write was even answered: their
            # conditions ran first, on the same connection, in order.
            await call(w, "state::get", {"scope": "c", "key": "yes"})
    assert sorted(checked) == ["boom", "no", "null", "yes", "zero"]
    assert sorted(called) == ["null", "yes", "zero"]
