"""Data channels in the embedded engine (spec §12): `engine::channels::create` and the data
plane on the worker port, driven by anyiii's own client transport over real sockets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiii._engine.channels import ChannelHub
from anyiii._errors import ConnectError, ConnectionClosed
from anyiii._transport import BinaryMessage, Transport, open_websocket
from anyiii._worker import Worker, connect
from anyiii.engine import EmbeddedEngine, run

CHUNK = 64 * 1024


@asynccontextmanager
async def engine_and_worker() -> AsyncIterator[tuple[EmbeddedEngine, Worker]]:
    async with run(http_port=None) as engine, connect(engine.url) as worker:
        yield engine, worker


async def create(worker: Worker, **payload: Any) -> tuple[dict[str, str], dict[str, str]]:
    made = await worker.trigger_async(
        {"function_id": "engine::channels::create", "payload": payload}
    )
    return made["writer"], made["reader"]


def end_url(engine: EmbeddedEngine, ref: dict[str, str]) -> str:
    return (
        f"{engine.url}/ws/channels/{ref['channel_id']}"
        f"?key={ref['access_key']}&dir={ref['direction']}"
    )


async def read_all(reader: Transport) -> tuple[list[bytes], int]:
    """Every item until the engine closes, and the close code."""
    items: list[bytes] = []
    try:
        while True:
            items.append(await reader.receive())
    except ConnectionClosed as closed:
        return items, closed.code


async def test_create_returns_a_writer_and_a_reader_of_one_channel() -> None:
    with anyio.fail_after(10):
        async with engine_and_worker() as (engine, worker):
            writer, reader = await create(worker, buffer_size=8)
            assert writer["direction"] == "write"
            assert reader["direction"] == "read"
            assert writer["channel_id"] == reader["channel_id"]
            assert writer["access_key"] == reader["access_key"]
            assert len(engine.channels) == 1


async def test_items_arrive_in_order_with_their_kind_then_a_normal_close() -> None:
    sent = [BinaryMessage(b"a" * 10), b'{"type":"note"}', BinaryMessage(b""), b"text"]
    with anyio.fail_after(10):
        async with engine_and_worker() as (engine, worker):
            writer_ref, reader_ref = await create(worker)
            async with open_websocket(end_url(engine, reader_ref)) as reader:
                async with open_websocket(end_url(engine, writer_ref)) as writer:
                    for item in sent:
                        await writer.send(item)
                got, code = await read_all(reader)
    assert got == sent
    assert [type(item) for item in got] == [type(item) for item in sent]
    assert code == 1000


async def test_large_data_is_cut_into_chunks_of_at_most_64_kib() -> None:
    big = BinaryMessage(bytes(range(256)) * (5 * CHUNK // 256 + 1))
    with anyio.fail_after(10):
        async with engine_and_worker() as (engine, worker):
            writer_ref, reader_ref = await create(worker)
            async with (
                open_websocket(end_url(engine, reader_ref)) as reader,
                open_websocket(end_url(engine, writer_ref)) as writer,
            ):
                await writer.send(big)
                await writer.aclose()
                got, code = await read_all(reader)
    assert b"".join(got) == big
    assert all(type(item) is BinaryMessage and len(item) <= CHUNK for item in got)
    assert code == 1000


@pytest.mark.parametrize("what", ["unknown id", "wrong key"])
async def test_an_unknown_channel_or_key_is_refused_before_the_upgrade(what: str) -> None:
    with anyio.fail_after(10):
        async with engine_and_worker() as (engine, worker):
            writer_ref, _ = await create(worker)
            ref = dict(writer_ref)
            ref["channel_id" if what == "unknown id" else "access_key"] = "nope"
            with pytest.raises(ConnectError) as caught:
                async with open_websocket(end_url(engine, ref)):
                    pass
            assert "404" in str(caught.value) or "404" in repr(caught.value.__cause__)


async def test_each_end_is_taken_once() -> None:
    with anyio.fail_after(10):
        async with engine_and_worker() as (engine, worker):
            writer_ref, reader_ref = await create(worker)
            async with open_websocket(end_url(engine, reader_ref)) as first:
                async with open_websocket(end_url(engine, reader_ref)) as second:
                    _, code = await read_all(second)
                assert code == 1008
                async with open_websocket(end_url(engine, writer_ref)) as writer:
                    await writer.send(BinaryMessage(b"still works"))
                got, code = await read_all(first)
    assert got == [b"still works"]
    assert code == 1000


async def test_a_writer_that_breaks_off_fails_the_stream_for_the_reader() -> None:
    with anyio.fail_after(10):
        async with engine_and_worker() as (engine, worker):
            writer_ref, reader_ref = await create(worker)
            async with open_websocket(end_url(engine, reader_ref)) as reader:
                async with open_websocket(end_url(engine, writer_ref)) as writer:
                    await writer.send(BinaryMessage(b"partial"))
                    await writer.aclose(4000, "gave up")
                got, code = await read_all(reader)
    assert got == [b"partial"]
    assert code == 1011  # not 1000: the stream did not end, it broke


async def test_a_reader_that_leaves_closes_the_writer_with_an_error() -> None:
    with anyio.fail_after(10):
        async with engine_and_worker() as (engine, worker):
            writer_ref, reader_ref = await create(worker, buffer_size=1)
            async with open_websocket(end_url(engine, writer_ref)) as writer:
                async with open_websocket(end_url(engine, reader_ref)) as reader:
                    await writer.send(BinaryMessage(b"x"))
                    assert await reader.receive() == b"x"
                # The reader is gone; the engine closes the writer once it has somewhere to
                # put the next item. (The writer must be receiving to see a close frame.)
                await writer.send(BinaryMessage(b"y"))
                with pytest.raises(ConnectionClosed) as caught:
                    await writer.receive()
    assert caught.value.code == 1011
    assert "reader" in caught.value.reason


async def test_a_slow_reader_holds_the_writer_back_with_bounded_memory() -> None:
    """The engine holds at most buffer_size items of at most 64 KiB for a reader that does
    not read; the writer's 32 MiB cannot all be accepted."""
    buffer_size = 4
    with anyio.fail_after(20):
        async with engine_and_worker() as (engine, worker):
            writer_ref, reader_ref = await create(worker, buffer_size=buffer_size)
            receiver = engine.channels.take_receiver(
                reader_ref["channel_id"], reader_ref["access_key"]
            )
            assert receiver is not None
            accepted = 0
            async with open_websocket(end_url(engine, writer_ref)) as writer:
                async with anyio.create_task_group() as tasks:

                    async def write() -> None:
                        nonlocal accepted
                        with contextlib.suppress(ConnectionClosed):  # closed at the end
                            for _ in range(32):
                                await writer.send(BinaryMessage(b"z" * 2**20))
                                accepted += 1

                    tasks.start_soon(write)
                    # Engine and writer run in this process: once every task waits (the
                    # writer for the socket, the engine's pump for room), it is full.
                    await anyio.wait_all_tasks_blocked()
                    held = receiver.statistics().current_buffer_used
                    assert held == buffer_size  # bounded by items...
                    items = [receiver.receive_nowait() for _ in range(held)]
                    assert sum(map(len, items)) <= buffer_size * CHUNK  # ...of at most 64 KiB
                    assert accepted < 32, "the writer was not held back"
                    receiver.close()  # the reader leaves: the engine closes the writer
                    with pytest.raises(ConnectionClosed):
                        await writer.receive()
                    tasks.cancel_scope.cancel()


