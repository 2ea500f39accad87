"""Data channels (spec §12): the engine's table of channels and their bounded buffers.

A channel is a one-way stream of items between a writer and a reader, each of which is a
WebSocket on the worker port (`/ws/channels/<id>?key=<key>&dir=write|read`, served by
`channel_socket.py`) or the engine itself (the `http` trigger streams a request body into
one and a response out of another). Items are binary data (`BinaryMessage`) or text
messages (plain `bytes`), kept in order.

The buffer between the two ends is an anyio memory stream bounded by a number of items
(`buffer_size`, 64 by default, at most 1,024, as in the real engine), and data arriving
from a socket is cut into items of at most `MAX_ITEM_BYTES`, so a channel holds at most
`buffer_size * MAX_ITEM_BYTES` of data (4 MiB by default) whatever the writer sends: a
full buffer stops the writer's socket from being read, and TCP slows the writer down.

Each end is taken once; once both are, the table forgets the channel. A channel whose
ends were not both taken within `CHANNEL_TTL` is swept; a worker's channels are dropped
when it disconnects (ends already taken stream on to their end, as in the real engine).
An end that disappears without finishing (a writer whose socket broke, a dropped
channel) marks the channel failed, so the reader's socket closes with an error instead
of looking like a complete stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._protocol.codes import CHANNEL_CHUNK_SIZE, CHANNELS_PATH
from .._protocol.frames import StreamChannelRef
from .._protocol.ids import random_uuid

__all__ = [
    "CHANNELS_PATH",
    "CHANNEL_TTL",
    "DEFAULT_BUFFER_SIZE",
    "MAX_BUFFER_SIZE",
    "MAX_ITEM_BYTES",
    "Channel",
    "ChannelHub",
    "ChannelTarget",
    "parse_channel_target",
]

logger = logging.getLogger("anyiii.engine.channels")

CHANNEL_TTL: Final = 300.0
"""Seconds a channel may wait for both of its ends before it is swept (spec §12)."""
SWEEP_INTERVAL: Final = 60.0
"""Seconds between two sweeps of stale channels."""
DEFAULT_BUFFER_SIZE: Final = 64
MAX_BUFFER_SIZE: Final = 1024
"""`engine::channels::create`'s `buffer_size` (items) by default and at most."""
MAX_ITEM_BYTES: Final = CHANNEL_CHUNK_SIZE
"""Binary data from a socket is cut into items of at most this size (the SDKs' chunk)."""


@dataclass(eq=False)
class Channel:
    """One channel: its credentials, owner, buffer ends not yet taken, and outcome."""

    channel_id: str
    access_key: str
    owner: int | None
    created_at: float
    sender: MemoryObjectSendStream[bytes] | None
    receiver: MemoryObjectReceiveStream[bytes] | None
    failure: str | None = None
    """Why the stream ended without its writer finishing it (None: it did not, so far)."""

    def ref(self, direction: str) -> StreamChannelRef:
        return StreamChannelRef(self.channel_id, self.access_key, direction)


@dataclass(frozen=True, slots=True)
class ChannelTarget:
    """A data-plane request target: which channel, with which key, which end."""

    channel_id: str
    access_key: str
    direction: str


def parse_channel_target(target: str) -> ChannelTarget | None:
    """`/ws/channels/<id>?key=<key>&dir=read|write`, or None if `target` is not one."""
    parts = urlsplit(target)
    if not parts.path.startswith(CHANNELS_PATH):
        return None
    channel_id = parts.path[len(CHANNELS_PATH) :]
    query = parse_qs(parts.query)
    keys, directions = query.get("key", []), query.get("dir", [])
    if not channel_id or "/" in channel_id or len(keys) != 1 or len(directions) != 1:
        return None
    if directions[0] not in ("read", "write"):
        return None
    return ChannelTarget(channel_id, keys[0], directions[0])


