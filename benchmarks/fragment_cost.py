"""What a peer's fragmenting costs the server: CPU to receive 16 MiB cut three ways.

    python benchmarks/fragment_cost.py [--rounds 5] [--backend asyncio|trio] [--quick]

The server is anyiii's default transport (`serve_websockets`) in this process; the peer
writes hand-made frames on a raw socket (one write each), so only the receiving side does
work per frame. The same 16 MiB arrive as:

* `whole`: one message in one frame;
* `messages`: 16,384 messages of 1 KiB, one frame each (what any client may send);
* `fragments`: one message in 16,384 fragments of 1 KiB (fragments of 1 KiB and more are
  not capped: docs/limits.md, "Fragments").

Reported: the median process CPU time per way, and `fragments` over `messages`: how much
more the same bytes cost a peer that fragments than one that sends small messages.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import anyio
import anyio.abc
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from anyiii._transport import Transport, TransportLimits, serve_websockets

KiB = 1024
PIECES = 16 * KiB  # 16 MiB in 1 KiB pieces
TEXT, CONTINUATION = 0x1, 0x0


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame with a zero key, so the payload reads as is."""
    length = len(payload)
    first = bytes(((0x80 if fin else 0) | opcode,))
    if length < 126:
        head = first + bytes((0x80 | length,))
    elif length < 65536:
        head = first + bytes((0x80 | 126,)) + length.to_bytes(2, "big")
    else:
        head = first + bytes((0x80 | 127,)) + length.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def ways() -> dict[str, tuple[bytes, int]]:
    """Each way's bytes on the wire and the messages the server receives."""
    piece = b"a" * KiB
    fragments = b"".join(
        frame(TEXT if i == 0 else CONTINUATION, piece, fin=i == PIECES - 1) for i in range(PIECES)
    )
    return {
        "whole": (frame(TEXT, piece * PIECES), 1),
        "messages": (frame(TEXT, piece) * PIECES, PIECES),
        "fragments": (fragments, 1),
    }


async def handshake(port: int) -> anyio.abc.SocketStream:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"))
    protocol.send_request(protocol.connect())
    for chunk in protocol.data_to_send():
        await stream.send(chunk)
    while not protocol.events_received():
        protocol.receive_data(await stream.receive())
    return stream


async def measure(data: bytes, expected: int) -> float:
    """CPU seconds from the peer's write until the server has every message."""
    received = anyio.Event()

    async def handler(transport: Transport) -> None:
        count = 0
        while count < expected:
            count += len(await transport.receive_some())
        received.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    limits = TransportLimits(max_message_size=64 * KiB * KiB)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(serve_websockets, listener, handler, limits=limits))
        stream = await handshake(port)
        with anyio.fail_after(60):
            start = time.process_time()
            await stream.send(data)
            await received.wait()
            spent = time.process_time() - start
        await anyio.aclose_forcefully(stream)
        tg.cancel_scope.cancel()
    return spent


async def main(rounds: int) -> None:
    prepared = ways()
    spent: dict[str, list[float]] = {name: [] for name in prepared}
    for _ in range(rounds):
        for name, (data, expected) in prepared.items():
            spent[name].append(await measure(data, expected))
    medians = {name: statistics.median(values) for name, values in spent.items()}
    for name, value in medians.items():
        print(f"{name:>10}: {value * 1000:7.1f} ms CPU for 16 MiB")
    print(f"fragments / messages: {medians['fragments'] / medians['messages']:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--quick", action="store_true", help="one round (a smoke run)")
    options = parser.parse_args()
    anyio.run(main, 1 if options.quick else options.rounds, backend=options.backend)
