"""The default client transport when frames come in the same read as the handshake answer,
and the status of a refused upgrade.

A channel's data plane (spec §12) often answers a reader with the whole stream at once:
the 101, every item and the close frame in one write. The client must still answer that
close (the echo is queued with the early frames and written before the closing handshake
waits), or the server waits for it, the client waits for the server to hang up, and
both sit out their close timeouts.
"""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from transport_peers import accept_handshake, http_responder, port_of
from websockets.frames import Opcode

from anyiii._errors import ConnectError, ConnectionClosed
from anyiii._transport import BinaryMessage, TransportLimits, connect_websocket


async def test_a_close_that_comes_with_the_handshake_is_answered_at_once() -> None:
    echoed = anyio.Event()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            protocol = await accept_handshake(stream)
            protocol.send_binary(b"data")
            protocol.send_close(1000, "done")
            await stream.send(b"".join(protocol.data_to_send()))  # all of it in one write
            while not echoed.is_set():
                protocol.receive_data(await stream.receive())
                for event in protocol.events_received():
                    if getattr(event, "opcode", None) is Opcode.CLOSE:
                        echoed.set()

    limits = TransportLimits(close_timeout=30)  # a missing echo would cost all of that
    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tasks:
            tasks.start_soon(listener.serve, serve, tasks)
            url = f"ws://127.0.0.1:{port_of(listener)}/"
            transport = await connect_websocket(url, limits=limits)
            message = await transport.receive()
            started = anyio.current_time()
            with pytest.raises(ConnectionClosed) as closed:
                await transport.receive()
            await transport.aclose()
            elapsed = anyio.current_time() - started
            tasks.cancel_scope.cancel()
    assert (closed.value.code, closed.value.reason) == (1000, "done")
    assert type(message) is BinaryMessage
    assert message == b"data"
    assert echoed.is_set()
    assert elapsed < 5, f"the close took {elapsed:.1f} s"
    assert transport.close_code == 1000


async def test_a_refused_upgrade_says_its_http_status() -> None:
    answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with anyio.fail_after(5):
        async with http_responder(answer) as port:
            with pytest.raises(ConnectError, match="HTTP 404") as refused:
                await connect_websocket(f"ws://127.0.0.1:{port}/ws/channels/x?key=y&dir=read")
    assert refused.value.status == 404
