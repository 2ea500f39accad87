"""The `Transport` contract, checked against every transport.

Pairs are (client, server): websocket client ⇄ websocket server, httpx-ws client ⇄
websocket server, and the memory pair. Every test runs on asyncio and trio (conftest), has
a `fail_after`, uses port 0 on 127.0.0.1, and synchronizes with events, never sleeps.
"""

from __future__ import annotations

import json

import anyio
import pytest
from transport_peers import PAIR_KINDS, transport_pair

from anyiii._errors import ConnectionClosed
from anyiii._transport import SendQueueFull, Transport, TransportLimits

pytestmark = pytest.mark.parametrize("kind", PAIR_KINDS)

MiB = 2**20


async def test_ordered_delivery_of_concurrent_sends(kind: str) -> None:
    tasks, per_task = 50, 20
    with anyio.fail_after(20):
        async with transport_pair(kind) as (client, server):
            received: list[bytes] = []

            async def sender(task: int) -> None:
                for n in range(per_task):
                    await client.send(json.dumps({"t": task, "n": n}).encode())

            async with anyio.create_task_group() as tg:
                for task in range(tasks):
                    tg.start_soon(sender, task)
                for _ in range(tasks * per_task):
                    received.append(await server.receive())

    seen: dict[int, list[int]] = {}
    for message in received:
        item = json.loads(message)
        seen.setdefault(item["t"], []).append(item["n"])
    assert seen == {task: list(range(per_task)) for task in range(tasks)}


async def test_both_directions_at_once(kind: str) -> None:
    with anyio.fail_after(20):
        async with transport_pair(kind) as (client, server):

            async def pump(sender: Transport, tag: bytes) -> None:
                for n in range(200):
                    await sender.send(tag + str(n).encode())

            async def drain(receiver: Transport, out: list[bytes]) -> None:
                for _ in range(200):
                    out.append(await receiver.receive())

            up: list[bytes] = []
            down: list[bytes] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, client, b"up")
                tg.start_soon(pump, server, b"down")
                tg.start_soon(drain, server, up)
                tg.start_soon(drain, client, down)
    assert up == [b"up%d" % n for n in range(200)]
    assert down == [b"down%d" % n for n in range(200)]


async def test_message_at_the_size_cap_is_delivered(kind: str) -> None:
    message = b'"' + b"x" * (MiB - 2) + b'"'
    with anyio.fail_after(20):
        async with transport_pair(kind, TransportLimits(max_message_size=MiB)) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.send, message)
                assert await server.receive() == message
            await server.send(message)
            assert await client.receive() == message


@pytest.mark.parametrize("direction", ["to-server", "to-client"])
async def test_oversize_message_closes_with_1009(kind: str, direction: str) -> None:
    with anyio.fail_after(20):
        async with transport_pair(kind, TransportLimits(max_message_size=MiB)) as (client, server):
            sender, receiver = (client, server) if direction == "to-server" else (server, client)
            sender_saw: list[int] = []

            async def send_then_learn() -> None:
                try:
                    await sender.send(b"x" * (MiB + 1))
                    await sender.receive()
                except ConnectionClosed as exc:
                    sender_saw.append(exc.code)
                await sender.aclose()  # both owners close: neither waits for the other

            async with anyio.create_task_group() as tg:
                tg.start_soon(send_then_learn)
                with pytest.raises(ConnectionClosed) as caught:
                    await receiver.receive()
                assert caught.value.code == 1009
                assert receiver.closed
                assert receiver.close_code == 1009
                with pytest.raises(ConnectionClosed):  # and again: it never hangs
                    await receiver.receive()
                # What an owner does next; it also drains the rest of the oversize message.
                await receiver.aclose()
            assert sender_saw == [1009]


async def test_messages_above_16_mib_are_fragmented_and_reassembled(kind: str) -> None:
    # Above 16 MiB the WebSocket transports send 1 MiB fragments (the Rust engine's frame
    # cap); the receiving side must put them back together.
    message = b'"' + b"f" * (17 * MiB) + b'"'
    with anyio.fail_after(30):
        async with transport_pair(kind) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.send, message)
                assert await server.receive() == message
            await server.send(b"after")
            assert await client.receive() == b"after"


