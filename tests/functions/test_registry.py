"""The function model through the embedded engine, on asyncio and trio: registries, typed
handles, dispatch, calls, remote stubs, tail calls, primitive functions, batches, clients."""

from __future__ import annotations

import dataclasses
import datetime
import pickle
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest

import anyiii
from anyiii.testing import running_engine


class Order(msgspec.Struct):
    item: str
    quantity: int


@dataclasses.dataclass
class Receipt:
    item: str
    total: int
    at: datetime.datetime


def make_registry(name: str) -> tuple[anyiii.Registry, dict[str, Any]]:
    """A registry with typed, multi-parameter, plain and self-resetting functions."""
    registry = anyiii.Registry(name)
    seen: dict[str, Any] = {"events": [], "threads": []}

    @registry.function
    async def charge(order: Order) -> Receipt:
        return Receipt(order.item, order.quantity * 3, datetime.datetime(2026, 1, 2, 3, 4))

    @registry.function(id=f"{name}::sum", description="adds")
    async def add(a: int, b: int = 10) -> int:
        return a + b

    @registry.function
    def plain_square(x: int) -> list[int]:
        seen["threads"].append(threading.get_ident())
        return [x, x * x]

    @registry.function
    async def countdown(n: int) -> str:
        if n > 0:
            raise anyiii.Reset(countdown, n - 1)
        return "liftoff"

    @registry.function
    async def record(event: str) -> None:
        seen["events"].append(event)
        seen["arrived"].set()

    seen.update(charge=charge, add=add, plain_square=plain_square, countdown=countdown)
    seen.update(record=record)
    return registry, seen


@asynccontextmanager
async def served(name: str) -> AsyncIterator[tuple[anyiii.Registry, dict[str, Any], str]]:
    registry, seen = make_registry(name)
    seen["arrived"] = anyio.Event()
    async with (
        running_engine(http_port=None) as engine,
        anyiii.connect(engine.url, registry=registry) as server,
    ):
        await server.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        yield registry, seen, engine.url


async def test_typed_calls_come_back_as_their_types() -> None:
    with anyio.fail_after(20):
        async with served("shop") as (registry, fns, url), anyiii.Client(url):
            receipt = await fns["charge"](Order("tea", 2))
            assert receipt == Receipt("tea", 6, datetime.datetime(2026, 1, 2, 3, 4))
            assert await fns["add"](2, b=3) == 5
            assert await fns["add"](2) == 12
            squares = await fns["plain_square"](7)
            assert squares == [7, 49]
            assert all(type(v) is int for v in squares)
            assert threading.get_ident() not in fns["threads"]
            # The default id is "<registry name>::<qualified name>" without "<locals>."
            assert set(registry.functions) == {
                "shop::make_registry.charge",
                "shop::sum",
                "shop::make_registry.plain_square",
                "shop::make_registry.countdown",
                "shop::make_registry.record",
            }


async def test_a_multi_parameter_function_takes_a_plain_json_object() -> None:
    with anyio.fail_after(20):
        async with served("json") as (_, _fns, url), anyiii.Client(url) as client:
            result = await client.worker.trigger_async(
                {"function_id": "json::sum", "payload": {"a": 1, "b": 2}}
            )
            assert result == 3


async def test_dispatch_build_call_and_batches() -> None:
    with anyio.fail_after(20):
        async with served("fire") as (registry, fns, url), anyiii.Client(url) as client:
            dispatch_id = await fns["record"].dispatch("one")
            assert isinstance(dispatch_id, str)
            await fns["arrived"].wait()
            assert fns["events"] == ["one"]
            call = fns["add"].build_call(4, b=5)
            assert call == anyiii.Call(function_id="fire::sum", payload={"a": 4, "b": 5})
            assert await client.worker.trigger_async(call.request()) == 9
            fns["arrived"] = anyio.Event()
            batch = registry.batch().add(fns["record"], "a").add(fns["record"], "b")
            ids = await batch.dispatch()
            assert len(ids) == 2
            assert len(set(ids)) == 2
            assert batch.calls == []
            with anyio.fail_after(5):
                while len(fns["events"]) < 3:
                    await fns["arrived"].wait()
                    fns["arrived"] = anyio.Event()
            assert sorted(fns["events"]) == ["a", "b", "one"]
            ids = await client.dispatch([fns["record"].build_call("c")])
            assert len(ids) == 1


