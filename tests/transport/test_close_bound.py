"""`aclose` returns within `close_timeout` even when its own close frame cannot be written.

Writes are shielded and bounded by `write_timeout` (which a channel writer sets to
infinity: a slow reader is not an error). Closing must not inherit that bound: once
`aclose` starts, no write may outlast the close timeout, its own close frame included.
"""

from __future__ import annotations

import math

import anyio
import anyio.abc
import pytest
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from anyiii._errors import ConnectionClosed
from anyiii._transport import TransportLimits
from anyiii._transport.websocket import WebSocketTransport


class StalledStream(anyio.abc.ByteStream):
    """A peer that accepts `room` bytes, then never reads again (nor sends anything)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.closed = anyio.Event()

    async def send(self, item: bytes) -> None:
        if len(item) > self.room:
            await anyio.sleep_forever()
        self.room -= len(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        await self.closed.wait()
        raise anyio.ClosedResourceError

    async def send_eof(self) -> None:
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.closed.set()


def stalled_transport(room: int) -> WebSocketTransport:
    protocol = ClientProtocol(parse_uri("ws://peer/"), state=State.OPEN)
    limits = TransportLimits(close_timeout=2, write_timeout=math.inf)
    return WebSocketTransport(StalledStream(room), protocol, limits=limits)


@pytest.mark.autojump
async def test_a_close_frame_the_peer_will_not_take_is_given_up_on_time() -> None:
    transport = stalled_transport(room=0)
    closed = anyio.Event()

    async def close() -> None:
        await transport.aclose()
        closed.set()

    with anyio.fail_after(30):
        started = anyio.current_time()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(close)
            with anyio.move_on_after(10):
                await closed.wait()
            elapsed = anyio.current_time() - started
            if not closed.is_set():  # the bug: unstick the write so that the test ends
                transport.abort()
    assert elapsed < 3, f"aclose took {elapsed:.1f} s with a 2 s close timeout"


@pytest.mark.autojump
async def test_a_write_under_way_when_closing_starts_is_bounded_by_the_close_timeout() -> None:
    transport = stalled_transport(room=10)
    outcome: list[BaseException] = []

    async def send() -> None:
        try:
            await transport.send(b"x" * 1000)  # stalls in its shielded write
        except ConnectionClosed as exc:
            outcome.append(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send)
            await anyio.wait_all_tasks_blocked()
            started = anyio.current_time()
            await transport.aclose()
            elapsed = anyio.current_time() - started
    assert elapsed < 3, f"aclose took {elapsed:.1f} s with a 2 s close timeout"
    assert transport.closed
    assert len(outcome) == 1  # the cut write is reported to its sender
