"""WebSocket-level behaviour, against a raw peer that drives websockets' Sans-I/O by hand.

The transports under test are the websocket client, the httpx-ws client and the
websocket server (the memory pair has no frames). The raw peer sends what our transports
never send on their own: fragments, pings, unsolicited pongs, malformed frames; or it stops
reading altogether.
"""

from __future__ import annotations

import anyio
import pytest
from transport_peers import WIRE_KINDS, wire_under_test
from websockets.frames import Close, Opcode

from anyiii._errors import ConnectionClosed
from anyiii._transport import TransportLimits

pytestmark = pytest.mark.parametrize("kind", WIRE_KINDS)


async def test_fragmented_messages_are_reassembled(kind: str) -> None:
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            protocol = peer.protocol
            protocol.send_text(b'{"a":', fin=False)
            protocol.send_ping(b"mid-message")  # control frames may interleave fragments
            protocol.send_continuation(b' "b",', fin=False)
            protocol.send_continuation(b' "c": 1}', fin=True)
            protocol.send_binary(b"\x00\x01", fin=False)
            protocol.send_continuation(b"\x02\x03", fin=True)
            protocol.send_binary(b'{"binary": true}')
            await peer.flush()
            assert await transport.receive() == b'{"a": "b", "c": 1}'
            assert await transport.receive() == b"\x00\x01\x02\x03"
            assert await transport.receive() == b'{"binary": true}'
            pong = await peer.next_frame()
            assert pong.opcode is Opcode.PONG
            assert pong.data == b"mid-message"


async def test_ping_is_answered_and_no_pong_is_ever_unsolicited(kind: str) -> None:
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            peer.protocol.send_ping(b"are you there")
            await peer.send_text(b"hello")
            assert await transport.receive() == b"hello"
            pong = await peer.next_frame()
            assert (pong.opcode, pong.data) == (Opcode.PONG, b"are you there")
            for n in range(20):
                await transport.send(b"%d" % n)
            frames = [await peer.next_frame() for _ in range(20)]
            assert [f.data for f in frames] == [b"%d" % n for n in range(20)]
            assert all(f.opcode is Opcode.TEXT for f in frames)
            pongs = [f for f in peer.received if f.opcode is Opcode.PONG]
            assert len(pongs) == 1


async def test_unsolicited_pong_from_the_peer_is_ignored(kind: str) -> None:
    # RFC 6455 allows unsolicited pongs as heartbeats; httpx-ws 0.9 crashes on them.
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            peer.protocol.send_pong(b"heartbeat")
            await peer.send_text(b"still fine")
            assert await transport.receive() == b"still fine"
            assert not transport.closed


async def test_aclose_returns_within_close_timeout_when_the_peer_never_answers(
    kind: str,
) -> None:
    with anyio.fail_after(5):
        async with wire_under_test(kind, TransportLimits(close_timeout=0.3)) as (transport, peer):
            start = anyio.current_time()
            await transport.aclose()
            elapsed = anyio.current_time() - start
            assert 0.25 <= elapsed < 1.5
            assert transport.closed
            with pytest.raises(ConnectionClosed):
                await transport.receive()
            # It did try: the close frame went out before it gave up waiting.
            close = await peer.next_frame()
            assert close.opcode is Opcode.CLOSE
            assert Close.parse(close.data).code == 1000


async def test_peer_vanishing_without_a_close_frame_gives_1006(kind: str) -> None:
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            await anyio.aclose_forcefully(peer.stream)
            with pytest.raises(ConnectionClosed) as caught:
                await transport.receive()
            assert caught.value.code == 1006
            with pytest.raises(ConnectionClosed):
                await transport.send(b"x")


async def test_malformed_frame_fails_the_connection_with_1002(kind: str) -> None:
    # Opcode 3 is reserved. A client's frames must be masked (here with a zero key).
    frame = b"\x83\x80\x00\x00\x00\x00" if kind == "websocket-server" else b"\x83\x00"
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            await peer.stream.send(frame)
            with pytest.raises(ConnectionClosed) as caught:
                await transport.receive()
            assert caught.value.code == 1002
            close = await peer.next_frame()
            assert close.opcode is Opcode.CLOSE
            assert Close.parse(close.data).code == 1002