async def test_reset_runs_as_a_loop_without_growing_the_stack() -> None:
    with anyio.fail_after(60):
        async with served("loop") as (_, fns, url), anyiii.Client(url):
            assert await fns["countdown"](10_000) == "liftoff"


async def test_reset_into_a_remote_function_goes_through_the_engine() -> None:
    registry = anyiii.Registry("front")
    backend, _ = make_registry("back")
    remote_sum = registry.remote(id="back::sum")(_sum_stub)

    @registry.function
    async def delegate(a: int) -> int:
        raise anyiii.Reset(remote_sum, a, b=100)

    with anyio.fail_after(20):
        async with (
            running_engine(http_port=None) as engine,
            anyiii.connect(engine.url, registry=backend) as back,
            anyiii.connect(engine.url, registry=registry) as front,
        ):
            await back.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            await front.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            assert remote_sum.remote
            assert await remote_sum(1, b=2) == 3
            assert await delegate(5) == 105


async def _sum_stub(a: int, b: int = 0) -> int:
    raise AssertionError("a remote stub never runs")


async def test_primitive_functions_get_the_raw_payload() -> None:
    registry = anyiii.Registry("raw")
    seen: list[anyiii.Input] = []

    @registry.primitive_function(id="raw::forward")
    async def forward(request: anyiii.Input) -> anyiii.Output:
        seen.append(request)
        if request.value() == "fail":
            return anyiii.Output.error("PERMANENT_ERROR", "refused")
        if request.value() == "raise":
            raise RuntimeError("should not raise")
        return anyiii.Output.raw(bytes(request.payload))

    with anyio.fail_after(20):
        async with (
            running_engine(http_port=None) as engine,
            anyiii.connect(engine.url, registry=registry),
            anyiii.Client(engine.url),
        ):
            assert await forward([1, {"k": 2.5}]) == [1, {"k": 2.5}]
            assert isinstance(seen[0].payload, msgspec.Raw)
            assert seen[0].function_id == "raw::forward"
            assert forward.name == "raw::forward"
            assert forward.registry is registry
            with pytest.raises(anyiii.InvocationError) as refused:
                await forward("fail")
            assert (refused.value.code, refused.value.message) == ("PERMANENT_ERROR", "refused")
            with pytest.raises(anyiii.InvocationError) as raised:
                await forward("raise")
            assert raised.value.code == "invocation_failed"


async def test_blocking_functions_from_a_thread_and_not_on_the_loop() -> None:
    with anyio.fail_after(20):
        async with served("block") as (_, fns, url), anyiii.Client(url):
            add = anyiii.BlockingFunction(fns["add"])
            assert await anyio.to_thread.run_sync(lambda: add(1, b=1)) == 2
            with pytest.raises(RuntimeError, match="event loop"):
                add(1)


async def test_calls_need_a_worker_and_say_how_to_get_one() -> None:
    _, fns = make_registry("nowhere")
    with pytest.raises(anyiii.NoWorker, match=r"anyiii\.connect"):
        await fns["add"](1, 2)


def test_ids_are_unique_per_registry_and_handles_pickle_by_reference() -> None:
    registry, fns = make_registry("ids")
    with pytest.raises(ValueError, match="already has"):
        registry.function(id="ids::sum")(lambda a: a)
    assert fns["charge"].name == "ids::make_registry.charge"
    assert fns["add"].__wrapped__ is not None
    assert pickle.loads(pickle.dumps(fns["add"])) is fns["add"]
    with pytest.raises(TypeError):
        fns["add"].build_call(1, 2, 3)


async def test_closing_a_registry_stops_serving_it() -> None:
    with anyio.fail_after(20):
        async with served("closing") as (registry, fns, url), anyiii.Client(url) as client:
            assert await fns["add"](1, b=1) == 2
            registry.close()
            await client.worker.trigger_async(
                {"function_id": "engine::functions::list", "payload": {}}
            )
            with pytest.raises(anyiii.InvocationError) as caught:
                await fns["add"](1, b=1)
            assert caught.value.code == "function_not_found"


