"""A model of a channel (spec §12): whatever sequence of data and messages a writer sends,
the reader sees exactly that sequence (data may be cut or joined differently: only its
bytes, in place between the messages, count), whichever way it reads.

Hypothesis draws the sequence (data from empty to three 64 KiB chunks, messages of any
text), the buffer size between the ends, and the sizes a data reader asks for.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
from channel_world import channel_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiii._worker.channel_reader import ChannelReader
from anyiii._worker.channel_writer import ChannelWriter

EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MESSAGES = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
DATA = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda n, b: bytes([b]) * n, st.integers(0, 3 * 64 * 1024), st.integers(0, 255)),
)
SEQUENCES = st.lists(st.one_of(MESSAGES, DATA), max_size=12)
JSON_MESSAGES = st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)


def normal(items: list[Any]) -> list[bytes | str]:
    """Adjacent data joined, empty data dropped: what a channel must preserve."""
    out: list[bytes | str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif item:
            if out and isinstance(out[-1], bytes):
                out[-1] += item
            else:
                out.append(bytes(item))
    return out


async def write(writer: ChannelWriter, items: list[Any]) -> None:
    async with writer:
        for item in items:
            if isinstance(item, str):
                await writer.send_message(item)
            else:
                await writer.send(item)


async def read_as_data(reader: ChannelReader, sizes: list[int]) -> tuple[bytes, list[str]]:
    """Data through `receive(size)` (sizes drawn, cycled), messages from `take_messages()`."""
    data = b""
    at = 0
    while True:
        try:
            data += await reader.receive(sizes[at % len(sizes)])
        except anyio.EndOfStream:
            return data, reader.take_messages()
        at += 1


@EXAMPLES
@given(
    items=SEQUENCES,
    buffer_size=st.integers(1, 8),
    sizes=st.lists(st.integers(1, 100_000), min_size=1, max_size=5),
)
async def test_the_reader_sees_exactly_what_the_writer_sent(
    items: list[Any], buffer_size: int, sizes: list[int]
) -> None:
    with anyio.fail_after(30):
        async with channel_world() as world:
            writer, reader = await world.ends(buffer_size)
            data_writer, data_reader = await world.ends(buffer_size)
            data_reader.max_messages = len(items)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write, writer, items)
                tasks.start_soon(write, data_writer, items)
                async with reader:
                    seen = [item async for item in reader.items()]
                async with data_reader:
                    data, messages = await read_as_data(data_reader, sizes)
    assert normal(seen) == normal(items)
    assert data == b"".join(item for item in items if not isinstance(item, str))
    assert messages == [item for item in items if isinstance(item, str)]


@EXAMPLES
@given(values=st.lists(JSON_MESSAGES, max_size=5))
async def test_json_messages_arrive_as_their_json_text(values: list[dict[str, int]]) -> None:
    with anyio.fail_after(30):
        async with channel_world() as world:
            writer, reader = await world.ends()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write_json, writer, values)
                got = [item async for item in reader.items()]
    assert [msgspec.json.decode(item) for item in got] == values


async def write_json(writer: ChannelWriter, values: list[dict[str, int]]) -> None:
    async with writer:
        for value in values:
            await writer.send_message(value)