async def test_peer_close_code_and_reason_reach_receive(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server):
            await server.send(b"last words")
            async with anyio.create_task_group() as tg:
                # aclose waits (boundedly) for the echo, which the client's receive sends.
                tg.start_soon(server.aclose, 4001, "bye now")
                assert await client.receive() == b"last words"
                for _ in range(3):  # every call raises, none hangs
                    with pytest.raises(ConnectionClosed) as caught:
                        await client.receive()
                    assert (caught.value.code, caught.value.reason) == (4001, "bye now")
            assert client.closed
            assert client.close_code == 4001
            assert client.close_reason == "bye now"
            with pytest.raises(ConnectionClosed):
                await client.send(b"too late")
            with pytest.raises(ConnectionClosed):
                client.send_nowait(b"too late")


async def test_receive_blocked_when_the_peer_closes_wakes_up(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server):
            outcome: list[int] = []

            async def receiver() -> None:
                with pytest.raises(ConnectionClosed) as caught:
                    await client.receive()
                outcome.append(caught.value.code)

            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver)
                await anyio.wait_all_tasks_blocked()
                await server.aclose(1001, "going away")
            assert outcome == [1001]


async def test_own_close_then_receive_and_send_raise(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server):
            async with anyio.create_task_group() as tg:
                # The peer must be reading to answer the close promptly.
                tg.start_soon(_expect_closed, server)
                await client.aclose(1000, "done")
            assert client.closed
            assert client.close_code == 1000
            for _ in range(2):
                with pytest.raises(ConnectionClosed):
                    await client.receive()
            with pytest.raises(ConnectionClosed):
                await client.send(b"x")


async def _expect_closed(transport: Transport) -> None:
    """Receive until the link ends (that is what answers a close), then return."""
    while True:
        try:
            await transport.receive()
        except ConnectionClosed:
            return


async def test_aclose_is_idempotent_and_concurrent_calls_are_safe(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind, TransportLimits(close_timeout=2.0)) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_expect_closed, server)
                tg.start_soon(client.aclose)
                tg.start_soon(client.aclose, 4000, "whichever call runs first decides")
            code = client.close_code
            assert code in (1000, 4000)
            await client.aclose(4001)
            assert client.close_code == code


async def test_async_with_closes_the_transport(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_expect_closed, server)
                async with client:
                    await client.send(b"x")
            assert client.closed


async def test_invalid_close_code_is_refused(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, _server):
            with pytest.raises(ValueError, match="1006"):
                await client.aclose(1006)
            assert not client.closed


async def test_cancelled_caller_still_completes_its_write(kind: str) -> None:
    # The write is shielded: cancelling the caller neither tears the frame nor breaks the
    # link when the write itself can finish.
    message = b"m" * (2 * MiB)
    with anyio.fail_after(20):
        async with transport_pair(kind, TransportLimits(max_message_size=4 * MiB)) as (
            client,
            server,
        ):
            got: list[bytes] = []
            async with anyio.create_task_group() as tg:

                async def reader() -> None:
                    got.append(await server.receive())
                    got.append(await server.receive())

                tg.start_soon(reader)
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await client.send(message)
                assert not client.closed
                await client.send(b"next")
            assert got == [message, b"next"]


async def test_sender_cancelled_while_its_write_is_stuck_breaks_the_link(kind: str) -> None:
    # The peer never reads. The caller's cancel cannot interrupt the shielded write, but
    # write_timeout bounds it: then the transport is broken, closed, and says so.
    limits = TransportLimits(write_timeout=0.3, max_message_size=8 * MiB)
    with anyio.fail_after(20):
        async with transport_pair(kind, limits, max_buffer=1) as (client, _server):

            async def send_until_cancelled() -> None:
                with anyio.move_on_after(0.1):
                    while True:
                        await client.send(b"b" * MiB)

            start = anyio.current_time()
            with pytest.raises(ConnectionClosed):
                await send_until_cancelled()
            assert anyio.current_time() - start >= 0.3
            assert client.closed
            assert client.close_code == 1006
            with pytest.raises(ConnectionClosed):
                await client.send(b"x")
            with pytest.raises(ConnectionClosed):
                await client.receive()


async def test_send_nowait_beyond_max_queue_bytes_raises_send_queue_full(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind, TransportLimits(max_queue_bytes=1000)) as (client, server):
            for _ in range(9):  # nothing runs the writer: these just queue
                client.send_nowait(b"q" * 100)
            with pytest.raises(SendQueueFull) as caught:
                client.send_nowait(b"q" * 101)
            assert isinstance(caught.value, ConnectionClosed)
            assert caught.value.code == 1008
            assert client.closed
            assert client.close_code == 1008
            with pytest.raises(ConnectionClosed):
                client.send_nowait(b"x")
            with pytest.raises(ConnectionClosed):
                await client.send(b"x")
            await client.aclose()
            with pytest.raises(ConnectionClosed):
                await server.receive()


