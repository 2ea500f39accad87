"""The worker runtime against the embedded engine on real sockets, on asyncio and trio."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest

import anyiii
from anyiii.engine import EmbeddedEngine, EngineSettings

FAST_RECONNECT = anyiii.ReconnectConfig(initial_delay=0.05, max_delay=0.2)


class AddIn(msgspec.Struct):
    a: int
    b: int


class AddOut(msgspec.Struct):
    total: int


@asynccontextmanager
async def stoppable_engine(
    port: int = 0,
) -> AsyncIterator[tuple[EmbeddedEngine, anyio.Event, anyio.Event]]:
    """An engine in its own task: set the first event to stop it; the second is set once
    it has stopped (its ports released)."""
    ready, stop, stopped = anyio.Event(), anyio.Event(), anyio.Event()
    box: list[EmbeddedEngine] = []

    async def serve() -> None:
        settings = EngineSettings(shutdown_timeout=1.0)
        try:
            async with anyiii.engine.run(port=port, http_port=0, settings=settings) as engine:
                box.append(engine)
                ready.set()
                await stop.wait()
        finally:
            stopped.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(serve)
        await ready.wait()
        yield box[0], stop, stopped
        stop.set()


async def call(worker: anyiii.Worker, function_id: str, payload: object = None) -> object:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def test_typed_handlers_decode_payloads_and_publish_schemas() -> None:
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:

            @w.function("math::add")
            async def add(data: AddIn) -> AddOut:
                return AddOut(total=data.a + data.b)

            assert await call(w, "math::add", {"a": 2, "b": 3}) == {"total": 5}
            info = await call(w, "engine::functions::info", {"function_id": "math::add"})
            assert isinstance(info, dict)
            assert info["request_schema"]["$defs"]["AddIn"]["required"] == ["a", "b"]
            assert info["response_schema"]["$defs"]["AddOut"]["required"] == ["total"]
            with pytest.raises(anyiii.InvocationError) as caught:
                await call(w, "math::add", {"a": "two", "b": 3})
            assert caught.value.code == "invocation_failed"


async def test_sync_handlers_run_off_the_event_loop_thread() -> None:
    loop_thread = threading.get_ident()
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:

            @w.function("where")
            def where(data: object) -> bool:
                return threading.get_ident() != loop_thread

            @w.function("nested")
            def nested(data: object) -> object:
                # the blocking twin works from a worker thread...
                return w.trigger({"function_id": "where"})

            assert await call(w, "where") is True
            assert await call(w, "nested") is True
            # ...and refuses to block the event loop's own thread
            with pytest.raises(RuntimeError, match="event loop thread"):
                w.trigger({"function_id": "where"})


async def test_a_cancelled_call_leaves_nothing_pending_and_its_late_result_is_counted() -> None:
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:
            release, started = anyio.Event(), anyio.Event()

            @w.function("slow")
            async def slow(data: object) -> str:
                started.set()
                await release.wait()
                return "late"

            with anyio.move_on_after(5) as scope:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(call, w, "slow")
                    await started.wait()
                    tasks.cancel_scope.cancel()
            assert not scope.cancelled_caught
            assert w.statistics().pending_calls == 0
            release.set()
            # The runtime has no event for its counters; poll, bounded by fail_after.
            while w.statistics().late_results == 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            assert w.statistics().late_results == 1


async def test_timeout_ms_raises_timeout() -> None:
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:

            @w.function("never")
            async def never(data: object) -> None:
                await anyio.sleep_forever()

            started = time.monotonic()
            with pytest.raises(anyiii.InvocationError) as caught:
                await w.trigger_async({"function_id": "never", "timeout_ms": 200})
            assert caught.value.code == "TIMEOUT"
            assert time.monotonic() - started < 5
            assert w.statistics().pending_calls == 0


async def test_pending_calls_fail_at_once_when_the_engine_goes() -> None:
    with anyio.fail_after(30):
        async with stoppable_engine() as (engine, stop, _):
            async with (
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT) as callee,
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT) as caller,
            ):
                started = anyio.Event()

                @callee.function("hang")
                async def hang(data: object) -> None:
                    started.set()
                    await anyio.sleep_forever()

                await call(callee, "engine::functions::list")  # registration has landed
                began = time.monotonic()

                async def stop_when_running() -> None:
                    await started.wait()
                    stop.set()

                failure: anyiii.InvocationError | None = None
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(stop_when_running)
                    try:
                        await caller.trigger_async({"function_id": "hang", "timeout_ms": 60_000})
                    except anyiii.InvocationError as error:
                        failure = error
                assert failure is not None
                assert failure.code == "invocation_stopped"
                assert time.monotonic() - began < 10  # far from the 60 s timeout


async def test_reconnect_replays_functions_and_triggers() -> None:
    with anyio.fail_after(40):
        states: list[anyiii.ConnectionState] = []
        async with stoppable_engine() as (first, stop_first, first_stopped):
            port = first.port
            async with anyiii.connect(first.url, reconnect=FAST_RECONNECT) as w:
                w.on_connection_state_change(states.append)

                @w.function("echo")
                async def echo(data: object) -> object:
                    return data

                await w.register_trigger(
                    "http", "echo", {"api_path": "echo", "http_method": "POST"}
                )
                assert await call(w, "echo", 1) == 1
                stop_first.set()
                await first_stopped.wait()
                async with stoppable_engine(port) as (second, _, _):
                    while True:  # wait for the worker to come back
                        try:
                            assert await call(w, "echo", 2) == 2
                            break
                        except anyiii.InvocationError:
                            await anyio.sleep(0.05)
                    # The replayed binding was sent before that call on the same connection.
                    assert second.http_routes.match("POST", "/echo") is not None
        reconnecting = states.index(anyiii.ConnectionState.RECONNECTING)
        assert anyiii.ConnectionState.CONNECTED in states[reconnecting:]  # it came back
        assert states[-1] is anyiii.ConnectionState.DISCONNECTED  # and left cleanly


async def test_without_reconnect_the_loss_is_raised_as_itself() -> None:
    with anyio.fail_after(20):
        async with stoppable_engine() as (engine, stop, _):
            with pytest.raises(anyiii.ConnectionClosed):  # noqa: PT012 -- raised leaving the block
                async with anyiii.connect(engine.url, reconnect=False) as w:
                    stop.set()
                    await w.serve_forever()
            assert w.connection_state is anyiii.ConnectionState.FAILED


async def test_a_user_exception_leaves_the_block_unchanged() -> None:
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine:
            with pytest.raises(KeyError, match="mine"):
                async with anyiii.connect(engine.url):
                    raise KeyError("mine")


async def test_leaving_drains_then_cancels_within_bounds() -> None:
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine:
            async with anyiii.connect(engine.url, worker_name="caller") as caller:
                outcomes: dict[str, object] = {}
                running = {"quick": anyio.Event(), "stuck": anyio.Event()}
                async with anyio.create_task_group() as tasks:
                    started = time.monotonic()
                    async with anyiii.connect(
                        engine.url, drain_timeout=0.5, close_timeout=1.0
                    ) as callee:

                        @callee.function("quick")
                        async def quick(data: object) -> str:
                            running["quick"].set()
                            await anyio.sleep(0.1)
                            return "finished"

                        @callee.function("stuck")
                        async def stuck(data: object) -> None:
                            running["stuck"].set()
                            await anyio.sleep_forever()

                        await call(callee, "engine::functions::list")

                        async def record(function_id: str) -> None:
                            try:
                                outcomes[function_id] = await call(caller, function_id)
                            except anyiii.InvocationError as error:
                                outcomes[function_id] = error.code

                        for function_id in running:
                            tasks.start_soon(record, function_id)
                        for event in running.values():
                            await event.wait()
                    elapsed = time.monotonic() - started
        assert outcomes == {"quick": "finished", "stuck": "invocation_cancelled"}
        assert elapsed < 0.5 + 1.0 + 2.0


async def test_excess_invocations_are_answered_worker_busy() -> None:
    limits = anyiii.WorkerLimits(max_concurrency=1, max_queued=1)
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine:
            async with (
                anyiii.connect(engine.url, limits=limits) as callee,
                anyiii.connect(engine.url) as caller,
            ):
                gate, entered = anyio.Event(), anyio.Event()

                @callee.function("gated")
                async def gated(data: object) -> str:
                    entered.set()
                    await gate.wait()
                    return "ok"

                await call(callee, "engine::functions::list")
                results: list[object] = []
                two_refused = anyio.Event()

                async def one() -> None:
                    try:
                        results.append(await call(caller, "gated"))
                    except anyiii.InvocationError as error:
                        results.append(error.code)
                        if results.count("worker_busy") == 2:
                            two_refused.set()

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(one)
                    await entered.wait()
                    for _ in range(3):
                        tasks.start_soon(one)
                    await two_refused.wait()
                    gate.set()
                assert sorted(map(str, results)) == ["ok", "ok", "worker_busy", "worker_busy"]
                assert callee.statistics().rejected_busy == 2


async def test_many_concurrent_calls_leave_nothing_behind() -> None:
    with anyio.fail_after(60):
        async with anyiii.engine.run(http_port=None) as engine:
            async with anyiii.connect(engine.url) as callee, anyiii.connect(engine.url) as caller:

                @callee.function("inc")
                async def inc(data: int) -> int:
                    return data + 1

                await call(callee, "engine::functions::list")
                results: list[object] = []

                async def batch(start: int) -> None:
                    for n in range(start, start + 100):
                        results.append(await call(caller, "inc", n))

                async with anyio.create_task_group() as tasks:
                    for start in range(0, 10_000, 100):
                        tasks.start_soon(batch, start)
                assert sorted(results) == list(range(1, 10_001))  # type: ignore[type-var]
                assert caller.statistics().pending_calls == 0
                assert callee.statistics().running_invocations == 0


async def test_metadata_reaches_positional_and_keyword_only_parameters() -> None:
    """`h(data, metadata)` and the official SDK's `h(data, *, metadata=None)` both get it;
    `h(data)` does not."""

    async def positional(data: object, metadata: object) -> object:
        return metadata

    def keyword(data: object, *, metadata: object = "unset") -> object:
        return metadata

    async def neither(data: object, *, other: object = "kept") -> object:
        return other

    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:
            w.register_function("meta::positional", positional)
            w.register_function("meta::keyword", keyword)
            w.register_function("meta::neither", neither)
            for function_id in ("meta::positional", "meta::keyword"):
                result = await w.trigger_async(
                    {"function_id": function_id, "payload": {}, "metadata": {"m": 1}}
                )
                assert result == {"m": 1}
                assert await call(w, function_id) is None
            assert (
                await w.trigger_async(
                    {"function_id": "meta::neither", "payload": {}, "metadata": {"m": 1}}
                )
                == "kept"
            )