@dataclass
class ChannelHub:
    """Every channel of one engine, by id. `clock` gives seconds (the event loop's); `ttl`
    and `sweep_interval` are `CHANNEL_TTL` and `SWEEP_INTERVAL` unless a test says less."""

    clock: Callable[[], float]
    ttl: float = CHANNEL_TTL
    sweep_interval: float = SWEEP_INTERVAL
    _channels: dict[str, Channel] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._channels)

    def create(
        self, buffer_size: int | None = None, owner: int | None = None
    ) -> tuple[StreamChannelRef, StreamChannelRef]:
        """A new channel: its (writer, reader) refs. `owner` is the connection whose
        disconnection drops it (None: the engine's own, dropped by whoever made it)."""
        size = DEFAULT_BUFFER_SIZE if buffer_size is None else buffer_size
        size = min(max(size, 1), MAX_BUFFER_SIZE)
        sender, receiver = anyio.create_memory_object_stream[bytes](size)
        channel = Channel(random_uuid(), random_uuid(), owner, self.clock(), sender, receiver)
        self._channels[channel.channel_id] = channel
        return channel.ref("write"), channel.ref("read")

    def find(self, channel_id: str, access_key: str) -> Channel | None:
        """The channel with this id, if `access_key` is its key."""
        channel = self._channels.get(channel_id)
        if channel is None or channel.access_key != access_key:
            return None
        return channel

    def take_sender(self, channel_id: str, access_key: str) -> MemoryObjectSendStream[bytes] | None:
        """The writing end, once; None for an unknown channel, wrong key or taken end."""
        channel = self.find(channel_id, access_key)
        if channel is None:
            return None
        sender, channel.sender = channel.sender, None
        self._forget_if_taken(channel)
        return sender

    def take_receiver(
        self, channel_id: str, access_key: str
    ) -> MemoryObjectReceiveStream[bytes] | None:
        """The reading end, once; None for an unknown channel, wrong key or taken end."""
        channel = self.find(channel_id, access_key)
        if channel is None:
            return None
        receiver, channel.receiver = channel.receiver, None
        self._forget_if_taken(channel)
        return receiver

    def _forget_if_taken(self, channel: Channel) -> None:
        """Once both ends are taken, the streams belong to whoever took them: the table
        forgets the channel (a third connection to it gets 404)."""
        if channel.sender is None and channel.receiver is None:
            self._channels.pop(channel.channel_id, None)

    def remove(self, channel_id: str, why: str = "the channel was dropped") -> None:
        """Forget a channel. Ends nobody took are closed: a reader already connected then
        sees the stream fail with `why` (it did not end), a writer sees its reader gone."""
        channel = self._channels.pop(channel_id, None)
        if channel is None:
            return
        if channel.sender is not None:
            channel.failure = channel.failure or why
            channel.sender.close()
            channel.sender = None
        if channel.receiver is not None:
            channel.receiver.close()
            channel.receiver = None

    def drop_owner(self, owner: int) -> None:
        """A worker disconnected: drop the channels it created."""
        for channel_id in [c.channel_id for c in self._channels.values() if c.owner == owner]:
            self.remove(channel_id, "the worker that created the channel disconnected")

    def sweep(self) -> int:
        """Drop channels older than `ttl` with an end nobody took; how many."""
        cutoff = self.clock() - self.ttl
        stale = [
            channel.channel_id
            for channel in self._channels.values()
            if channel.created_at < cutoff
            and (channel.sender is not None or channel.receiver is not None)
        ]
        for channel_id in stale:
            self.remove(channel_id, "the channel was not connected in time")
        if stale:
            logger.info("swept %d channel(s) not connected within %.0f s", len(stale), self.ttl)
        return len(stale)

    def close_all(self) -> None:
        """The engine stops: every channel in the table is dropped (its ends closed)."""
        for channel_id in list(self._channels):
            self.remove(channel_id, "the engine stopped")

    async def sweep_forever(self) -> None:
        """Sweep every `sweep_interval` seconds until cancelled."""
        while True:
            await anyio.sleep(self.sweep_interval)
            self.sweep()
