"""Channel refs (spec §3.15, §12): the URL an end connects to, which objects are refs, how
refs in a handler's payload become live ends (lazily), how ends in an outgoing payload
travel as refs, and `worker.create_channel`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from channel_world import channel_world

import anyiii
from anyiii import Channel, ChannelError, ChannelReader, ChannelWriter, StreamChannelRef
from anyiii._protocol.codes import CHANNELS_CREATE
from anyiii._protocol.frames import as_channel_ref, decode_value, encode_value, to_raw
from anyiii._worker.channel_plane import ChannelPlane, channel_url
from anyiii._worker.channels import channel_resolver, create_channel, resolve_refs

REF = StreamChannelRef("3f1c", "key-1", "read")
PLANE = ChannelPlane("ws://127.0.0.1:49134")


def wire(ref: StreamChannelRef) -> dict[str, Any]:
    """A ref as it appears in decoded JSON."""
    return msgspec.to_builtins(ref)  # type: ignore[no-any-return]


# --- the URL -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine_url", "ref", "expected"),
    [
        (
            "ws://127.0.0.1:49134",
            StreamChannelRef("c1", "k1", "read"),
            "ws://127.0.0.1:49134/ws/channels/c1?key=k1&dir=read",
        ),
        (  # a trailing slash, a path prefix (a proxy) and a query (a token) are kept
            "wss://iii.example/engine/?token=a%20b",
            StreamChannelRef("c2", "k2", "write"),
            "wss://iii.example/engine/ws/channels/c2?token=a%20b&key=k2&dir=write",
        ),
        (  # the key and the id are escaped
            "ws://[::1]:1/",
            StreamChannelRef("a/b", "k+/=&", "read"),
            "ws://[::1]:1/ws/channels/a%2Fb?key=k%2B%2F%3D%26&dir=read",
        ),
    ],
)
def test_an_end_connects_to_the_engines_channel_path(
    engine_url: str, ref: StreamChannelRef, expected: str
) -> None:
    assert channel_url(engine_url, ref) == expected
    assert ChannelPlane(engine_url).url_for(ref) == expected


# --- what a ref is -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"channel_id": "c", "access_key": "k", "direction": "read"},
        {"direction": "write", "access_key": "", "channel_id": ""},
    ],
)
def test_an_object_of_exactly_the_three_fields_is_a_ref(value: dict[str, Any]) -> None:
    ref = as_channel_ref(value)
    assert ref is not None
    assert wire(ref) == value


@pytest.mark.parametrize(
    "value",
    [
        {"channel_id": "c", "access_key": "k", "direction": "sideways"},
        {"channel_id": "c", "access_key": "k", "direction": "read", "extra": 1},
        {"channel_id": "c", "access_key": "k"},
        {"channel_id": 1, "access_key": "k", "direction": "read"},
        {"channel_id": "c", "access_key": None, "direction": "write"},
        {"channel_id": "c", "access_key": "k", "dir": "read"},
        [["channel_id", "c"], ["access_key", "k"], ["direction", "read"]],
        "channel_id access_key direction",
        None,
    ],
)
def test_anything_else_is_left_alone(value: Any) -> None:
    assert as_channel_ref(value) is None
    assert resolve_refs(value, PLANE) == value


def test_refs_anywhere_in_a_payload_become_ends_bound_to_the_plane() -> None:
    writer_ref = StreamChannelRef("3f1c", "key-1", "write")
    deep: Any = wire(REF)
    for _ in range(5000):  # deeper than Python's recursion limit
        deep = [deep]
    payload = {
        "a": wire(REF),
        "list": [1, {"w": wire(writer_ref)}, [wire(REF)]],
        "deep": deep,
        "kept": {"channel_id": "c", "access_key": "k", "direction": "up"},
    }
    resolved = resolve_refs(payload, PLANE)
    assert isinstance(resolved["a"], ChannelReader)
    assert resolved["a"].ref == REF
    assert resolved["a"].url == PLANE.url_for(REF)
    assert isinstance(resolved["list"][1]["w"], ChannelWriter)
    assert isinstance(resolved["list"][2][0], ChannelReader)
    inner = resolved["deep"]
    while isinstance(inner, list):
        inner = inner[0]
    assert isinstance(inner, ChannelReader)
    assert resolved["kept"] == {"channel_id": "c", "access_key": "k", "direction": "up"}
    assert isinstance(resolve_refs(wire(REF), PLANE), ChannelReader)  # a ref as the payload
    # ... with the caller's id the engine adds to a worker's object payloads
    called = {**wire(REF), "_caller_worker_id": "w-1"}
    assert isinstance(resolve_refs(called, PLANE), ChannelReader)
    nested = {"body": {**wire(REF), "_caller_worker_id": "w-1"}}  # only at the top
    assert resolve_refs(nested, PLANE) == nested


def test_a_payload_without_refs_is_not_walked() -> None:
    resolve = channel_resolver(PLANE)
    value = {"x": wire(REF)}  # a ref the raw bytes do not contain: the scan decides
    assert resolve(msgspec.Raw(b'{"x": 1}'), value) is value
    assert value["x"] == wire(REF)
    raw = to_raw(value)
    assert isinstance(resolve(raw, decode_value(raw))["x"], ChannelReader)


# --- ends in outgoing payloads -----------------------------------------------------------------


def test_ends_in_a_payload_travel_as_their_refs() -> None:
    writer = ChannelWriter(StreamChannelRef("c", "k", "write"), PLANE)
    reader = ChannelReader(StreamChannelRef("c", "k", "read"), PLANE)
    sent = decode_value(encode_value({"out": writer, "in": [reader], "n": 1}))
    assert sent == {
        "out": {"channel_id": "c", "access_key": "k", "direction": "write"},
        "in": [{"channel_id": "c", "access_key": "k", "direction": "read"}],
        "n": 1,
    }
    back = resolve_refs(sent, PLANE)  # and what arrives is an end again
    assert isinstance(back["out"], ChannelWriter)
    assert back["out"].ref == writer.ref


# --- lazy ends ---------------------------------------------------------------------------------


@asynccontextmanager
async def counting_listener() -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP listener that counts connections and hangs up on each; (url, [count])."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    count = [0]

    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        count[0] += 1
        await stream.aclose()

    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, hang_up, tasks)
        yield f"ws://127.0.0.1:{port}", count
        tasks.cancel_scope.cancel()


async def test_an_end_opened_here_cannot_be_handed_on() -> None:
    with anyio.fail_after(10):
        async with counting_listener() as (url, _):
            reader = ChannelReader(REF, ChannelPlane(url, open_timeout=5))
            with pytest.raises(ChannelError):
                await reader.receive()
    with pytest.raises(TypeError, match="already used here"):
        to_raw({"reader": reader})


async def test_ends_connect_on_first_use_only() -> None:
    with anyio.fail_after(10):
        async with counting_listener() as (url, connections):
            plane = ChannelPlane(url, open_timeout=5)
            payload = {"r": wire(REF), "w": wire(StreamChannelRef("c", "k", "write"))}
            resolved = resolve_refs(payload, plane)
            reader, writer = resolved["r"], resolved["w"]
            encode_value(resolved)  # handing them on connects nothing either
            assert not reader.connected
            assert not writer.connected
            await anyio.wait_all_tasks_blocked()
            assert connections == [0]
            with pytest.raises(ChannelError, match="could not open the read end"):
                await reader.receive()
            await anyio.wait_all_tasks_blocked()
            assert connections == [1]
            await reader.aclose()


# --- through a worker -------------------------------------------------------------------------


class Pipes(msgspec.Struct):
    source: ChannelReader
    sink: ChannelWriter


async def test_refs_in_a_handler_payload_arrive_as_ends() -> None:
    seen: dict[str, Any] = {}
    with anyio.fail_after(10):
        async with channel_world() as world, world.connect() as caller, world.connect() as callee:
            writer_ref, reader_ref = await world.refs()

            async def untyped(payload: Any) -> str:
                seen["untyped"] = payload
                return "ok"

            async def typed(pipes: Pipes) -> str:
                seen["typed"] = pipes
                return "ok"

            callee.register_function("refs::untyped", untyped)
            callee.register_function("refs::typed", typed)
            await callee.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            payload = {
                "body": {"source": wire(reader_ref)},
                "sinks": [wire(writer_ref)],
                "user_data": {**wire(reader_ref), "more": True},
            }
            await caller.trigger_async({"function_id": "refs::untyped", "payload": payload})
            pipes = {"source": wire(reader_ref), "sink": wire(writer_ref)}
            await caller.trigger_async({"function_id": "refs::typed", "payload": pipes})
            whole = ChannelReader(reader_ref, world.plane)  # an end as the whole payload
            await caller.trigger_async({"function_id": "refs::untyped", "payload": whole})
            seen["whole"] = seen["untyped"]
            await caller.trigger_async({"function_id": "refs::untyped", "payload": payload})
            assert world.hub is not None  # nothing connected: both ends still untaken
            untouched = world.hub.find(reader_ref.channel_id, reader_ref.access_key)
            assert untouched is not None
            assert untouched.sender is not None
            assert untouched.receiver is not None
    got = seen["untyped"]
    source, sink = got["body"]["source"], got["sinks"][0]
    assert isinstance(source, ChannelReader)
    assert isinstance(sink, ChannelWriter)
    assert (source.ref, sink.ref) == (reader_ref, writer_ref)
    assert source.url == ChannelPlane(world.url).url_for(reader_ref)  # the callee's engine
    assert not source.connected
    assert not sink.connected
    assert got["user_data"] == {**wire(reader_ref), "more": True}
    assert isinstance(seen["typed"].source, ChannelReader)
    assert isinstance(seen["typed"].sink, ChannelWriter)
    assert isinstance(seen["whole"], ChannelReader)
    assert seen["whole"].ref == reader_ref


async def test_a_channel_made_here_carries_data_through_another_workers_handler() -> None:
    with anyio.fail_after(20):
        async with channel_world() as world, world.connect() as caller, world.connect() as callee:

            async def shout(pipes: Pipes) -> int:
                """Upper-case what comes in, send it on; count the bytes."""
                count = 0
                async with pipes.source, pipes.sink:
                    async for item in pipes.source.items():
                        if isinstance(item, str):
                            await pipes.sink.send_message(item.upper())
                        else:
                            count += len(item)
                            await pipes.sink.send(item.upper())
                return count

            callee.register_function("refs::shout", shout)
            await callee.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            up = await caller.create_channel(4)
            down = await caller.create_channel()
            assert isinstance(up, Channel)
            counted: list[int] = []

            async def call() -> None:
                # The ends travel as refs: the callee gets up's reader and down's writer.
                request = {"source": up.reader, "sink": down.writer}
                counted.append(
                    await caller.trigger_async({"function_id": "refs::shout", "payload": request})
                )

            async def feed() -> None:
                async with up.writer:
                    await up.writer.send_message("begin")
                    for _ in range(20):
                        await up.writer.send(b"abc" * 30_000)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call)
                tasks.start_soon(feed)
                async with down.reader:
                    items = [item async for item in down.reader.items()]
    assert items[0] == "BEGIN"
    assert b"".join(item for item in items[1:] if isinstance(item, bytes)) == b"ABC" * 600_000
    assert counted == [1_800_000]


# --- create_channel -----------------------------------------------------------------------------


class FakeCaller:
    """Answers every call with `answer`; remembers the requests."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[Any] = []

    async def trigger_async(self, request: Any) -> Any:
        self.requests.append(request)
        await anyio.lowlevel.checkpoint()
        return self.answer


