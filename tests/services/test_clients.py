"""The typed service clients (`anyiii.State`, …) against the embedded engine, on both
backends: the wire shapes, typed values, the current-worker rule, and change feeds that
end with their block."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.from_thread
import msgspec
import pytest

import anyiii
from anyiii import ops
from anyiii.testing import running_engine


class Profile(msgspec.Struct):
    name: str
    visits: int = 0


async def test_state_client_round_trip_with_typed_values() -> None:
    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url):
            state = anyiii.State()  # calls through the worker of the block around it
            change = await state.set("users", "ada", {"name": "Ada"}, type=Profile)
            assert change.old_value is None
            assert change.new_value == Profile("Ada")
            assert await state.get("users", "ada", type=Profile) == Profile("Ada")
            assert await state.get("users", "ada") == {"name": "Ada"}  # stored as sent
            result = await state.update(
                "users",
                "ada",
                [ops.increment("visits", 2), ops.set(["tags", "a.b"], True), ops.remove("x")],
                type=dict,
            )
            assert result.errors == []
            assert result.new_value == {"name": "Ada", "visits": 2, "tags": {"a.b": True}}
            failed = await state.update("users", "ada", [ops.increment("name")])
            assert [e["op_index"] for e in failed.errors] == [0]
            await state.set("orders", "o1", 5)
            assert await state.list("users", type=Profile) == [Profile("Ada", 2)]
            assert await state.list_groups() == ["orders", "users"]
            assert await state.delete("orders", "o1", type=int) == 5
            assert await state.get("orders", "o1") is None


async def test_a_namespaced_worker_reaches_the_services_in_default() -> None:
    """Service functions live in `default`; the clients say so, whatever the worker's
    namespace (spec §11)."""
    with anyio.fail_after(20):
        async with (
            running_engine(http_port=None) as engine,
            anyiii.connect(engine.url, namespace="shop") as worker,
        ):
            state = anyiii.State(worker)
            await state.set("s", "k", [1])
            assert await state.get("s", "k") == [1]


async def test_a_client_outside_any_worker_says_how_to_get_one() -> None:
    with pytest.raises(anyiii.NoWorker, match=r"anyiii\.connect"):
        await anyiii.State().get("s", "k")


async def test_a_state_change_feed_delivers_every_change_in_order_and_ends_with_its_block() -> None:
    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            state = anyiii.State(w)
            events: list[anyiii.StateEvent[Any]] = []
            async with state.changes("carts", type=dict) as feed:
                await state.set("carts", "c1", {"n": 1})
                await state.set("other", "x", 1)  # another scope: not in this feed
                await state.update("carts", "c1", [ops.increment("n")])
                await state.delete("carts", "c1")
                async for event in feed:
                    events.append(event)
                    if event.deleted:
                        break
            assert [e.event_type for e in events] == [
                "state:created",
                "state:updated",
                "state:deleted",
            ]
            assert events[1].old_value == {"n": 1}
            assert events[1].new_value == {"n": 2}
            assert all(e.scope == "carts" and e.key == "c1" for e in events)
            # The block's end unbound the trigger and the private function.
            bindings = await w.trigger_async(
                {"function_id": "engine::registered-triggers::list", "payload": {}}
            )
            assert feed.function_id not in str(bindings)
            functions = await w.trigger_async(
                {"function_id": "engine::functions::list", "payload": {}}
            )
            assert feed.function_id not in str(functions)
            async for _ in feed:  # a closed feed iterates nothing
                raise AssertionError("the feed should be over")


async def test_a_feed_in_a_task_ends_when_its_task_group_is_cancelled() -> None:
    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            state = anyiii.State(w)
            bound, seen = anyio.Event(), anyio.Event()
            received: list[str] = []

            async def consume() -> None:
                async with state.changes("jobs") as feed:
                    bound.set()
                    async for event in feed:
                        received.append(event.key)
                        seen.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                # The binding went out before the write, on the same connection.
                await bound.wait()
                await state.set("jobs", "j1", 1)
                await seen.wait()
                tg.cancel_scope.cancel()
            assert received == ["j1"]


def test_the_blocking_state_client_and_its_feed() -> None:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_engine(http_port=None)) as engine,
    ):
        client = anyiii.register_worker(engine.url)
        try:
            state = anyiii.blocking.BlockingState(client)
            with state.changes("b") as feed:
                assert state.set("b", "k", 1).new_value == 1
                assert state.get("b", "k", type=int) == 1
                event = feed.get(timeout=10)
                assert event.event_type == "state:created"
                assert event.new_value == 1
            assert state.list("b") == [1]
            assert state.list_groups() == ["b"]
            assert list(feed) == []  # closed: the iteration is over
        finally:
            client.shutdown()


async def test_subscriber_decorators_serve_topics_and_durable_topics() -> None:
    news: list[Any] = []
    jobs: list[Any] = []
    both = anyio.Event()

    def check() -> None:
        if news and jobs:
            both.set()

    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            pubsub, queues = anyiii.PubSub(w), anyiii.Queues(w)

            @pubsub.subscriber("news")
            async def on_news(message: Any) -> None:
                news.append(message)
                check()

            @queues.subscriber("jobs", function_id="app::on_job")
            async def on_job(message: Any) -> None:
                jobs.append(message)
                check()

            assert on_news.__name__ == "on_news"  # returned unchanged
            functions = await w.trigger_async(
                {"function_id": "engine::functions::list", "payload": {}}
            )
            ids = {f["function_id"] for f in functions["functions"]}
            assert {"subscriber::news::" + on_news.__qualname__, "app::on_job"} <= ids
            await pubsub.publish("news", {"n": 1})
            await queues.publish("jobs", {"j": 1})
            await both.wait()
    assert news == [{"n": 1}]
    assert jobs == [{"j": 1}]


def test_the_blocking_streams_pubsub_and_queues_clients() -> None:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_engine(http_port=None)) as engine,
    ):
        client = anyiii.register_worker(engine.url)
        try:
            streams = anyiii.blocking.BlockingStreams(client)
            with streams.changes("room") as feed:
                assert streams.set("room", "g", "m1", {"t": "hi"}).new_value == {"t": "hi"}
                event = feed.get(timeout=10)
                assert event.kind == "create"
                assert event.data == {"t": "hi"}
            assert streams.get("room", "g", "m1") == {"t": "hi"}
            assert streams.list("room", "g") == [{"t": "hi"}]
            assert streams.list_groups("room") == ["g"]
            assert streams.update("room", "g", "m1", [ops.set("t", "yo")]).new_value == {"t": "yo"}
            assert streams.delete("room", "g", "m1") == {"t": "yo"}

            pubsub = anyiii.blocking.BlockingPubSub(client)
            with pubsub.subscribe("t") as messages:
                pubsub.publish("t", [1, 2])
                assert messages.get(timeout=10) == [1, 2]

            got: list[Any] = []
            done = threading.Event()

            def job(data: Any) -> None:
                got.append(data)
                done.set()

            client.register_function("app::job", job)
            queues = anyiii.blocking.BlockingQueues(client)
            assert queues.enqueue("default", "app::job", {"k": 1})
            assert done.wait(10)
            assert got == [{"k": 1}]
        finally:
            client.shutdown()


async def test_a_feed_is_in_effect_for_other_connections_once_entered() -> None:
    """Entering a feed waits until the engine has its binding: a publish from another
    worker right after the `async with` line reaches it (without that wait it raced the
    binding and was lost now and then; 20 rounds make the race show)."""
    with anyio.fail_after(30):
        async with (
            running_engine(http_port=None) as engine,
            anyiii.connect(engine.url) as listener,
            anyiii.connect(engine.url) as publisher,
        ):
            for round_number in range(20):
                async with anyiii.PubSub(listener).subscribe("t") as messages:
                    await anyiii.PubSub(publisher).publish("t", round_number)
                    async for message in messages:
                        assert message == round_number
                        break


async def test_a_full_feed_buffer_slows_deliveries_down_and_loses_nothing() -> None:
    """With `buffer=1` and nobody reading, later events wait in their deliveries; once the
    consumer reads, every event arrives."""
    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            state = anyiii.State(w)
            async with state.changes("full", buffer=1) as feed:
                for n in range(5):
                    await state.set("full", f"k{n}", n)
                keys = []
                async for event in feed:
                    keys.append(event.key)
                    if len(keys) == 5:
                        break
            assert sorted(keys) == [f"k{n}" for n in range(5)]
