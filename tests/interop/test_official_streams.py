"""The stream service used by the real official SDKs (npm and PyPI `iii-sdk`) and anyiii
through one embedded engine: items written by one are read by the other, and a custom
stream made with the official Python SDK's `create_stream` takes over a stream's storage
(its writes still announced to an anyiii worker's `stream` trigger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from interop_support import Peer, official_worker, python_worker_argv, require_python_sdk

import anyiii


async def call(worker: anyiii.Worker, function_id: str, payload: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def test_an_official_worker_and_anyiii_share_stream_items(peer: Peer, tmp_path: Path) -> None:
    item = {"stream_name": "shared", "group_id": "g", "item_id": "from-official"}
    with anyio.fail_after(30):
        async with anyiii.engine.run(http_port=None) as engine:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii.connect(engine.url) as w,
            ):
                reply = await official.request("stream::set", {**item, "data": {"n": [1]}})
                assert reply["event"] == "result", reply
                assert reply["value"] == {"old_value": None, "new_value": {"n": [1]}}
                assert await call(w, "stream::get", item) == {"n": [1]}
                await call(w, "stream::set", {**item, "item_id": "from-anyiii", "data": 7})
                listed = await official.request(
                    "stream::list", {"stream_name": "shared", "group_id": "g"}
                )
                assert listed["value"] == [{"n": [1]}, 7]
                got = await official.request("stream::get", {**item, "item_id": "from-anyiii"})
                assert got["value"] == 7
                groups = await official.request("stream::list_groups", {"stream_name": "shared"})
                assert groups["value"] == ["g"]


async def test_an_official_create_stream_takes_over_a_stream(tmp_path: Path) -> None:
    require_python_sdk()
    events: list[dict[str, Any]] = []
    seen = anyio.Event()

    async def on_change(event: dict[str, Any]) -> None:
        events.append(event)
        if len(events) == 2:
            seen.set()

    item = {"stream_name": "custom", "group_id": "g", "item_id": "i"}
    with anyio.fail_after(40):
        async with anyiii.engine.run(http_port=None) as engine:
            async with (
                official_worker(
                    python_worker_argv(engine.url), tmp_path / "py.stderr", label="python"
                ) as official,
                anyiii.connect(engine.url) as w,
            ):
                await official.send({"op": "create_stream", "tag": "cs", "name": "custom"})
                created = await official.event("result", tag="cs", within=20)
                assert "stream::set(custom)" in created["value"]
                w.register_function("app::on_change", on_change)
                await w.register_trigger("stream", "app::on_change", {"stream_name": "custom"})
                await call(w, "engine::functions::list", {})

                first = await call(w, "stream::set", {**item, "data": {"v": 1}})
                assert first == {"old_value": None, "new_value": {"v": 1}}
                stored = await official.event("stored")
                assert stored["groups"] == {"g": {"i": {"v": 1}}}
                await call(w, "stream::set", {**item, "data": {"v": 2}})
                assert await call(w, "stream::get", item) == {"v": 2}
                assert await call(
                    w, "stream::list", {"stream_name": "custom", "group_id": "g"}
                ) == [{"v": 2}]
                assert await call(w, "stream::list_groups", {"stream_name": "custom"}) == ["g"]
                assert await call(w, "stream::list_all", {}) == {"stream": [], "count": 0}
                await seen.wait()
    assert [e["event"] for e in events] == [
        {"type": "create", "data": {"v": 1}},
        {"type": "update", "data": {"v": 2}},
    ]