GOOD = {
    "writer": {"channel_id": "c", "access_key": "k", "direction": "write"},
    "reader": {"channel_id": "c", "access_key": "k", "direction": "read"},
}


async def test_create_channel_asks_the_built_in_and_wraps_its_refs() -> None:
    caller = FakeCaller(GOOD)
    channel = await create_channel(caller, PLANE)
    sized = await create_channel(caller, PLANE, 8)
    assert caller.requests == [
        {"function_id": CHANNELS_CREATE, "payload": {}},
        {"function_id": CHANNELS_CREATE, "payload": {"buffer_size": 8}},
    ]
    for made in (channel, sized):
        assert made.writer_ref == StreamChannelRef("c", "k", "write")
        assert made.reader_ref == StreamChannelRef("c", "k", "read")
        assert not made.writer.connected
        assert not made.reader.connected


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "8"])
async def test_create_channel_refuses_a_bad_buffer_size(size: Any) -> None:
    caller = FakeCaller(GOOD)
    with pytest.raises(ValueError, match="buffer_size"):
        await create_channel(caller, PLANE, size)
    assert caller.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        None,
        {"writer": GOOD["writer"]},
        {"writer": GOOD["reader"], "reader": GOOD["writer"]},
        {"writer": GOOD["reader"], "reader": GOOD["reader"]},
        {"writer": GOOD["writer"], "reader": GOOD["writer"]},
        {"writer": GOOD["writer"], "reader": {**GOOD["reader"], "channel_id": "other"}},
    ],
)
async def test_create_channel_refuses_an_answer_that_is_not_two_refs(answer: Any) -> None:
    with pytest.raises(ChannelError, match="did not answer a writer and a reader"):
        await create_channel(FakeCaller(answer), PLANE)


async def test_a_worker_makes_channels_on_its_own_engine() -> None:
    with anyio.fail_after(10):
        async with channel_world() as world, world.connect() as worker:
            channel = await worker.create_channel(16)
            assert channel.reader.url == ChannelPlane(world.url).url_for(channel.reader_ref)
            async with channel.writer:
                await channel.writer.send(b"through the engine's channel")
            assert await channel.reader.read_all() == b"through the engine's channel"
            with pytest.raises(ValueError, match="buffer_size"):
                await worker.create_channel(0)


def test_the_public_names() -> None:
    assert anyiii.ChannelReader is ChannelReader
    assert anyiii.ChannelWriter is ChannelWriter
    assert anyiii.Channel is Channel
