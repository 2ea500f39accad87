"""The `stream` service through the embedded engine, with anyiii workers: its functions,
the `stream` trigger, custom streams, persistence (also across `kill -9` of a real engine
process), and the subscriber WebSocket (joins, syncs, pushes, join/leave triggers, and a
subscriber that stops reading being dropped)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from engine_process import engine_process

import anyiii
from anyiii._engine.stream_service import StreamService
from anyiii._engine.stream_socket import serve_stream_subscribers
from anyiii._errors import ConnectionClosed
from anyiii._transport import Transport, TransportLimits, open_websocket

ITEM = {"stream_name": "chat", "group_id": "room1", "item_id": "m1"}
GROUP = {"stream_name": "chat", "group_id": "room1"}


async def call(worker: anyiii.Worker, function_id: str, payload: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


@asynccontextmanager
async def engine_and_worker(**options: Any) -> AsyncIterator[tuple[Any, anyiii.Worker]]:
    async with (
        anyiii.engine.run(http_port=None, **options) as engine,
        anyiii.connect(engine.url) as worker,
    ):
        yield engine, worker


async def test_the_stream_functions_through_the_engine() -> None:
    with anyio.fail_after(20):
        async with engine_and_worker() as (_, w):
            first = await call(w, "stream::set", {**ITEM, "data": {"text": "hi"}})
            assert first == {"old_value": None, "new_value": {"text": "hi"}}
            await call(w, "stream::set", {**ITEM, "item_id": "m0", "data": 0})
            ops = [
                {"type": "set", "path": "meta.by", "value": "ada"},
                {"type": "increment", "path": ["meta", "n"], "by": 2},
            ]
            updated = await call(w, "stream::update", {**ITEM, "ops": ops})
            assert updated == {
                "old_value": {"text": "hi"},
                "new_value": {"text": "hi", "meta": {"by": "ada", "n": 2}},
            }
            assert await call(w, "stream::get", ITEM) == updated["new_value"]
            assert await call(w, "stream::list", GROUP) == [updated["new_value"], 0]
            await call(w, "stream::set", {**ITEM, "group_id": "room0", "data": 1})
            groups = await call(w, "stream::list_groups", {"stream_name": "chat"})
            assert groups == ["room0", "room1"]
            everything = await call(w, "stream::list_all", {})
            assert everything == {"stream": [{"id": "chat", "groups": groups}], "count": 1}
            sent = {**GROUP, "type": "typing", "data": {}}
            assert await call(w, "stream::send", sent) is None
            assert await call(w, "stream::delete", ITEM) == {"old_value": updated["new_value"]}
            assert await call(w, "stream::delete", ITEM) == {"old_value": None}
            with pytest.raises(anyiii.InvocationError) as bad:
                await call(w, "stream::get", {"stream_name": "chat"})
            assert bad.value.code == "deserialization_error"


async def test_the_stream_trigger_announces_writes_and_events() -> None:
    events: list[dict[str, Any]] = []
    seen = anyio.Event()

    async def on_change(event: dict[str, Any]) -> None:
        events.append(event)
        if len(events) == 4:
            seen.set()

    async def only_room1(event: dict[str, Any]) -> bool:
        return bool(event["groupId"] == "room1")

    with anyio.fail_after(20):
        async with engine_and_worker() as (_, w):
            w.register_function("app::on_change", on_change)
            w.register_function("app::only_room1", only_room1)
            config = {"stream_name": "chat", "condition_function_id": "app::only_room1"}
            await w.register_trigger("stream", "app::on_change", config)
            await call(w, "engine::functions::list", {})
            await call(w, "stream::set", {**ITEM, "group_id": "room2", "data": "skip"})
            await call(w, "stream::set", {**ITEM, "stream_name": "other", "data": "skip"})
            await call(w, "stream::set", {**ITEM, "data": 1})
            await call(w, "stream::update", {**ITEM, "ops": [{"type": "increment", "by": 1}]})
            await call(w, "stream::send", {**GROUP, "id": "m1", "type": "ping", "data": "p"})
            await call(w, "stream::delete", ITEM)
            await seen.wait()
    assert [e["event"] for e in events] == [
        {"type": "create", "data": 1},
        {"type": "update", "data": 2},
        {"type": "event", "event": {"type": "ping", "data": "p"}},
        {"type": "delete", "data": 2},
    ]
    assert all(
        (e["type"], e["streamName"], e["groupId"], e["id"]) == ("stream", "chat", "room1", "m1")
        for e in events
    )
    assert all(isinstance(e["timestamp"], int) for e in events)


class Notes(anyiii.IStream[Any]):
    """A custom stream: a dict of groups."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}

    async def get(self, input: anyiii.StreamGetInput) -> Any:
        return self.groups.get(input.group_id, {}).get(input.item_id)

    async def set(self, input: anyiii.StreamSetInput) -> anyiii.StreamSetResult[Any]:
        group = self.groups.setdefault(input.group_id, {})
        old = group.get(input.item_id)
        group[input.item_id] = input.data
        return anyiii.StreamSetResult(old_value=old, new_value=input.data)

    async def delete(self, input: anyiii.StreamDeleteInput) -> anyiii.StreamDeleteResult:
        group = self.groups.get(input.group_id, {})
        return anyiii.StreamDeleteResult(old_value=group.pop(input.item_id, None))

    async def list(self, input: anyiii.StreamListInput) -> list[Any]:
        return list(self.groups.get(input.group_id, {}).values())

    async def list_groups(self, input: anyiii.StreamListGroupsInput) -> list[str]:
        return sorted(self.groups)


