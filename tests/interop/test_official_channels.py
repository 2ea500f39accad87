"""Data channels between anyiii and the official SDKs (spec §12, §3.15), both ways, through
the embedded engine on 127.0.0.1.

Each test moves one *script* (`SCRIPT`: text messages and binary data with 0x00 and 0xff
bytes, 170,005 bytes in all, one write alone past the 64 KiB frame size, a message last)
over a channel of `buffer_size=2`, so the writer outruns the buffer and waits for the
reader. What a side received is reported as its data (size, sha256, the exact bytes on the
anyiii side) and its items in order, with runs of data merged, since each SDK cuts data
into chunks its own way:

* an anyiii worker makes the channel, writes it, and passes the reader to an official
  handler (`<prefix>::drain`), which reads it with its SDK's `ChannelReader`;
* an anyiii worker passes the writer to an official handler (`<prefix>::fill`), which
  writes with its SDK's `ChannelWriter`, and reads it with `ChannelReader.items()`; when
  the official worker dies mid-stream instead, the anyiii reader fails (`ChannelError`);
* the official worker makes the channel with its SDK's `create_channel` and passes a ref
  (`Channel.reader_ref` / `.writer_ref`, as its SDK has them) to an anyiii handler, which
  gets a live anyiii end, reads or writes it, while the official side does the other end.

What the official SDKs cannot do, seen in their code (Python `iii-sdk` 0.25.0,
`iii/channels.py`; Node `iii-sdk` 0.22.1, `dist/channels-C2ezAJ_g.cjs`):

* Their readers cannot tell a stream that failed from one that ended: the Python reader's
  iteration swallows every `websockets.ConnectionClosed` (channels.py:246-247), the Node
  reader ends its `stream` on any close, whatever its code (channels-C2ezAJ_g.cjs:198-201).
  So only complete streams are compared here.
* Their writers end a stream only if they connected first: `close_async()` (Python,
  channels.py:197) and `close()` / `stream.end()` (Node, lines 63 and 107) do nothing on a
  writer that never wrote, and the reader waits until the engine sweeps the channel
  (5 min). Every script here writes something. (anyiii's writer connects to end an empty
  stream.)
* The Node reader hands messages to `onMessage` callbacks straight from the socket while
  data goes through a `Readable`'s buffer (lines 190-196): their relative order is only
  seen when the stream flows as data arrives, as `drain` reads it (a `readAll()` beside
  `onMessage` gets the same items, not their order). Node's `sendMessage` is
  fire-and-forget (lines 99-104); the Python writer has `send_message_async`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from interop_support import OfficialWorker, Peer, anyiii_worker

import anyiii
import anyiii.engine

#: What goes over every channel: a message first and last, data between, in several writes.
SCRIPT: Final[tuple[dict[str, Any], ...]] = (
    {"message": "start"},
    {"data": "00ff", "times": 1},
    {"data": "00ff7f80", "times": 25_000},  # 100,000 bytes in one write: two frames or more
    {"message": '{"progress":1}'},
    {"data": "ff", "times": 3},
    {"data": "00", "times": 70_000},  # right after other data: one run with it
    {"message": "last words \u2713"},
)
BUFFER_SIZE: Final = 2


def steps(script: Iterable[Mapping[str, Any]]) -> Iterator[bytes | str]:
    """The script's writes: `bytes` for data, `str` for a message."""
    for step in script:
        if "message" in step:
            yield step["message"]
        else:
            yield bytes.fromhex(step["data"]) * step.get("times", 1)


def report(items: Iterable[bytes | str]) -> dict[str, Any]:
    """What the workers' `Tally` reports for these items (runs of data merged)."""
    digest = hashlib.sha256()
    size = 0
    merged: list[list[Any]] = []
    for item in items:
        if isinstance(item, str):
            merged.append(["message", item])
            continue
        size += len(item)
        digest.update(item)
        if merged and merged[-1][0] == "data":
            merged[-1][1] += len(item)
        else:
            merged.append(["data", len(item)])
    messages = [value for kind, value in merged if kind == "message"]
    return {"size": size, "sha256": digest.hexdigest(), "messages": messages, "items": merged}


EXPECTED: Final = report(steps(SCRIPT))
EXPECTED_DATA: Final = b"".join(item for item in steps(SCRIPT) if isinstance(item, bytes))


async def write_script(writer: anyiii.ChannelWriter) -> None:
    """`SCRIPT` on an anyiii writer, then the end of the stream."""
    async with writer:
        for item in steps(SCRIPT):
            if isinstance(item, str):
                await writer.send_message(item)
            else:
                await writer.send(item)


async def read_items(reader: anyiii.ChannelReader) -> list[bytes | str]:
    """Every item on an anyiii reader, checking that the stream ended cleanly (a failed
    one raises `ChannelError` instead of `EndOfStream`)."""
    async with reader:
        items = [item async for item in reader.items()]
        with pytest.raises(anyio.EndOfStream):
            await reader.receive_item()
    return items


async def both(first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]]) -> Any:
    """Run the two at once; the first one's result."""
    results: list[Any] = []

    async def run_first() -> None:
        results.append(await first())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run_first)
        await second()
    return results[0]


def received(items: list[bytes | str]) -> dict[str, Any]:
    """`report()` of items an anyiii reader got, after checking their data byte for byte."""
    assert b"".join(item for item in items if isinstance(item, bytes)) == EXPECTED_DATA
    return report(items)


