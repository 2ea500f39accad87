"""Binary messages (`BinaryMessage`): sent as binary frames, received as `BinaryMessage`,
in order with text messages, on every transport and both backends. Channels' data planes
(spec §12) tell data from messages by this."""

from __future__ import annotations

import anyio
import pytest
from transport_peers import PAIR_KINDS, transport_pair

from anyiii._transport import BinaryMessage, TransportLimits

pytestmark = pytest.mark.parametrize("kind", PAIR_KINDS)

MiB = 2**20


async def test_binary_and_text_messages_keep_their_kind_and_order(kind: str) -> None:
    sent: list[bytes] = []
    for n in range(40):
        payload = bytes([n]) * (n * 997)  # empty, small and multi-frame-header sizes
        sent.append(BinaryMessage(payload) if n % 3 else b'{"n":%d}' % n)
    with anyio.fail_after(10):
        async with transport_pair(kind) as (client, server), anyio.create_task_group() as tg:
            tg.start_soon(client.run_writer)
            got: list[bytes] = []

            async def receive_all() -> None:  # more than socket buffers hold: read meanwhile
                got.extend([await server.receive() for _ in sent])

            async with anyio.create_task_group() as receiving:
                receiving.start_soon(receive_all)
                for n, message in enumerate(sent):
                    if n % 2:
                        await client.send(message)
                    else:
                        client.send_nowait(message)
            for message in sent[:10]:  # and the other way
                await server.send(message)
            back = [await client.receive() for _ in sent[:10]]
            tg.cancel_scope.cancel()
    assert got == sent
    assert [type(message) for message in got] == [type(message) for message in sent]
    assert [type(message) for message in back] == [type(message) for message in sent[:10]]


async def test_a_binary_message_above_the_fragment_size_arrives_whole_and_binary(
    kind: str,
) -> None:
    big = BinaryMessage(bytes(range(256)) * (17 * MiB // 256))  # past the 16 MiB fragmenting
    limits = TransportLimits(max_message_size=32 * MiB)
    with anyio.fail_after(30):
        async with transport_pair(kind, limits) as (client, server):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.send, big)
                got = await server.receive()
    assert type(got) is BinaryMessage
    assert got == big
