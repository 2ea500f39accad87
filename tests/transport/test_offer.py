"""`Transport.offer`: `send` without its await, for a sender that waits for something else
next (a call waits for its answer). Checked against every transport, on both backends."""

from __future__ import annotations

import anyio
import pytest
from transport_peers import PAIR_KINDS, transport_pair

from anyiii._errors import ConnectionClosed
from anyiii._transport import TransportLimits

pytestmark = pytest.mark.parametrize("kind", PAIR_KINDS)


async def test_offered_messages_leave_through_the_writer_in_order_with_sends(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server), anyio.create_task_group() as tg:
            tg.start_soon(client.run_writer)
            for n in range(300):
                if n % 3 == 0:
                    await client.send(b"%d" % n)
                else:
                    assert client.offer(b"%d" % n)
            got = [await server.receive() for _ in range(300)]
            assert got == [b"%d" % n for n in range(300)]
            tg.cancel_scope.cancel()


async def test_offer_refuses_past_the_high_water_mark_and_queues_nothing(kind: str) -> None:
    high_water = 10_000
    message = b"m" * 1000
    limits = TransportLimits(queue_high_water=high_water)
    with anyio.fail_after(10):
        async with transport_pair(kind, limits) as (client, server):
            accepted = 0
            while client.offer(message):  # nothing runs the writer yet: these only queue
                accepted += 1
                assert accepted <= high_water // len(message)
            assert accepted >= high_water // (len(message) + 14) - 1  # framing overhead
            assert not client.offer(message), "and refused again: nothing was written"
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.run_writer)
                got = [await server.receive() for _ in range(accepted)]
                await client.send(b"after")  # the refused ones were never queued
                assert await server.receive() == b"after"
                tg.cancel_scope.cancel()
            assert got == [message] * accepted


async def test_senders_offering_in_one_turn_leave_in_one_write(kind: str) -> None:
    senders = 10
    writes: list[int] = []
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server):
            write = client._write  # type: ignore[attr-defined]

            async def counting_write(batch: list[bytes]) -> None:
                writes.append(len([chunk for chunk in batch if chunk]))
                await write(batch)

            client._write = counting_write  # type: ignore[attr-defined]
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.run_writer)
                await anyio.wait_all_tasks_blocked()

                async def offer(n: int) -> None:
                    assert client.offer(b"%d" % n)

                async with anyio.create_task_group() as offering:
                    for n in range(senders):
                        offering.start_soon(offer, n)
                received = {await server.receive() for _ in range(senders)}
                before_closing = list(writes)
                tg.cancel_scope.cancel()
    assert received == {b"%d" % n for n in range(senders)}
    assert before_closing == [senders]


async def test_offer_on_a_closed_transport_raises(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.aclose)
                with pytest.raises(ConnectionClosed):
                    await server.receive()
            with pytest.raises(ConnectionClosed):
                client.offer(b"late")
