"""The engine's shared send-queue budget (`MemoryBudget.send_queues`, issue 14): a worker
that stops reading while answers pile up for it is the one disconnected when the total
would pass the budget, not the well-behaved worker whose large answer crossed it.

Real engine on 127.0.0.1; the slow consumer is a hand-made client on 127.0.0.2 with a tiny
receive buffer that never reads. (The unfinished-message budget's offender rule is shown
over real sockets in tests/transport/test_budget.py, and engine-wide in test_ws_hygiene.)
"""

from __future__ import annotations

import json

import anyio
from engine_peers import RawWorker, echo, new_id, raw_worker
from transport_peers import TEXT, raw_client, raw_frame

from anyiii.engine import EngineSettings, MemoryBudget, run

MiB = 2**20


def call(function_id: str, data: object) -> bytes:
    frame = {
        "type": "invokefunction",
        "invocation_id": new_id(),
        "function_id": function_id,
        "data": data,
    }
    return raw_frame(TEXT, json.dumps(frame).encode())


async def test_a_slow_consumer_gives_way_to_a_well_behaved_workers_large_answer() -> None:
    settings = EngineSettings(memory=MemoryBudget(send_queues=28 * MiB))
    reached_marker = anyio.Event()

    async def marker(frame: object) -> None:
        reached_marker.set()

    with anyio.fail_after(30):
        async with (
            run(http_port=None, settings=settings) as engine,
            raw_worker(
                engine.url,
                "good",
                {"good::echo": echo, "good::marker": marker},
                watch_workers=True,
            ) as good,
        ):
            await good.result("state::set", {"scope": "s", "key": "small", "value": "x" * MiB})
            await good.result("state::set", {"scope": "s", "key": "big", "value": "y" * 10 * MiB})
            slow = await raw_client(engine.port, local_host="127.0.0.2", receive_buffer=4096)
            slow_id = json.loads((await slow.next_frame()).data)["worker_id"]
            # 24 answers of 1 MiB for a client that never reads, then a call that tells us
            # the engine has read (and answered) everything before it.
            get_small = call("state::get", {"scope": "s", "key": "small"})
            await slow.stream.send(get_small * 24 + call("good::marker", None))
            await reached_marker.wait()
            held = engine.send_queues.used
            assert 16 * MiB < held <= 28 * MiB, held  # the kernel took at most a few MiB

            # A well-behaved worker's 10 MiB answer passes the total: the slow consumer
            # (127.0.0.2 holds the most) is dropped, the answer is delivered.
            big = await good.result("state::get", {"scope": "s", "key": "big"})
            assert big == "y" * 10 * MiB
            await assert_served(good)
            assert engine.send_queues.used < 2 * MiB
            await good.wait_for_worker_event("worker_disconnected", slow_id)
            await anyio.aclose_forcefully(slow.stream)


async def test_a_worker_whose_own_queue_passes_the_budget_is_dropped_as_a_slow_consumer() -> None:
    settings = EngineSettings(memory=MemoryBudget(send_queues=8 * MiB))
    with anyio.fail_after(30):
        async with (
            run(http_port=None, settings=settings) as engine,
            raw_worker(engine.url, "good", {"good::echo": echo}, watch_workers=True) as good,
        ):
            await good.result("state::set", {"scope": "s", "key": "small", "value": "x" * MiB})
            slow = await raw_client(engine.port, receive_buffer=4096)
            slow_id = json.loads((await slow.next_frame()).data)["worker_id"]
            await slow.stream.send(call("state::get", {"scope": "s", "key": "small"}) * 24)
            # Dropped although it never reads (and sends nothing more).
            await good.wait_for_worker_event("worker_disconnected", slow_id)
            await assert_served(good)
            assert engine.send_queues.used < MiB
            await anyio.aclose_forcefully(slow.stream)


async def assert_served(good: RawWorker) -> None:
    assert await good.result("good::echo", {"n": 1}) == {
        "n": 1,
        "_caller_worker_id": good.worker_id,
    }