async def test_the_default_registry_and_anyiii_function() -> None:
    previous = anyiii.default_registry()
    mine = anyiii.Registry("defaults")
    anyiii.set_default_registry(mine)
    try:

        @anyiii.function
        async def hello(name: str) -> str:
            return f"hello {name}"

        assert hello.name == "defaults::test_the_default_registry_and_anyiii_function.hello"
        assert mine.functions[hello.name] is hello
        with anyio.fail_after(20):
            async with (
                running_engine(http_port=None) as engine,
                anyiii.connect(engine.url, registry=mine),
                anyiii.Client(engine.url),
            ):
                assert await hello("Ada") == "hello Ada"
    finally:
        anyiii.set_default_registry(previous)


async def test_blocking_functions_through_the_blocking_facade(anyio_backend_name: str) -> None:
    """A plain script's way: `register_worker` gives the blocking worker to call through."""
    with anyio.fail_after(30):
        async with served("script") as (_, fns, url):

            def script() -> int:
                client = anyiii.register_worker(
                    url,
                    anyiii.InitOptions(backend=anyio_backend_name),  # type: ignore[arg-type]
                )
                try:
                    return anyiii.BlockingFunction(fns["add"], client)(20, b=22)
                finally:
                    client.shutdown()

            assert await anyio.to_thread.run_sync(script) == 42


async def test_two_workers_serve_one_registry_and_closing_stops_both() -> None:
    """One registry, two workers. The engine (like the real one, spec §3.1) keeps one live
    owner per function id and namespace, refusing the second without dropping it; calls
    reach the first. Closing the registry unregisters it on both."""
    registry = anyiii.Registry("scaled")
    served_by: list[str] = []

    @registry.function(id="scaled::who")
    async def who() -> str:
        name = anyiii.get_context().worker.name
        served_by.append(name)
        return name

    with anyio.fail_after(20):
        async with (
            running_engine(http_port=None) as engine,
            anyiii.connect(engine.url, registry=registry, worker_name="one") as one,
            anyiii.connect(engine.url, worker_name="two") as two,
            anyiii.Client(engine.url) as client,
        ):
            two.serve(registry)
            for worker in (one, two):
                await worker.trigger_async(
                    {"function_id": "engine::functions::list", "payload": {}}
                )
            assert await who() == "one"
            assert two.connection_state == "connected"  # refused, not dropped
            registry.close()
            for worker in (one, two):
                await worker.trigger_async(
                    {"function_id": "engine::functions::list", "payload": {}}
                )
            listed = await client.worker.trigger_async(
                {"function_id": "engine::functions::list", "payload": {}}
            )
            assert "scaled::who" not in {f["function_id"] for f in listed["functions"]}


async def test_the_callers_cancellation_applies_to_a_reset_chain() -> None:
    """A chain that never ends holds no caller hostage: the caller's scope ends its wait,
    its slot is freed, and the serving worker's shutdown cancels the chain (bounded)."""
    registry = anyiii.Registry("endless")
    turns = {"count": 0}
    spinning = anyio.Event()

    @registry.function(id="endless::spin")
    async def spin(n: int) -> int:
        turns["count"] += 1
        if n == 100:
            spinning.set()
        await anyio.lowlevel.checkpoint()
        raise anyiii.Reset(spin, n + 1)

    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine:
            async with anyiii.connect(
                engine.url, registry=registry, drain_timeout=0.1, cancel_timeout=1.0
            ) as server:
                await server.trigger_async(
                    {"function_id": "engine::functions::list", "payload": {}}
                )
                async with anyiii.Client(engine.url) as client:
                    with anyio.CancelScope() as scope:
                        async with anyio.create_task_group() as tasks:
                            tasks.start_soon(spin, 0)
                            await spinning.wait()
                            scope.cancel()
                    assert client.worker.statistics().pending_calls == 0
                assert server.statistics().running_invocations == 1  # still spinning
            assert turns["count"] > 100


async def test_enqueue_sends_the_enqueue_action() -> None:
    """The embedded engine has no queues yet and says so for the enqueue action, which shows
    the handle sent it (the real engine hands the call to the named queue)."""
    with anyio.fail_after(20):
        async with served("queued") as (_, fns, url), anyiii.Client(url):
            with pytest.raises(anyiii.InvocationError) as caught:
                await fns["add"].enqueue("orders", 1, b=2)
            assert caught.value.code == "enqueue_error"
