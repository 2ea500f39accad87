"""The engine's services used by the real official SDKs (npm and PyPI `iii-sdk`) through a
real `anyiii engine --data-dir` process, beside an anyiii worker: stream items written by
one are read by the other, a publish reaches a subscriber of the other SDK, and a message
the official worker enqueued survives a `kill -9` of the engine with nobody to consume it,
then reaches the consumer that connects after the restart."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import anyio
from engine_process import engine_process
from interop_support import OfficialWorker, Peer

import anyiii


async def command(official: OfficialWorker, tag: str, **fields: Any) -> dict[str, Any]:
    await official.send({"tag": tag, **fields})
    return await official.event("result", "error", "sent", "bound", tag=tag)


async def test_official_and_anyiii_workers_share_the_services_of_a_real_engine_process(
    peer: Peer, tmp_path: Path, anyio_backend_name: str
) -> None:
    data = str(tmp_path / "data")
    consumed: list[Any] = []
    arrived = anyio.Event()

    async def consume(job: Any) -> None:
        consumed.append(job)
        arrived.set()

    with anyio.fail_after(60):
        async with engine_process(anyio_backend_name, "--data-dir", data) as engine:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii.connect(engine.url, close_timeout=0.5) as w,
            ):
                item = {"stream_name": "room", "group_id": "g", "item_id": peer.name}
                written = await official.request("stream::set", {**item, "data": {"n": 1}})
                assert written["value"] == {"old_value": None, "new_value": {"n": 1}}
                assert await anyiii.Streams(w).get("room", "g", peer.name) == {"n": 1}

                async with anyiii.PubSub(w).subscribe("news") as messages:
                    sent = await command(
                        official,
                        "p1",
                        op="call",
                        function_id="publish",
                        payload={"topic": "news", "data": {"from": peer.name}},
                    )
                    assert sent["event"] == "result", sent
                    async for message in messages:
                        assert message == {"from": peer.name}
                        break

                # Nobody serves app::consume yet: the message waits, on disk.
                queued = await command(
                    official,
                    "q1",
                    op="enqueue",
                    function_id="app::consume",
                    payload={"job": peer.name},
                    queue="default",
                )
                assert set(queued["value"]) == {"messageReceiptId"}, queued
                engine.process.send_signal(signal.SIGKILL)
                await engine.process.wait()
        async with engine_process(anyio_backend_name, "--data-dir", data) as engine:
            async with anyiii.connect(engine.url) as w:
                w.register_function("app::consume", consume)
                await arrived.wait()
                assert consumed == [{"job": peer.name}]
                assert await anyiii.Streams(w).get("room", "g", peer.name) == {"n": 1}