async def test_a_workers_channels_are_dropped_when_it_disconnects() -> None:
    with anyio.fail_after(10):
        async with run(http_port=None) as engine:
            async with connect(engine.url) as worker:
                _, reader_ref = await create(worker)
                await create(worker)
                assert len(engine.channels) == 2
            # The worker's close handshake ends after the engine has processed its leaving.
            assert len(engine.channels) == 0
            with pytest.raises(ConnectError):
                async with open_websocket(end_url(engine, reader_ref)):
                    pass


@pytest.mark.autojump
async def test_channels_not_connected_in_time_are_swept() -> None:
    hub = ChannelHub(anyio.current_time, ttl=0.5, sweep_interval=0.2)
    _, reader = hub.create()
    both_taken_writer, both_taken_reader = hub.create()
    sender = hub.take_sender(both_taken_writer.channel_id, both_taken_writer.access_key)
    receiver = hub.take_receiver(both_taken_reader.channel_id, both_taken_reader.access_key)
    assert sender is not None
    assert receiver is not None
    sender.close()
    receiver.close()
    assert len(hub) == 1  # a channel whose ends are both taken leaves the table
    channel = hub.find(reader.channel_id, reader.access_key)
    taken = hub.take_receiver(reader.channel_id, reader.access_key)
    assert channel is not None
    assert taken is not None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hub.sweep_forever)
        await anyio.sleep(0.3)
        assert len(hub) == 1  # not yet: younger than its ttl
        await anyio.sleep(0.5)
        assert len(hub) == 0
        tasks.cancel_scope.cancel()
    with pytest.raises(anyio.EndOfStream):  # the reader already there sees the end...
        await taken.receive()
    assert channel.failure is not None  # ...of a failed stream (its socket closes with 1011)
    taken.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    items=st.lists(
        st.one_of(
            st.binary(max_size=3 * CHUNK).map(BinaryMessage),
            st.text(max_size=200).map(str.encode),
        ),
        max_size=20,
    )
)
def test_any_sequence_of_data_and_messages_arrives_exactly(
    backend: str, items: list[bytes]
) -> None:
    """A model check: what the writer sends (random sizes, data and messages interleaved)
    is what the reader gets, in order, with data re-cut only at 64 KiB boundaries."""

    async def scenario() -> None:
        with anyio.fail_after(20):
            async with engine_and_worker() as (engine, worker):
                writer_ref, reader_ref = await create(worker)
                async with open_websocket(end_url(engine, reader_ref)) as reader:
                    async with anyio.create_task_group() as tasks:
                        result: list[tuple[list[bytes], int]] = []

                        async def collect() -> None:
                            result.append(await read_all(reader))

                        tasks.start_soon(collect)
                        async with open_websocket(end_url(engine, writer_ref)) as writer:
                            for item in items:
                                await writer.send(item)
        got, code = result[0]
        assert code == 1000
        assert _recut(got) == _recut(items)

    anyio.run(scenario, backend=backend)


def _recut(items: list[bytes]) -> list[tuple[str, bytes]]:
    """Items as the model sees them: runs of data joined per item, messages as they are;
    binary items are compared after cutting at 64 KiB, as the engine cuts them."""
    out: list[tuple[str, bytes]] = []
    for item in items:
        if type(item) is BinaryMessage:
            pieces = [item[i : i + CHUNK] for i in range(0, len(item), CHUNK)] or [b""]
            out += [("data", bytes(piece)) for piece in pieces]
        else:
            out.append(("message", bytes(item)))
    return out