@asynccontextmanager
async def engine_and_official(
    peer: Peer, tmp_path: Path
) -> AsyncIterator[tuple[anyiii.engine.EmbeddedEngine, OfficialWorker]]:
    async with (
        anyiii.engine.run(host="127.0.0.1", port=0, http_port=None) as engine,
        peer.start(engine.url, tmp_path) as official,
    ):
        yield engine, official


async def test_an_official_handler_reads_a_channel_an_anyiii_worker_writes(
    peer: Peer, tmp_path: Path
) -> None:
    with anyio.fail_after(30):
        async with (
            engine_and_official(peer, tmp_path) as (engine, official),
            anyiii_worker(engine.url) as worker,
        ):
            channel = await worker.create_channel(buffer_size=BUFFER_SIZE)
            request = {
                "function_id": peer.function_id("drain"),
                "payload": {"body": channel.reader},
            }
            got = await both(
                lambda: worker.trigger_async(request), lambda: write_script(channel.writer)
            )
            invoked = await official.event("invoked", function_id=peer.function_id("drain"))
    assert invoked["payload"] == {"body": "ChannelReader"}
    assert got == {"end": "ChannelReader", **EXPECTED}


async def test_an_official_handler_writes_a_channel_an_anyiii_worker_reads(
    peer: Peer, tmp_path: Path
) -> None:
    with anyio.fail_after(30):
        async with (
            engine_and_official(peer, tmp_path) as (engine, _),
            anyiii_worker(engine.url) as worker,
        ):
            channel = await worker.create_channel(buffer_size=BUFFER_SIZE)
            payload = {"out": channel.writer, "script": list(SCRIPT)}
            request = {"function_id": peer.function_id("fill"), "payload": payload}
            items: list[bytes | str] = []

            async def read() -> None:
                items.extend(await read_items(channel.reader))

            answer = await both(lambda: worker.trigger_async(request), read)
    assert answer == {"end": "ChannelWriter"}
    assert received(items) == EXPECTED


async def test_an_official_writer_that_dies_mid_stream_fails_the_anyiii_reader(
    peer: Peer, tmp_path: Path
) -> None:
    """The official worker is killed with its writer open (no close frame): the anyiii
    reader gets what arrived, then `ChannelError`, never an end that would pass the
    truncated stream off as whole."""
    script = [{"message": "start"}, {"data": "00ff", "times": 50_000}, {"hang": True}]
    items: list[bytes | str] = []
    failures: list[anyiii.ChannelError] = []
    with anyio.fail_after(30):
        async with (
            engine_and_official(peer, tmp_path) as (engine, official),
            anyiii_worker(engine.url) as worker,
        ):
            channel = await worker.create_channel(buffer_size=BUFFER_SIZE)
            payload = {"out": channel.writer, "script": script}
            await worker.trigger_async(
                {
                    "function_id": peer.function_id("fill"),
                    "payload": payload,
                    "action": {"type": "void"},
                }
            )

            async def read() -> None:
                try:
                    async for item in channel.reader.items():
                        items.append(item)
                except anyiii.ChannelError as failure:
                    failures.append(failure)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(read)
                await official.event("stalled")
                official.kill()
    assert failures, f"the reader saw a clean end after {items[:1]} and some data"
    assert failures[0].code == 1011, failures[0]
    assert items[0] == "start"
    data = b"".join(item for item in items[1:] if isinstance(item, bytes))
    assert data == (b"\x00\xff" * 50_000)[: len(data)]
    assert all(isinstance(item, bytes) for item in items[1:])


async def test_an_anyiii_handler_reads_a_channel_the_official_sdk_made_and_writes(
    peer: Peer, tmp_path: Path
) -> None:
    async def collect(payload: dict[str, Any]) -> dict[str, Any]:
        body = payload["body"]
        assert isinstance(body, anyiii.ChannelReader), payload
        return {"end": type(body).__name__, **received(await read_items(body))}

    with anyio.fail_after(30):
        async with (
            engine_and_official(peer, tmp_path) as (engine, official),
            anyiii_worker(engine.url, {"anyiii::collect": collect}),
        ):
            command = {"op": "send_channel", "tag": "c", "function_id": "anyiii::collect"}
            await official.send({**command, "script": SCRIPT, "buffer_size": BUFFER_SIZE})
            result = await official.event("result", "error", tag="c", within=20)
    assert result == {"event": "result", "tag": "c", "value": {"end": "ChannelReader", **EXPECTED}}


async def test_an_anyiii_handler_writes_a_channel_the_official_sdk_made_and_reads(
    peer: Peer, tmp_path: Path
) -> None:
    async def produce(payload: dict[str, Any]) -> dict[str, Any]:
        out = payload["out"]
        assert isinstance(out, anyiii.ChannelWriter), payload
        await write_script(out)
        return {"end": type(out).__name__}

    with anyio.fail_after(30):
        async with (
            engine_and_official(peer, tmp_path) as (engine, official),
            anyiii_worker(engine.url, {"anyiii::produce": produce}),
        ):
            command = {"op": "receive_channel", "tag": "r", "function_id": "anyiii::produce"}
            await official.send({**command, "buffer_size": BUFFER_SIZE})
            result = await official.event("result", "error", tag="r", within=20)
    expected = {"value": {"end": "ChannelWriter"}, "received": EXPECTED}
    assert result == {"event": "result", "tag": "r", "value": expected}
