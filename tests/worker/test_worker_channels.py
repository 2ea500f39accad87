"""The worker's channel ends on a real data plane (spec §12): `ChannelReader` and
`ChannelWriter` over sockets, against the embedded engine's data plane (and, where a test
counts refusals, the fake in `channel_plane_fake.py`), on asyncio and trio.

What is checked: order and 64 KiB chunking, the two ways of reading (items, or data with
messages kept aside), the end of a stream and its failures, 404s, ends taken once,
cancellation mid-send, a reader or writer that leaves, and bounded memory.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from channel_world import channel_world
from transport_peers import accept_handshake
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from anyiii import ChannelError, ChannelMessagesFull, StreamChannelRef
from anyiii._transport.websocket import WebSocketTransport
from anyiii._worker.channel_plane import ChannelPlane
from anyiii._worker.channel_reader import ChannelReader
from anyiii._worker.channel_writer import ChannelWriter

KiB = 1024
MiB = 1024 * KiB


async def drain(reader: ChannelReader) -> list[bytes | str]:
    return [item async for item in reader.items()]


async def send_until_it_fails(writer: ChannelWriter, chunk: bytes) -> ChannelError:
    """Send until a send fails (an engine's close shows on the next send); that failure."""
    for _ in range(1000):
        try:
            await writer.send(chunk)
        except ChannelError as failure:
            return failure
    raise AssertionError("every send went through")


async def test_items_arrive_in_order_with_data_cut_at_64_kib() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world, anyio.create_task_group() as tasks:
            writer, reader = await world.ends(4)

            async def write() -> None:
                async with writer:
                    await writer.send_message("start")
                    await writer.send(bytes(range(256)) * 800)  # 200 KiB
                    await writer.send_message({"done": True})
                    await writer.send(bytearray(b"tail"))
                    await writer.send(b"")  # nothing at all

            tasks.start_soon(write)
            items = await drain(reader)
    assert items[0] == "start"
    data = items[1:5]
    assert [len(chunk) for chunk in data] == [64 * KiB, 64 * KiB, 64 * KiB, 200 * KiB - 192 * KiB]
    assert b"".join(data) == bytes(range(256)) * 800  # type: ignore[arg-type]
    assert items[5:] == ['{"done":true}', b"tail"]


async def test_receive_hands_out_at_most_max_bytes_then_the_end() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends()
            async with writer:
                await writer.send(b"0123456789" * 10)
            got = [await reader.receive(30) for _ in range(4)]
            with pytest.raises(anyio.EndOfStream):
                await reader.receive()
            with pytest.raises(anyio.EndOfStream):  # and so on, every time
                await reader.receive_item()
            assert await reader.read_all() == b""
            await reader.aclose()
    assert [len(chunk) for chunk in got] == [30, 30, 30, 10]
    assert b"".join(got) == b"0123456789" * 10


async def test_a_writer_closed_unused_still_ends_the_stream() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends()
            async with writer:
                pass  # never sent a thing: leaving connects, only to end the stream
            assert await reader.read_all() == b""
            async with reader:
                assert [chunk async for chunk in reader] == []


async def test_data_reads_keep_messages_aside_bounded_and_lose_nothing() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends()
            reader.max_messages = 2
            async with writer:
                for message in ("m1", "m2", "m3"):
                    await writer.send_message(message)
                await writer.send(b"data")
                await writer.send_message("m4")
            with pytest.raises(ChannelMessagesFull):
                await reader.receive()  # met m3 with m1 and m2 kept
            assert reader.take_messages() == ["m1", "m2"]
            assert await reader.receive() == b"data"  # m3 kept on the way
            assert reader.take_messages() == ["m3"]
            assert await reader.read_all() == b""  # read_all keeps every message
            assert reader.take_messages() == ["m4"]


async def test_items_picks_up_where_a_data_read_stopped() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends()
            async with writer:
                await writer.send(b"abcdef")
                await writer.send_message("after")
            assert await reader.receive(2) == b"ab"
            assert await drain(reader) == [b"cdef", "after"]


@pytest.mark.parametrize("fake", [False, True], ids=["engine", "fake"])
async def test_an_unknown_channel_or_a_wrong_key_is_a_clear_404(fake: bool) -> None:
    # The fake counts refusals: a failed end does not try again.
    with anyio.fail_after(10):
        async with channel_world(fake=fake) as world:
            writer_ref, reader_ref = await world.refs()
            wrong_key = StreamChannelRef(reader_ref.channel_id, "not-the-key", "read")
            unknown = StreamChannelRef("no-such-channel", writer_ref.access_key, "write")
            reader = ChannelReader(wrong_key, world.plane)
            writer = ChannelWriter(unknown, world.plane)
            with pytest.raises(ChannelError, match="HTTP 404") as failed:
                await reader.receive()
            assert failed.value.code == 404
            assert isinstance(failed.value, anyio.BrokenResourceError)
            with pytest.raises(ChannelError, match="HTTP 404"):
                await writer.send(b"x")
            refused = world.fake.refused if world.fake is not None else None
            with pytest.raises(ChannelError, match="HTTP 404"):  # failed for good: no retry
                await reader.receive()
            with pytest.raises(ChannelError, match="HTTP 404"):
                await writer.send_message("x")
            if world.fake is not None:
                assert world.fake.refused == refused == 2
            await reader.aclose()
            await writer.aclose()


async def test_each_end_is_taken_once() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer_ref, reader_ref = await world.refs()
            first = ChannelReader(reader_ref, world.plane)
            second = ChannelReader(reader_ref, world.plane)
            writer = ChannelWriter(writer_ref, world.plane)
            late_writer = ChannelWriter(writer_ref, world.plane)
            async with writer:
                await writer.send(b"hello")
                refused = await send_until_it_fails(late_writer, b"x")
            assert "already connected" in str(refused)
            assert late_writer.broken
            assert await first.receive() == b"hello"
            with pytest.raises(ChannelError) as failed:
                await second.receive()
            # Refused once upgraded (1008, as the fake does), or, by an engine that forgets
            # a channel once both its ends are taken (the embedded one), before it (404).
            assert failed.value.code in (1008, 404)
            await first.aclose()


async def test_a_send_cancelled_midway_breaks_the_writer_and_fails_the_stream() -> None:
    with anyio.fail_after(20):
        async with channel_world() as world, anyio.create_task_group() as tasks:
            writer, reader = await world.ends(1)

            async def send_much(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
                with anyio.CancelScope() as scope:
                    task_status.started(scope)
                    await writer.send(b"z" * (16 * MiB))  # far more than all buffers take
                    raise AssertionError("the send cannot finish: nobody reads")

            scope = await tasks.start(send_much)
            await anyio.wait_all_tasks_blocked()  # held back by TCP, inside a write
            assert writer.connected
            assert not writer.broken
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert writer.broken
            with pytest.raises(ChannelError, match="cancelled part-way"):
                await writer.send(b"more")
            with pytest.raises(ChannelError, match="cancelled part-way"):
                await writer.send_eof()
            await writer.aclose()
            # The reader gets what made it through, then a failure, never a clean end.
            with pytest.raises(ChannelError) as failed:
                async for _ in reader:
                    pass
            assert failed.value.code == 1011
            await reader.aclose()


async def test_a_writer_block_that_raises_fails_the_stream() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends()

            async def produce() -> None:
                async with writer:
                    await writer.send(b"partial")
                    raise RuntimeError("the producer failed")

            with pytest.raises(RuntimeError):
                await produce()
            assert await reader.receive() == b"partial"
            with pytest.raises(ChannelError) as failed:
                await reader.receive()
            assert failed.value.code == 1011
            with pytest.raises(anyio.ClosedResourceError):
                await writer.send(b"x")


async def test_a_reader_that_leaves_makes_the_writers_sends_fail() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends(2)
            await writer.send(b"first")
            assert await reader.receive() == b"first"
            await reader.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await reader.receive()
            # The engine notices, then closes the writer's socket; a send sees it.
            failure = await send_until_it_fails(writer, b"x" * KiB)
            assert "reader is gone" in str(failure)
            await writer.aclose()


async def test_one_task_reads_at_a_time() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(reader.receive)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await reader.receive()
                await writer.send(b"x")
            await writer.aclose()
            await reader.aclose()


async def test_concurrent_sends_never_mix_their_chunks() -> None:
    size = 300 * KiB
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends(2)
            async with anyio.create_task_group() as tasks:
                for byte in b"ab":
                    tasks.start_soon(writer.send, bytes([byte]) * size)
                data = b""
                while len(data) < 2 * size:
                    data += await reader.receive()
            await writer.aclose()
            await reader.aclose()
    assert sorted([data[:size], data[size:]]) == [b"a" * size, b"b" * size]


async def test_an_ended_writer_refuses_more_and_ends_once() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world:
            writer, reader = await world.ends()
            await writer.send(b"x")
            await writer.send_eof()
            await writer.send_eof()
            await writer.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await writer.send(b"y")
            with pytest.raises(anyio.ClosedResourceError):
                await writer.send_message("y")
            assert await reader.read_all() == b"x"


class StalledStream(anyio.abc.ByteStream):
    """A data plane that took the handshake, then stopped reading (its buffers are full)."""

    async def send(self, item: bytes) -> None:
        await anyio.sleep_forever()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await anyio.sleep_forever()
        raise AssertionError

    async def send_eof(self) -> None:
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        pass


class StalledPlane(ChannelPlane):
    """Opens every end on a `StalledStream`, with the bounds a real end would have."""

    async def connect(self, ref: StreamChannelRef) -> WebSocketTransport:
        await anyio.lowlevel.checkpoint()
        protocol = ClientProtocol(parse_uri("ws://engine/"), state=State.OPEN)
        return WebSocketTransport(StalledStream(), protocol, limits=self.limits_for(ref))


@pytest.mark.autojump
async def test_ending_the_stream_waits_for_the_reader_until_cancelled() -> None:
    # A close frame that cannot be written yet (the reader is behind) is waited for like
    # a send, not given up on after a close timeout: that would fail a stream written
    # whole. Only a cancellation gives up, and then at once, failing the stream.
    plane = StalledPlane("ws://engine", close_timeout=0.05)
    writer = ChannelWriter(StreamChannelRef("c", "k", "write"), plane)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.3) as waited:  # six close timeouts
            await writer.send_eof()
        stopped = anyio.current_time() - waited.deadline
    assert waited.cancelled_caught, "send_eof gave up before it was cancelled"
    assert stopped < 1
    with pytest.raises(anyio.ClosedResourceError):
        await writer.send(b"more")


async def test_a_slow_reader_holds_a_fast_writer_back_in_bounded_memory() -> None:
    total, piece = 16 * MiB, 256 * KiB
    with anyio.fail_after(60):
        async with channel_world() as world:
            writer, reader = await world.ends(4)
            payload = b"m" * piece
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                received = 0
                async with anyio.create_task_group() as tasks:

                    async def write() -> None:
                        async with writer:
                            for _ in range(total // piece):
                                await writer.send(payload)

                    tasks.start_soon(write)
                    while True:
                        # The writer is as far ahead as it can get.
                        await anyio.wait_all_tasks_blocked()
                        try:
                            received += len(await reader.receive())
                        except anyio.EndOfStream:
                            break
                peak = tracemalloc.get_traced_memory()[1] - baseline
            finally:
                tracemalloc.stop()
    assert received == total
    # Everything buffered at once, in both ends, the transports and the data plane: a few
    # 64 KiB items, never the 16 MiB the writer had to send.
    assert peak < 4 * MiB, f"{peak / MiB:.1f} MiB buffered"


@asynccontextmanager
async def rust_style_plane(items: list[bytes]) -> AsyncIterator[str]:
    """A data plane that sends `items` (binary frames) to whoever connects, then closes
    without a status code, as the Rust engine ends every read socket (spec §12)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            protocol = await accept_handshake(stream)
            for item in items:
                protocol.send_binary(item)
            protocol.send_close()  # no code: the reader sees 1005
            await stream.send(b"".join(protocol.data_to_send()))
            while True:  # until the client's close echo and its end of stream
                try:
                    protocol.receive_data(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                for chunk in protocol.data_to_send():
                    if not chunk:  # websockets says: hang up now
                        return
                    await stream.send(chunk)

    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve, tasks)
        yield f"ws://127.0.0.1:{port}"
        tasks.cancel_scope.cancel()


async def test_a_close_without_status_code_ends_the_stream_cleanly() -> None:
    with anyio.fail_after(10):
        async with rust_style_plane([b"one", b"two"]) as url:
            reader = ChannelReader(StreamChannelRef("c", "k", "read"), ChannelPlane(url))
            async with reader:
                assert await reader.read_all() == b"onetwo"
                with pytest.raises(anyio.EndOfStream):
                    await reader.receive()
