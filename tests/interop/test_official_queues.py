"""Queues with the real official SDKs (npm and PyPI `iii-sdk`) as workers: they enqueue with
`TriggerAction.Enqueue` for anyiii to consume, consume what anyiii enqueues (with retries
into the dead-letter queue), and subscribe to a durable topic."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
from interop_support import OfficialWorker, Peer

import anyiii
from anyiii._engine.queues import QueueService
from anyiii._engine.state_service import StateService

FAST = {"queue_configs": {"fast": {"max_retries": 2, "backoff_ms": 10}}}
SERVICES = (StateService, functools.partial(QueueService, config=FAST))


async def command(official: OfficialWorker, tag: str, **fields: Any) -> dict[str, Any]:
    await official.send({"tag": tag, **fields})
    return await official.event("result", "error", "sent", "bound", tag=tag)


async def call(worker: anyiii.Worker, function_id: str, payload: Any, **extra: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload, **extra})


async def test_official_workers_enqueue_and_consume(peer: Peer, tmp_path: Path) -> None:
    consumed: list[Any] = []
    arrived = anyio.Event()

    async def sink(data: Any) -> None:
        consumed.append(data)
        arrived.set()

    with anyio.fail_after(30):
        async with anyiii.engine.run(http_port=None, services=SERVICES) as engine:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii.connect(engine.url) as w,
            ):
                w.register_function("app::sink", sink)
                await call(w, "engine::functions::list", {})
                # The official SDK enqueues; anyiii consumes.
                sent = await command(
                    official,
                    "q1",
                    op="enqueue",
                    function_id="app::sink",
                    payload={"from": peer.name},
                    queue="default",
                )
                assert sent["event"] == "result", sent
                assert set(sent["value"]) == {"messageReceiptId"}
                await arrived.wait()
                assert consumed == [{"from": peer.name}]
                # anyiii enqueues; the official worker consumes.
                action = {"action": {"type": "enqueue", "queue": "fast"}}
                await call(w, peer.function_id("echo"), {"to": peer.name}, **action)
                invoked = await official.event("invoked", function_id=peer.function_id("echo"))
                assert invoked["payload"] == {"to": peer.name}
                # Its failing function is retried, then dead-lettered.
                await call(w, peer.function_id("fail"), {"n": 1}, **action)
                for _ in range(2):
                    await official.event("invoked", function_id=peer.function_id("fail"))
                while not (dead := await call(w, "engine::queue::dlq_messages", {"queue": "fast"})):
                    await anyio.lowlevel.checkpoint()
                assert [d["payload"] for d in dead] == [{"n": 1}]
                assert dead[0]["retries"] == 2


async def test_an_official_worker_subscribes_to_a_durable_topic(peer: Peer, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with anyiii.engine.run(http_port=None, services=SERVICES) as engine:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii.connect(engine.url) as w,
            ):
                bound = await command(
                    official,
                    "b1",
                    op="bind",
                    trigger_type="durable:subscriber",
                    function_id=peer.function_id("echo"),
                    config={"topic": "news"},
                )
                assert bound["event"] == "bound", bound

                async def subscribed() -> bool:
                    topics = await call(w, "engine::queue::list_topics", {})
                    return any(t["name"] == "news" for t in topics)

                while not await subscribed():
                    await anyio.lowlevel.checkpoint()
                await call(w, "iii::durable::publish", {"topic": "news", "data": {"headline": 1}})
                invoked = await official.event("invoked", function_id=peer.function_id("echo"))
                assert invoked["payload"] == {"headline": 1}