async def test_a_custom_stream_takes_over_its_storage_and_still_announces_writes() -> None:
    notes = Notes()
    events: list[dict[str, Any]] = []
    seen = anyio.Event()

    async def on_change(event: dict[str, Any]) -> None:
        events.append(event["event"])
        if len(events) == 4:
            seen.set()

    item = {**ITEM, "stream_name": "notes"}
    with anyio.fail_after(20):
        async with engine_and_worker() as (engine, w):
            async with anyiii.connect(engine.url, worker_name="client") as client:
                handle = w.create_stream("notes", notes)
                w.register_function("app::on_change", on_change)
                await w.register_trigger("stream", "app::on_change", {"stream_name": "notes"})
                await call(w, "engine::functions::list", {})
                first = await call(client, "stream::set", {**item, "data": "a"})
                assert first == {"old_value": None, "new_value": "a"}
                await call(client, "stream::set", {**item, "data": "b"})
                assert notes.groups == {"room1": {"m1": "b"}}
                assert await call(client, "stream::get", item) == "b"
                listed = await call(client, "stream::list", {**GROUP, "stream_name": "notes"})
                assert listed == ["b"]
                groups = await call(client, "stream::list_groups", {"stream_name": "notes"})
                assert groups == ["room1"]
                assert await call(client, "stream::delete", item) == {"old_value": "b"}
                everything = await call(client, "stream::list_all", {})
                assert everything == {"stream": [], "count": 0}  # the engine's store is unused
                await handle.unregister()
                await call(w, "engine::functions::list", {})
                await call(client, "stream::set", {**item, "data": "native"})
                assert await call(client, "stream::list", {**GROUP, "stream_name": "notes"}) == [
                    "native"
                ]
                await seen.wait()
    assert events == [
        {"type": "create", "data": "a"},
        {"type": "update", "data": "b"},
        {"type": "delete", "data": "b"},
        {"type": "create", "data": "native"},
    ]


async def test_a_failing_custom_stream_write_is_a_stream_error() -> None:
    class Broken(Notes):
        async def set(self, input: anyiii.StreamSetInput) -> anyiii.StreamSetResult[Any]:
            raise OSError("disk full")

    with anyio.fail_after(20):
        async with engine_and_worker() as (_, w):
            w.create_stream("broken", Broken())
            await call(w, "engine::functions::list", {})
            with pytest.raises(anyiii.InvocationError) as failed:
                await call(w, "stream::set", {**ITEM, "stream_name": "broken", "data": 1})
            assert failed.value.code == "STREAM_SET_ERROR"
            assert "disk full" in str(failed.value)


