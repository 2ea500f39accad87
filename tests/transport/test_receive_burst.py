"""`receive` yields to the event loop after `receive_burst` messages of one read, so the
writer (and every other task) runs while a big read is being handled: the processes of a
call chain overlap instead of taking turns. Messages are never lost or reordered by it."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from transport_peers import transport_pair

import anyiii
from anyiii._transport import TransportLimits

MESSAGES = 200


class Ticker:
    """A task that counts how often it gets to run: `ticks` moves at every yield of the
    others."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            await anyio.lowlevel.checkpoint()
            self.ticks += 1


@pytest.mark.parametrize("burst", [4, 16])
async def test_other_tasks_run_at_least_every_burst_messages(burst: int) -> None:
    seen_at: list[int] = []
    ticker = Ticker()
    limits = TransportLimits(receive_burst=burst)
    with anyio.fail_after(20):
        async with transport_pair("websocket", limits=limits) as (client, server):
            # Queued before the client's writer runs: they leave in one write and arrive
            # in one read, the case where a reader would otherwise never yield.
            for n in range(MESSAGES):
                client.send_nowait(b"%d" % n)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(client.run_writer)
                received = [await server.receive()]  # the first read
                tasks.start_soon(ticker.run)
                seen_at.append(ticker.ticks)
                for _ in range(MESSAGES - 1):
                    received.append(await server.receive())
                    seen_at.append(ticker.ticks)
                tasks.cancel_scope.cancel()
    assert received == [b"%d" % n for n in range(MESSAGES)]
    # The ticker moves on at every yield of the reader, except when the scheduler happens to
    # resume the reader first (trio shuffles its batches); without the yields, all 200
    # messages of the one read come back with the ticker standing still.
    longest_run = max(seen_at.count(tick) for tick in set(seen_at))
    assert longest_run <= 4 * burst


@pytest.mark.parametrize("kind", ["websocket", "memory"])
async def test_receive_some_hands_out_whole_bursts_in_order_and_yields_between(kind: str) -> None:
    """`receive_some` (the engine's reader) returns what `receive` would, in order, at most
    `receive_burst` messages at a time, and lets other tasks run between bursts."""
    burst = 8
    batches: list[tuple[int, list[bytes]]] = []
    ticker = Ticker()
    limits = TransportLimits(receive_burst=burst)
    with anyio.fail_after(20):
        async with transport_pair(kind, limits=limits) as (client, server):
            for n in range(MESSAGES):
                client.send_nowait(b"%d" % n)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(client.run_writer)
                received = await server.receive_some()
                tasks.start_soon(ticker.run)
                while len(received) < MESSAGES:
                    batch = await server.receive_some()
                    batches.append((ticker.ticks, batch))
                    received += batch
                ended = anyio.Event()

                async def read_until_closed() -> None:
                    try:
                        while True:
                            await server.receive_some()
                    except anyiii.ConnectionClosed:
                        ended.set()  # raised, like `receive`, once the link has ended

                tasks.start_soon(read_until_closed)  # it reads the close, and answers it
                await client.aclose()
                await ended.wait()
                tasks.cancel_scope.cancel()
    assert received == [b"%d" % n for n in range(MESSAGES)]
    assert all(1 <= len(batch) <= burst for _, batch in batches)
    # Consecutive full bursts are separated by a yield: the ticker moved in between, except
    # where the scheduler resumed the reader first (trio shuffles), never for long.
    ticks_seen = [tick for tick, _ in batches]
    longest_run = max(ticks_seen.count(tick) for tick in set(ticks_seen))
    assert longest_run <= 4
