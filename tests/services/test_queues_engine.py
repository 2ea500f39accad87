"""The queue service through the embedded engine, on both backends: the enqueue action and
durable topics with anyiii workers, retries, a worker dropped mid-message, the dead-letter
built-ins, and persistence across a `kill -9` of a real engine process."""

from __future__ import annotations

import functools
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from engine_peers import raw_worker
from engine_process import engine_process

import anyiii
from anyiii._engine.queues import QueueService
from anyiii._engine.state_service import StateService

JOBS = {"queue_configs": {"jobs": {"max_retries": 5, "backoff_ms": 10, "concurrency": 4}}}


def services(config: dict[str, Any]) -> tuple[Any, ...]:
    return (StateService, functools.partial(QueueService, config=config))


async def call(worker: anyiii.Worker, function_id: str, payload: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def enqueue(worker: anyiii.Worker, function_id: str, payload: Any, queue: str) -> Any:
    request = {
        "function_id": function_id,
        "payload": payload,
        "action": {"type": "enqueue", "queue": queue},
    }
    return await worker.trigger_async(request)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Ask again until `check` holds: each ask is a round trip through the engine, so the
    engine has carried out everything the previous answers depended on."""
    while not await check():
        await anyio.lowlevel.checkpoint()


async def test_an_enqueued_call_is_retried_until_it_succeeds() -> None:
    calls: list[dict[str, Any]] = []
    finished = anyio.Event()

    async def flaky(data: dict[str, Any]) -> str:
        calls.append(data)
        if len(calls) < 3:
            raise RuntimeError(f"failure {len(calls)}")
        finished.set()
        return "ok"

    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None, services=services(JOBS)) as engine:
            async with anyiii.connect(engine.url) as w:
                w.register_function("app::flaky", flaky)
                receipt = await enqueue(w, "app::flaky", {"order": 7}, "jobs")
                assert set(receipt) == {"messageReceiptId"}
                await finished.wait()

                async def drained() -> bool:
                    stats = await call(w, "engine::queue::topic_stats", {"queue": "jobs"})
                    return bool(stats["depth"] == 0)

                await until(drained)
                with pytest.raises(anyiii.InvocationError) as unknown:
                    await enqueue(w, "app::flaky", {}, "no-such-queue")
                assert unknown.value.code == "enqueue_error"
    assert calls == [{"order": 7}] * 3  # the original data, without _caller_worker_id


async def test_a_message_in_flight_when_its_worker_drops_goes_to_the_next_one() -> None:
    started = anyio.Event()
    second: list[Any] = []
    got = anyio.Event()

    async def stuck(frame: dict[str, Any]) -> None:  # never answers
        started.set()
        await anyio.sleep_forever()

    async def works(data: Any) -> None:
        second.append(data)
        got.set()

    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None, services=services(JOBS)) as engine:
            async with anyiii.connect(engine.url) as producer:
                # A raw worker, so leaving the block drops the connection mid-message.
                async with raw_worker(engine.url, "first", {"app::work": stuck}):
                    await enqueue(producer, "app::work", {"n": 1}, "jobs")
                    await started.wait()
                async with anyiii.connect(engine.url) as replacement:
                    replacement.register_function("app::work", works)
                    await got.wait()
    assert second == [{"n": 1}]


async def test_durable_topics_fan_out_and_dead_letters_are_inspected_redriven_and_purged() -> None:
    healthy = False
    seen: dict[str, list[Any]] = {"a": [], "b": []}
    redriven = anyio.Event()

    async def a(data: Any) -> None:
        seen["a"].append(data)
        if not healthy:
            raise RuntimeError("a is down")
        redriven.set()

    async def b(data: Any) -> None:
        seen["b"].append(data)

    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:
            w.register_function("app::a", a)
            w.register_function("app::b", b)
            config = {"topic": "orders", "queue_config": {"maxRetries": 0}}
            await w.register_trigger("durable:subscriber", "app::a", config)
            await w.register_trigger("queue", "app::b", {"topic": "orders"})  # the older name
            for n in range(3):
                assert (
                    await call(w, "iii::durable::publish", {"topic": "orders", "data": n}) is None
                )

            async def three_dead() -> bool:
                stats = await call(w, "engine::queue::topic_stats", {"topic": "orders"})
                return bool(stats["dlq_depth"] == 3 and stats["depth"] == 0)

            await until(three_dead)
            assert sorted(seen["b"]) == [0, 1, 2]
            topics = await call(w, "engine::queue::list_topics", {})
            assert {"name": "orders", "broker_type": "builtin", "subscriber_count": 2} in topics
            dlq = await call(w, "engine::queue::dlq_topics", {})
            assert {"topic": "orders", "broker_type": "builtin", "message_count": 3} in dlq
            dead = await call(w, "engine::queue::dlq_messages", {"topic": "orders", "limit": 2})
            assert len(dead) == 2
            assert dead[0]["error"].startswith("invocation_failed")
            assert set(dead[0]) == {"id", "payload", "error", "failed_at", "retries", "size_bytes"}
            healthy = True
            one = {"queue": "orders", "message_id": dead[0]["id"]}
            answer = await call(w, "iii::queue::redrive_message", one)
            assert answer == {**one, "redriven": 1}
            await redriven.wait()
            purged = await call(w, "iii::queue::purge_dlq", {"queue": "orders"})
            assert purged == {"queue": "orders", "purged": 2}
            assert await call(w, "engine::queue::dlq_messages", {"topic": "orders"}) == []
    assert seen["a"][-1] == dead[0]["payload"]
    assert sorted(seen["b"]) == [0, 1, 2]  # b got each message once, untouched by a's failures


async def test_messages_and_dead_letters_in_a_data_dir_outlive_the_engine(tmp_path: Path) -> None:
    config = {"queue_configs": {"jobs": {"max_retries": 1, "backoff_ms": 10}}}
    failed = anyio.Event()
    got: list[Any] = []
    all_in = anyio.Event()

    async def fails(data: Any) -> None:
        failed.set()
        raise RuntimeError("no")

    async def consume(data: Any) -> None:
        got.append(data)
        if len(got) == 2:
            all_in.set()

    with anyio.fail_after(20):
        async with anyiii.engine.run(
            http_port=None, data_dir=tmp_path, services=services(config)
        ) as engine:
            async with anyiii.connect(engine.url) as w:
                w.register_function("app::bad", fails)
                await call(w, "engine::functions::list", {})
                await enqueue(w, "app::bad", {"dead": True}, "jobs")
                await failed.wait()

                async def one_dead() -> bool:
                    stats = await call(w, "engine::queue::topic_stats", {"queue": "jobs"})
                    return bool(stats["dlq_depth"] == 1)

                await until(one_dead)
                await enqueue(w, "app::later", {"n": 1}, "jobs")
                await enqueue(w, "app::later", {"n": 2}, "jobs")
        async with anyiii.engine.run(
            http_port=None, data_dir=tmp_path, services=services(config)
        ) as engine:
            async with anyiii.connect(engine.url) as w:
                w.register_function("app::later", consume)
                await all_in.wait()
                dead = await call(w, "engine::queue::dlq_messages", {"queue": "jobs"})
                assert [d["payload"] for d in dead] == [{"dead": True}]
    assert sorted(got, key=str) == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("engine_backend", ["asyncio", "trio"])
async def test_acknowledged_messages_survive_kill_9(tmp_path: Path, engine_backend: str) -> None:
    """Messages the engine acknowledged, waiting or in flight, are all delivered after a
    SIGKILL and a restart."""
    data = str(tmp_path / "data")
    in_flight = 0
    ten_started = anyio.Event()

    async def hang(payload: Any) -> None:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 10:  # the default queue's concurrency
            ten_started.set()
        await anyio.sleep_forever()

    received: set[int] = set()
    everything = anyio.Event()

    async def consume(payload: dict[str, int]) -> None:
        received.add(payload["n"])
        if len(received) == 40:
            everything.set()

    with anyio.fail_after(60):
        async with engine_process(engine_backend, "--data-dir", data) as engine:
            async with anyiii.connect(engine.url, close_timeout=0.5) as w:
                for n in range(25):  # nobody serves app::idle yet: they wait
                    await enqueue(w, "app::idle", {"n": n}, "default")
                w.register_function("app::busy", hang)
                for n in range(25, 40):  # ten go out and hang, five wait behind them
                    await enqueue(w, "app::busy", {"n": n}, "default")
                await ten_started.wait()
                engine.process.send_signal(signal.SIGKILL)
                await engine.process.wait()
        async with engine_process(engine_backend, "--data-dir", data) as engine:
            async with anyiii.connect(engine.url) as w:
                w.register_function("app::idle", consume)
                w.register_function("app::busy", consume)
                await everything.wait()
    assert received == set(range(40))


async def test_a_condition_that_answers_false_consumes_the_message() -> None:
    got: list[int] = []
    checked: list[int] = []

    async def only_even(n: int) -> bool:
        checked.append(n)
        return n % 2 == 0

    async def handler(n: int) -> None:
        got.append(n)

    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:
            w.register_function("app::only_even", only_even)
            w.register_function("app::handler", handler)
            config = {"topic": "numbers", "condition_function_id": "app::only_even"}
            await w.register_trigger("durable:subscriber", "app::handler", config)
            for n in range(4):
                await call(w, "iii::durable::publish", {"topic": "numbers", "data": n})

            async def settled() -> bool:
                stats = await call(w, "engine::queue::topic_stats", {"topic": "numbers"})
                return bool(stats["depth"] == 0 and len(got) == 2)

            await until(settled)
            stats = await call(w, "engine::queue::topic_stats", {"topic": "numbers"})
    assert sorted(checked) == [0, 1, 2, 3]
    assert sorted(got) == [0, 2]
    assert stats["dlq_depth"] == 0
