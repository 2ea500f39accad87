"""Pub/sub and cron used by the real official SDKs (npm and PyPI `iii-sdk`) through the
embedded engine: an official worker publishes to anyiii subscribers and subscribes to what
anyiii publishes, and binds `cron` triggers (a classic 5-field expression is refused, a
6-field one accepted and fired)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from interop_support import OfficialWorker, Peer

import anyiii


async def bindings_of(official: OfficialWorker, function_id: str) -> list[dict[str, Any]]:
    """The bindings calling `function_id`, asked by the official worker itself: its frames
    reach the engine in order, so every binding it sent before is accounted for."""
    reply = await official.request("engine::registered-triggers::list", {})
    assert reply["event"] == "result", reply
    return [b for b in reply["value"]["registered_triggers"] if b["function_id"] == function_id]


async def test_an_official_worker_publishes_to_anyiii_subscribers(
    peer: Peer, tmp_path: Path
) -> None:
    got: dict[str, list[Any]] = {"a": [], "b": [], "other": []}
    both = anyio.Event()
    other = anyio.Event()

    def subscriber(name: str) -> Any:
        async def handle(data: Any) -> None:
            got[name].append(data)
            if got["a"] and got["b"]:
                both.set()
            if got["other"]:
                other.set()

        return handle

    with anyio.fail_after(40):
        async with anyiii.engine.run(http_port=None) as engine:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii.connect(engine.url) as w,
            ):
                for name, topic in (("a", "orders"), ("b", "orders"), ("other", "audit")):
                    w.register_function(f"app::{name}", subscriber(name))
                    await w.register_trigger("subscribe", f"app::{name}", {"topic": topic})
                await w.trigger_async({"function_id": "engine::functions::list"})
                message = {"id": 7, "items": ["x", "y"], "total": 2.5}
                reply = await official.request("publish", {"topic": "orders", "data": message})
                assert reply["event"] == "result", reply
                assert reply["value"] is None
                await both.wait()
                # A message on the other topic reaches only its subscriber.
                await official.request("publish", {"topic": "audit", "data": "only-other"})
                await other.wait()
    assert got == {"a": [message], "b": [message], "other": ["only-other"]}


async def test_an_official_worker_subscribes_to_what_anyiii_publishes(
    peer: Peer, tmp_path: Path
) -> None:
    echo = peer.function_id("echo")
    with anyio.fail_after(40):
        async with anyiii.engine.run(http_port=None) as engine:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii.connect(engine.url) as w,
            ):
                await official.send(
                    {
                        "op": "bind",
                        "tag": "sub",
                        "trigger_type": "subscribe",
                        "function_id": echo,
                        "config": {"topic": "news"},
                        "metadata": {"from": peer.name},
                    }
                )
                await official.event("bound", tag="sub")
                (binding,) = await bindings_of(official, echo)
                assert binding["trigger_type"] == "subscribe"
                assert binding["parked"] is False
                data = {"headline": "cron and pub/sub", "n": [1, 2]}
                await w.trigger_async(
                    {"function_id": "publish", "payload": {"topic": "ignored", "data": 0}}
                )
                await w.trigger_async(
                    {"function_id": "publish", "payload": {"topic": "news", "data": data}}
                )
                invoked = await official.event("invoked", function_id=echo, within=10)
    assert invoked["payload"] == data  # the data itself, not wrapped, no caller id


async def test_an_official_worker_binds_cron_triggers(peer: Peer, tmp_path: Path) -> None:
    echo = peer.function_id("echo")
    with anyio.fail_after(40):
        async with anyiii.engine.run(http_port=None) as engine:
            async with peer.start(engine.url, tmp_path) as official:
                for tag, expression in (("classic", "* * * * *"), ("seconds", "* * * * * *")):
                    await official.send(
                        {
                            "op": "bind",
                            "tag": tag,
                            "trigger_type": "cron",
                            "function_id": echo,
                            "config": {"expression": expression},
                        }
                    )
                    await official.event("bound", tag=tag)
                bound = await bindings_of(official, echo)
                # The 5-field binding was refused and dropped; the 6-field one runs.
                assert [b["config"]["expression"] for b in bound] == ["* * * * * *"]
                invoked = await official.event("invoked", function_id=echo, within=10)
    event = invoked["payload"]
    assert set(event) == {"trigger", "job_id", "scheduled_time", "actual_time"}
    assert event["trigger"] == "cron"
    assert event["job_id"] == bound[0]["id"]
    assert datetime.fromisoformat(event["scheduled_time"]).microsecond == 0
