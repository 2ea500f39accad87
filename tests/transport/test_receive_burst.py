"""`receive` yields to the event loop after `receive_burst` messages of one read, so the
writer (and every other task) runs while a big read is being handled: the processes of a
call chain overlap instead of taking turns. Messages are never lost or reordered by it."""

from __future__ import annotations

import anyio
import pytest
from transport_peers import transport_pair

from anyiii._transport import TransportLimits

MESSAGES = 200


@pytest.mark.parametrize("burst", [4, 16])
async def test_other_tasks_run_at_least_every_burst_messages(burst: int) -> None:
    ticks = 0
    seen_at: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.lowlevel.checkpoint()
            ticks += 1

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
                tasks.start_soon(ticker)
                seen_at.append(ticks)
                for _ in range(MESSAGES - 1):
                    received.append(await server.receive())
                    seen_at.append(ticks)
                tasks.cancel_scope.cancel()
    assert received == [b"%d" % n for n in range(MESSAGES)]
    # The ticker moves on at every yield of the reader, except when the scheduler happens to
    # resume the reader first (trio shuffles its batches); without the yields, all 200
    # messages of the one read come back with the ticker standing still.
    longest_run = max(seen_at.count(tick) for tick in set(seen_at))
    assert longest_run <= 4 * burst
