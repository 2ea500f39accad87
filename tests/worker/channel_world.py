"""Where the worker's channel tests get channels from: the fake data plane, or the embedded
engine once it serves channels itself.

While the embedded engine has no `engine::channels::create` of its own, `channel_world()`
runs `FakeDataPlane` next to an embedded engine, and a provider worker serves
`engine::channels::create` from the fake. Workers under test reach the engine in memory
and are given the fake's URL as their engine URL, so the channel ends they make connect to
the fake. Once the engine serves channels (the built-in exists), the same tests run against
its own data plane: workers connect to the engine's socket, and nothing is faked.

`ENGINE_CHANNELS` says which; tests that look inside the fake (its counters) need it False.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from channel_plane_fake import FakeDataPlane

import anyiii
from anyiii._engine.builtins import BUILTINS
from anyiii._protocol.codes import CHANNELS_CREATE
from anyiii._worker import StreamChannelRef, TransportOpener
from anyiii._worker.channel_plane import ChannelPlane
from anyiii._worker.channel_reader import ChannelReader
from anyiii._worker.channel_writer import ChannelWriter
from anyiii.testing import running_engine

ENGINE_CHANNELS = CHANNELS_CREATE in BUILTINS
"""Whether the embedded engine serves channels itself (then nothing is faked)."""


@dataclass
class World:
    """An engine with a channel data plane, and a worker kept connected to it."""

    url: str
    """The engine URL workers are given (their channel ends connect there)."""
    opener: TransportOpener | None
    """How workers reach the engine (None: over a socket to `url`)."""
    provider: anyiii.Worker | None
    """A worker kept connected (it serves the fake's `engine::channels::create`)."""
    fake: FakeDataPlane | None

    @property
    def plane(self) -> ChannelPlane:
        return ChannelPlane(self.url)

    def connect(self, **options: Any) -> AbstractAsyncContextManager[anyiii.Worker]:
        """A worker on this world's engine, with this world's engine URL."""
        return anyiii.connect(
            self.url, transport=self.opener or "websockets", reconnect=False, **options
        )

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
async def channel_world(*, workers: bool = True) -> AsyncIterator[World]:
    """A world for the block. `workers=False`: only ends made with `World.ends()` will be
    used, so the fake needs no engine around it (faster, for property tests)."""
    if not workers and not ENGINE_CHANNELS:
        async with FakeDataPlane().serving() as fake:
            yield World(fake.url, None, None, fake)
        return
    async with running_engine(http_port=None) as engine:
        if ENGINE_CHANNELS:
            async with anyiii.connect(engine.url, reconnect=False) as provider:
                yield World(engine.url, None, provider, None)
            return
        fake = FakeDataPlane()
        opener = engine.memory_transport_opener()
        async with (
            fake.serving(),
            anyiii.connect(fake.url, transport=opener, reconnect=False) as provider,
        ):

            async def create(payload: Any) -> dict[str, Any]:
                writer, reader = fake.create(payload.get("buffer_size"))
                return {"writer": writer, "reader": reader}

            provider.register_function(CHANNELS_CREATE, create)
            # A round trip through the engine: the registration is in place for everyone.
            await provider.trigger_async({"function_id": CHANNELS_CREATE, "payload": {}})
            yield World(fake.url, opener, provider, fake)
