"""What a peer may make a transport hold or hand up (`inbound`, docs/limits.md): tiny
fragments, unfinished messages across connections sharing a budget, text that is not UTF-8.

The peers are raw: they write frames byte by byte as the test builds them, over real
sockets on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from transport_peers import (
    TEXT,
    fragmented,
    raw_client,
    raw_frame,
    websocket_server,
    wire_under_test,
)

from anyiii._errors import ConnectionClosed
from anyiii._transport import Transport, TransportLimits
from anyiii._transport.budget import SharedBudget
from anyiii._transport.inbound import SMALL_FRAGMENT, SMALL_FRAGMENT_ALLOWANCE


async def assert_refused(transport: Transport, peer: Any, code: int) -> None:
    """The transport reports `code`, and the peer got a close frame saying so."""
    with pytest.raises(ConnectionClosed) as closed:
        await transport.receive()
    assert closed.value.code == code, closed.value
    frame = await peer.next_frame()
    assert frame.opcode.name == "CLOSE"
    assert int.from_bytes(frame.data[:2], "big") == code
    assert frame.data[2:], "the close frame gives a reason"


# --- item 1: tiny fragments ------------------------------------------------------------------


KINDS = ["websocket-server", "websocket-client", "httpx-client"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_message_of_many_tiny_fragments_is_refused_with_1008(kind: str) -> None:
    pieces = [b"["] + [b" "] * (SMALL_FRAGMENT_ALLOWANCE + 10) + [b"]"]
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            await peer.stream.send(fragmented(pieces, masked=kind == "websocket-server"))
            await assert_refused(transport, peer, 1008)


@pytest.mark.parametrize("kind", KINDS)
async def test_fragments_of_a_reasonable_size_are_joined_whatever_their_number(kind: str) -> None:
    # Small ones up to the allowance, then many at the small size: all accepted.
    pieces = [b"x"] * SMALL_FRAGMENT_ALLOWANCE + [b"y" * SMALL_FRAGMENT] * 2000 + [b"z"]
    masked = kind == "websocket-server"
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            await peer.stream.send(fragmented(pieces, masked=masked))
            await peer.stream.send(raw_frame(TEXT, b"next", masked=masked))
            assert await transport.receive() == b"".join(pieces)
            assert await transport.receive() == b"next"
            held = getattr(transport, "_reassembly", None)
            assert (transport._joined if held is None else held.data) == b""  # type: ignore[attr-defined]


# --- item 3: text that is not UTF-8 ----------------------------------------------------------

BAD_TEXT = b'{"type":"ping","x":"\xff"}'


@pytest.mark.parametrize("kind", ["websocket-server", "websocket-client", "httpx-client"])
@pytest.mark.parametrize("how", ["one-frame", "fragments"])
async def test_text_that_is_not_utf8_is_refused_with_1007(kind: str, how: str) -> None:
    masked = kind == "websocket-server"
    if how == "one-frame":
        data = raw_frame(TEXT, BAD_TEXT, masked=masked)
    else:
        data = fragmented([BAD_TEXT[:10], BAD_TEXT[10:]], masked=masked)
    with anyio.fail_after(10):
        async with wire_under_test(kind) as (transport, peer):
            await peer.stream.send(raw_frame(TEXT, "é中文🙂".encode(), masked=masked) + data)
            assert await transport.receive() == "é中文🙂".encode()
            await assert_refused(transport, peer, 1007)


async def test_a_utf8_sequence_split_across_fragments_is_accepted() -> None:
    text = "é中文🙂".encode()
    with anyio.fail_after(10):
        async with wire_under_test("websocket-server") as (transport, peer):
            await peer.stream.send(fragmented([text[:1], text[1:4], text[4:]]))
            assert await transport.receive() == text


# --- item 2: a budget shared by connections ---------------------------------------------------


async def test_the_connection_that_would_pass_the_shared_budget_is_refused() -> None:
    budget = SharedBudget(3 * 2**20, what="unfinished messages")
    limits = TransportLimits(unfinished_budget=budget)
    message = b"y" * (5 * 2**20 // 4)  # 1.25 MiB: two fit whole
    part = message[: 11 * 2**20 // 10]  # 1.1 MiB sent of each first: three do not fit
    outcomes: dict[int, int | bytes] = {}
    seen = anyio.Event()

    async def handler(transport: Transport) -> None:
        index = int(transport.path.strip("/"))
        try:
            outcomes[index] = await transport.receive()
        except ConnectionClosed as exc:
            outcomes[index] = exc.code
        seen.set()

    with anyio.fail_after(15):
        async with websocket_server(handler, limits=limits) as port:
            peers = [await raw_client(port, f"/{i}") for i in range(3)]
            head = raw_frame(TEXT, message)[: -len(message)]
            for peer in peers:
                await peer.stream.send(head + part)
            await seen.wait()  # the one that crossed the budget is refused at once
            (refused,) = outcomes
            assert outcomes[refused] == 1009
            frame = await peers[refused].next_frame()
            assert int.from_bytes(frame.data[:2], "big") == 1009
            assert b"budget" in frame.data
            # The others kept what they had: their messages complete.
            for index, peer in enumerate(peers):
                if index != refused:
                    await peer.stream.send(message[len(part) :])
            with anyio.fail_after(10):
                while len(outcomes) < 3:
                    seen = anyio.Event()
                    await seen.wait()
            assert sorted(outcomes.values(), key=str) == [1009, message, message]
            for peer in peers:
                await anyio.aclose_forcefully(peer.stream)
    assert budget.used == 0, "every connection gave its bytes back"


async def test_a_connection_that_leaves_mid_message_gives_its_bytes_back() -> None:
    budget = SharedBudget(8 * 2**20, what="unfinished messages")
    message = b"z" * 2**20
    held_at_end: list[int] = []
    done = anyio.Event()

    async def handler(transport: Transport) -> None:
        with pytest.raises(ConnectionClosed):
            await transport.receive()
        held_at_end.append(budget.used)  # still counted: the transport is not closed yet
        done.set()

    with anyio.fail_after(10):
        async with websocket_server(
            handler, limits=TransportLimits(unfinished_budget=budget)
        ) as port:
            peer = await raw_client(port)
            await peer.stream.send(raw_frame(TEXT, message)[: -len(message) // 2])
            await peer.stream.aclose()
            await done.wait()
    assert held_at_end[0] > 2**19
    assert budget.used == 0, "closing the transport released its unfinished message"