async def test_stream_items_in_a_data_dir_outlive_the_engine_in_order(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with engine_and_worker(data_dir=tmp_path) as (_, w):
            for key in ("c", "a", "b", "gone"):
                await call(w, "stream::set", {**ITEM, "item_id": key, "data": key})
            await call(w, "stream::set", {**ITEM, "item_id": "c", "data": "c2"})
            await call(w, "stream::delete", {**ITEM, "item_id": "gone"})
        async with engine_and_worker(data_dir=tmp_path) as (_, w):
            assert await call(w, "stream::list", GROUP) == ["c2", "a", "b"]
            await call(w, "stream::set", {**ITEM, "item_id": "d", "data": "d"})
            assert await call(w, "stream::list", GROUP) == ["c2", "a", "b", "d"]


@pytest.mark.parametrize("engine_backend", ["asyncio", "trio"])
async def test_acknowledged_stream_writes_survive_kill_9(
    tmp_path: Path, engine_backend: str
) -> None:
    data = str(tmp_path / "data")
    with anyio.fail_after(60):
        async with engine_process(engine_backend, "--data-dir", data) as engine:
            async with anyiii.connect(engine.url, close_timeout=0.5) as w:
                for n in range(30):
                    await call(w, "stream::set", {**ITEM, "item_id": f"k{n}", "data": n})
                ops = [{"type": "increment", "by": 100}]
                await call(w, "stream::update", {**ITEM, "item_id": "k0", "ops": ops})
                engine.process.send_signal(signal.SIGKILL)
                await engine.process.wait()
        async with engine_process(engine_backend, "--data-dir", data) as engine:
            async with anyiii.connect(engine.url) as w:
                assert await call(w, "stream::list", GROUP) == [100, *range(1, 30)]


# --- the subscriber socket -------------------------------------------------------------------


async def send(ws: Transport, kind: str, **data: Any) -> None:
    await ws.send(msgspec.json.encode({"type": kind, "data": data}))


async def receive(ws: Transport) -> dict[str, Any]:
    message: dict[str, Any] = msgspec.json.decode(await ws.receive())
    return message


async def drain(ws: Transport) -> None:
    """Read until the connection ends (then `receive` raises `ConnectionClosed`)."""
    while True:
        await ws.receive()


def sub(sid: str, item: str | None = None, group: str = "room1") -> dict[str, Any]:
    found: dict[str, Any] = {"subscriptionId": sid, "streamName": "chat", "groupId": group}
    if item is not None:
        found["id"] = item
    return found


async def test_subscribers_get_a_sync_then_every_change_of_what_they_joined() -> None:
    with anyio.fail_after(20):
        async with engine_and_worker(stream_port=0) as (engine, w):
            assert engine.stream_url.startswith("ws://127.0.0.1:")
            await call(w, "stream::set", {**ITEM, "data": "old"})
            async with open_websocket(engine.stream_url) as ws:
                await send(ws, "join", **sub("s1"))
                synced = await receive(ws)
                assert synced["event"] == {"type": "sync", "data": ["old"]}
                assert (synced["streamName"], synced["groupId"], synced["id"]) == (
                    "chat",
                    "room1",
                    None,
                )
                await send(ws, "join", **sub("s2", item="m2"))
                assert (await receive(ws))["event"] == {"type": "sync", "data": None}
                await call(w, "stream::set", {**ITEM, "data": "new"})
                pushed = await receive(ws)
                assert pushed["type"] == "stream"
                assert (pushed["id"], pushed["event"]) == ("m1", {"type": "update", "data": "new"})
                await call(w, "stream::set", {**ITEM, "item_id": "m2", "data": 2})
                both = [await receive(ws), await receive(ws)]  # once per matching subscription
                assert [m["event"]["type"] for m in both] == ["create", "create"]
                await call(w, "stream::send", {**GROUP, "type": "typing", "data": "ada"})
                typed = await receive(ws)
                assert typed["event"] == {
                    "type": "event",
                    "event": {"type": "typing", "data": "ada"},
                }
                await send(ws, "leave", **sub("s1"))
                await send(ws, "leave", **sub("s2", item="m2"))
                await call(w, "stream::set", {**ITEM, "data": "unseen"})
                await send(ws, "join", **sub("s3", group="room2"))
                assert (await receive(ws))["event"] == {"type": "sync", "data": []}


async def test_join_and_leave_triggers_are_called_and_can_refuse_a_join() -> None:
    joins: list[dict[str, Any]] = []
    leaves: list[dict[str, Any]] = []
    left = anyio.Event()

    async def on_join(event: dict[str, Any]) -> dict[str, bool]:
        joins.append(event)
        return {"unauthorized": event["group_id"] == "secret"}

    async def on_leave(event: dict[str, Any]) -> None:
        leaves.append(event)
        if len(leaves) == 2:
            left.set()

    with anyio.fail_after(20):
        async with engine_and_worker(stream_port=0) as (engine, w):
            w.register_function("app::on_join", on_join)
            w.register_function("app::on_leave", on_leave)
            await w.register_trigger("stream:join", "app::on_join", {})
            await w.register_trigger("stream:leave", "app::on_leave", {})
            await call(w, "engine::functions::list", {})
            async with open_websocket(engine.stream_url) as ws:
                await send(ws, "join", **sub("no", group="secret"))
                refused = await receive(ws)
                assert refused["event"] == {"type": "unauthorized"}
                assert refused["groupId"] == "secret"
                await call(w, "stream::set", {**ITEM, "group_id": "secret", "data": 1})
                await send(ws, "join", **sub("yes", item="m1"))
                assert (await receive(ws))["event"]["type"] == "sync"
                await send(ws, "leave", **sub("yes", item="m1"))
                await send(ws, "join", **sub("again"))
                assert (await receive(ws))["event"]["type"] == "sync"
            await left.wait()  # the closed connection left "again"
    assert [j["subscription_id"] for j in joins] == ["no", "yes", "again"]
    assert joins[1] == {
        "subscription_id": "yes",
        "stream_name": "chat",
        "group_id": "room1",
        "id": "m1",
        "context": None,
    }
    assert [e["subscription_id"] for e in leaves] == ["yes", "again"]


async def test_a_subscriber_that_stops_reading_is_dropped() -> None:
    big = "x" * 32_000
    with anyio.fail_after(30):
        async with engine_and_worker() as (engine, w):
            service = engine._router.services.service("iii-stream")
            assert isinstance(service, StreamService)
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tg:
                limits = TransportLimits(max_queue_bytes=256_000, close_timeout=0.5)
                await tg.start(
                    lambda task_status: serve_stream_subscribers(
                        listener, engine, service, limits=limits, task_status=task_status
                    )
                )
                url = f"ws://127.0.0.1:{port}"
                async with open_websocket(url) as slow, open_websocket(url) as fast:
                    await send(slow, "join", **sub("slow"))
                    await receive(slow)
                    await send(fast, "join", **sub("fast"))
                    await receive(fast)
                    n = 0
                    while len(service.hub) == 2:  # the slow one never reads again
                        await call(w, "stream::set", {**ITEM, "item_id": f"i{n}", "data": big})
                        assert (await receive(fast))["id"] == f"i{n}"
                        n += 1
                    assert len(service.hub) == 1
                    await call(w, "stream::set", {**ITEM, "data": "after"})
                    assert (await receive(fast))["event"]["data"] == "after"
                    with pytest.raises(ConnectionClosed):
                        await drain(slow)
                tg.cancel_scope.cancel()


async def test_the_auth_function_gives_join_events_their_context() -> None:
    requests: list[dict[str, Any]] = []
    joined: list[dict[str, Any]] = []

    async def auth(request: dict[str, Any]) -> dict[str, Any]:
        requests.append(request)
        return {"context": {"user": request["headers"].get("x-user")}}

    async def on_join(event: dict[str, Any]) -> None:
        joined.append(event)

    with anyio.fail_after(20):
        async with engine_and_worker(stream_port=0) as (engine, w):
            service = engine._router.services.service("iii-stream")
            assert isinstance(service, StreamService)
            service.auth_function = "app::auth"
            w.register_function("app::auth", auth)
            w.register_function("app::on_join", on_join)
            await w.register_trigger("stream:join", "app::on_join", {})
            await call(w, "engine::functions::list", {})
            url = f"{engine.stream_url}/?token=t1"
            async with open_websocket(url, headers={"X-User": "ada"}) as ws:
                await send(ws, "join", **sub("s1"))
                assert (await receive(ws))["event"]["type"] == "sync"
    (request,) = requests
    assert (request["path"], request["query_params"]) == ("/", {"token": ["t1"]})
    assert request["addr"].startswith("127.0.0.1")
    assert joined[0]["context"] == {"user": "ada"}


async def test_the_typed_streams_client_and_its_change_feed() -> None:
    with anyio.fail_after(20):
        async with engine_and_worker():
            streams = anyiii.Streams()
            async with streams.changes() as everything, streams.changes("chat", "room1") as room:
                first = await streams.set("chat", "room1", "m1", {"n": 1})
                assert (first.old_value, first.new_value) == (None, {"n": 1})
                updated = await streams.update(
                    "chat", "room1", "m1", [anyiii.ops.increment("n", 2)]
                )
                assert updated.new_value == {"n": 3}
                await streams.set("other", "g", "x", 0)
                assert await streams.get("chat", "room1", "m1") == {"n": 3}
                assert await streams.list("chat", "room1") == [{"n": 3}]
                assert await streams.list_groups("chat") == ["room1"]
                assert await streams.delete("chat", "room1", "m1") == {"n": 3}
                kinds = []
                async for event in room:
                    kinds.append((event.kind, event.data))
                    if event.kind == "delete":
                        break
                names = []
                async for event in everything:
                    names.append(event.stream_name)
                    if len(names) == 4:
                        break
    assert kinds == [("create", {"n": 1}), ("update", {"n": 3}), ("delete", {"n": 3})]
    assert names == ["chat", "chat", "other", "chat"]
