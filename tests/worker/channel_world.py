"""Where the worker's channel tests get channels from: the embedded engine's own data plane
(`engine::channels::create` and `/ws/channels/...` on its worker port), or, for the few
tests that count what happens on the data plane (upgrades, refusals), the small fake in
`channel_plane_fake.py` on its own socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from channel_plane_fake import FakeDataPlane

import anyiii
from anyiii._engine.channels import ChannelHub
from anyiii._worker import StreamChannelRef
from anyiii._worker.channel_plane import ChannelPlane
from anyiii._worker.channel_reader import ChannelReader
from anyiii._worker.channel_writer import ChannelWriter
from anyiii.testing import running_engine


@dataclass
class World:
    """An engine with a channel data plane (or the fake alone), and a worker kept connected
    to the engine."""

    url: str
    """The engine URL workers are given (their channel ends connect there)."""
    provider: anyiii.Worker | None
    """A worker kept connected to the engine (None with the fake)."""
    hub: ChannelHub | None
    """The engine's channel table, to look inside (None with the fake)."""
    fake: FakeDataPlane | None

    @property
    def plane(self) -> ChannelPlane:
        return ChannelPlane(self.url)

    def connect(self, **options: Any) -> AbstractAsyncContextManager[anyiii.Worker]:
        """A worker on this world's engine."""
        return anyiii.connect(self.url, reconnect=False, **options)

    async def refs(self, buffer_size: int | None = None) -> tuple[StreamChannelRef, ...]:
        """A new channel's (writer ref, reader ref)."""
        if self.fake is not None:
            return self.fake.create(buffer_size)
        assert self.provider is not None
        channel = await self.provider.create_channel(buffer_size)
        return channel.writer_ref, channel.reader_ref

    async def ends(self, buffer_size: int | None = None) -> tuple[ChannelWriter, ChannelReader]:
        """A new channel's live ends, made directly on this world's plane."""
        writer_ref, reader_ref = await self.refs(buffer_size)
        return ChannelWriter(writer_ref, self.plane), ChannelReader(reader_ref, self.plane)


@asynccontextmanager
async def channel_world(*, fake: bool = False) -> AsyncIterator[World]:
    """A world for the block: the embedded engine (over real sockets), or with `fake=True`
    the fake data plane alone (no engine, no workers; its counters can be read)."""
    if fake:
        async with FakeDataPlane().serving() as plane:
            yield World(plane.url, None, None, plane)
        return
    async with (
        running_engine(http_port=None) as engine,
        anyiii.connect(engine.url, reconnect=False) as provider,
    ):
        yield World(engine.url, provider, engine.channels, None)
