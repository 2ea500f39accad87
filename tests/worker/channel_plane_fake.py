"""A small fake of an engine's channel data plane (spec §12), for the worker's channel tests.

It keeps the contract the engines keep, and nothing more:

* `create(buffer_size)` makes a channel: a (writer ref, reader ref) pair with one id and one
  access key, and a buffer between the ends bounded in items (default 64, at most 1024,
  at least 1), as `engine::channels::create` does.
* `ws://<host>:<port>/ws/channels/<id>?key=<key>&dir=read|write`: an unknown id or a wrong
  key gets HTTP 404 before the upgrade (like both engines).
* Each end is taken once: a second connection to a taken end is upgraded and closed at once
  (1008, as the embedded engine does; the Rust engine closes without a status code).
* `dir=write`: binary frames are data, text frames messages, put in order into the bounded
  buffer; while it is full the socket is not read, so TCP holds the writer back. The
  writer's normal close (1000) ends the stream; any other end (an abort, an error code)
  fails it.
* `dir=read`: the items go out in order, binary as binary and text as text; after the last
  one the socket is closed with 1000 if the writer ended the stream, or 1011 if it
  failed. A reader that goes away closes the buffer, and the writer's socket is closed
  with 1011.

It also counts what tests want to see: upgrades per channel end, and the fullest each
channel's buffer got.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from anyiii._errors import ConnectionClosed
from anyiii._protocol.frames import StreamChannelRef
from anyiii._transport import Transport, serve_websockets

PREFIX = "/ws/channels/"


@dataclass(eq=False)
class FakeChannel:
    channel_id: str
    access_key: str
    sender: MemoryObjectSendStream[bytes] | None
    receiver: MemoryObjectReceiveStream[bytes] | None
    failure: str | None = None
    fullest: int = 0
    """The most items the buffer held at once."""


@dataclass(eq=False)
class FakeDataPlane:
    """The fake (see the module docstring). `url` is set while `serving()`."""

    channels: dict[str, FakeChannel] = field(default_factory=dict)
    upgrades: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(channel_id, dir) → WebSocket connections upgraded for that end."""
    refused: int = 0
    """Upgrade requests answered with 404."""
    url: str = ""

    def create(self, buffer_size: int | None = None) -> tuple[StreamChannelRef, StreamChannelRef]:
        size = min(max(64 if buffer_size is None else buffer_size, 1), 1024)
        sender, receiver = anyio.create_memory_object_stream[bytes](size)
        channel = FakeChannel(str(uuid.uuid4()), str(uuid.uuid4()), sender, receiver)
        self.channels[channel.channel_id] = channel
        ids = (channel.channel_id, channel.access_key)
        return StreamChannelRef(*ids, "write"), StreamChannelRef(*ids, "read")

    def _target(self, path: str) -> tuple[FakeChannel, str] | None:
        parts = urlsplit(path)
        if not parts.path.startswith(PREFIX):
            return None
        query = parse_qs(parts.query)
        channel = self.channels.get(parts.path[len(PREFIX) :])
        keys, dirs = query.get("key", []), query.get("dir", [])
        if channel is None or keys != [channel.access_key] or dirs not in (["read"], ["write"]):
            return None
        return channel, dirs[0]

    def _accept(self, path: str) -> bool:
        if self._target(path) is None:
            self.refused += 1
            return False
        return True

    async def _serve(self, transport: Transport) -> None:
        target = self._target(transport.path)
        assert target is not None, "accepted, so it was a channel end"
        channel, direction = target
        self.upgrades[(channel.channel_id, direction)] += 1
        if direction == "write":
            sender, channel.sender = channel.sender, None
            if sender is None:
                await transport.aclose(1008, "this channel's writer is already connected")
                return
            async with sender:
                code, reason = await self._pump_in(transport, sender, channel)
        else:
            receiver, channel.receiver = channel.receiver, None
            if receiver is None:
                await transport.aclose(1008, "this channel's reader is already connected")
                return
            async with receiver:
                code, reason = await self._pump_out(transport, receiver, channel)
        await transport.aclose(code, reason)

    async def _pump_in(
        self, transport: Transport, sender: MemoryObjectSendStream[bytes], channel: FakeChannel
    ) -> tuple[int, str]:
        try:
            while True:
                message = await transport.receive()
                await sender.send(message)
                used = sender.statistics().current_buffer_used
                channel.fullest = max(channel.fullest, used)
        except ConnectionClosed as closed:
            if closed.code != 1000:
                channel.failure = f"the writer's connection ended with {closed.code}"
            return 1000, ""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return 1011, "the channel's reader is gone"

    async def _pump_out(
        self,
        transport: Transport,
        receiver: MemoryObjectReceiveStream[bytes],
        channel: FakeChannel,
    ) -> tuple[int, str]:
        forwarded_all = False
        async with anyio.create_task_group() as tasks:

            async def watch_reader() -> None:
                # Reading notices the reader's close (and answers its pings).
                try:
                    while True:
                        await transport.receive()
                except ConnectionClosed:
                    tasks.cancel_scope.cancel()

            tasks.start_soon(watch_reader)
            try:
                async for item in receiver:
                    await transport.send(item)
            except ConnectionClosed:
                pass
            else:
                forwarded_all = True
            tasks.cancel_scope.cancel()
        if forwarded_all and channel.failure is not None:
            return 1011, channel.failure
        return 1000, ""  # the stream ended, or the reader left (then nobody hears it)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeDataPlane]:
        """Serve on 127.0.0.1 (a free port) for the block; `url` is where."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        serve = functools.partial(
            serve_websockets, listener, self._serve, accept=self._accept, handshake_timeout=5
        )
        async with anyio.create_task_group() as tasks:
            await tasks.start(serve)
            self.url = f"ws://127.0.0.1:{port}"
            try:
                yield self
            finally:
                tasks.cancel_scope.cancel()
                for channel in self.channels.values():  # ends nobody took
                    for end in (channel.sender, channel.receiver):
                        if end is not None:
                            end.close()