async def test_run_writer_flushes_send_nowait_in_order_and_stops_on_close(kind: str) -> None:
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server), anyio.create_task_group() as tg:
            tg.start_soon(client.run_writer)
            for n in range(500):
                client.send_nowait(b"%d" % n)
                if n % 100 == 0:
                    await anyio.lowlevel.checkpoint()
            await client.send(b"last")  # shares the queue: comes after all of them
            got = [await server.receive() for _ in range(501)]
            assert got == [b"%d" % n for n in range(500)] + [b"last"]
            tg.start_soon(_expect_closed, server)
            await client.aclose()
        # run_writer returned by itself: the task group could exit.


async def test_send_waits_above_the_high_water_mark(kind: str) -> None:
    # While one write is stuck (peer not reading), other senders queue without waiting
    # until the queue passes the high-water mark; then they wait (backpressure), and all
    # resume, in order, once the peer reads.
    high_water = 64 * 1024
    chunk = b"c" * 1024
    limits = TransportLimits(queue_high_water=high_water, max_message_size=8 * MiB)
    with anyio.fail_after(20):
        async with transport_pair(kind, limits, max_buffer=1) as (client, server):
            returned = 0
            big_sent = 0

            async def stuck_writer() -> None:
                nonlocal big_sent
                for _ in range(64):  # 64 MiB: far more than any socket buffers
                    await client.send(b"B" * MiB)
                    big_sent += 1

            async def small_sender() -> None:
                nonlocal returned
                for _ in range(200):
                    await client.send(chunk)
                    returned += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(stuck_writer)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(small_sender)
                await anyio.wait_all_tasks_blocked()
                # Queued without waiting up to the mark, then blocked.
                assert high_water // 1100 <= returned <= high_water // 1024 + 1
                bigs = smalls = 0
                while bigs < 64 or smalls < 200:
                    message = await server.receive()
                    if message == chunk:
                        smalls += 1
                    else:
                        bigs += 1
            assert returned == 200
            assert big_sent == 64


async def test_long_close_reason_is_clipped_to_fit_a_close_frame(kind: str) -> None:
    reason = "é" * 100  # 200 bytes of UTF-8; a close frame has room for 123
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.aclose, 4002, reason)
                with pytest.raises(ConnectionClosed) as caught:
                    await server.receive()
            assert caught.value.code == 4002
            assert caught.value.reason == "é" * 61


async def test_a_send_waiting_for_room_gives_up_at_its_deadline(kind: str) -> None:
    # A call's deadline bounds its wait for room in the send queue: TimeoutError when it
    # passes, the message stays queued (and arrives, in order, once the peer reads).
    high_water = 64 * 1024
    limits = TransportLimits(queue_high_water=high_water, max_message_size=8 * MiB)
    with anyio.fail_after(20):
        async with transport_pair(kind, limits, max_buffer=1) as (client, server):
            async with anyio.create_task_group() as tg:

                async def stuck_writer() -> None:
                    for _ in range(64):  # 64 MiB: far more than any socket buffers
                        await client.send(b"B" * MiB)

                tg.start_soon(stuck_writer)
                await anyio.wait_all_tasks_blocked()
                client.send_nowait(b"q" * (2 * high_water))  # the queue is past the mark
                started = anyio.current_time()
                with pytest.raises(TimeoutError):
                    await client.send(b"late", deadline=started + 0.2)
                assert anyio.current_time() - started >= 0.2
                got = [await server.receive() for _ in range(64 + 2)]
            others = [message for message in got if message != b"B" * MiB]
            assert others == [b"q" * (2 * high_water), b"late"]


async def test_senders_of_one_turn_leave_in_one_write(kind: str) -> None:
    """Tasks that send in the same turn of the event loop (a burst of answers wakes many
    callers, each sending its next call) share one write: the first sender yields once
    before writing, so the peer gets one read instead of the first message alone and then
    the rest."""
    senders = 10
    writes: list[int] = []
    with anyio.fail_after(20):
        async with transport_pair(kind) as (client, server):
            write = client._write  # type: ignore[attr-defined]

            async def counting_write(batch: list[bytes]) -> None:
                writes.append(len([chunk for chunk in batch if chunk]))
                await write(batch)

            client._write = counting_write  # type: ignore[attr-defined]
            async with anyio.create_task_group() as tg:
                for n in range(senders):
                    tg.start_soon(client.send, b"%d" % n)
            received = {await server.receive() for _ in range(senders)}
            before_closing = list(writes)
    assert received == {b"%d" % n for n in range(senders)}
    assert before_closing == [senders]
