"""The clients (`open_websocket`, `open_httpx_websocket`): connecting, failing to, keepalive."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from transport_peers import (
    http_responder,
    opener,
    port_of,
    read_request_head,
    websocket_server,
    wire_under_test,
)
from websockets.frames import Close, Opcode

from anyiii._errors import ConnectError, ConnectionClosed
from anyiii._transport import Transport

pytestmark = pytest.mark.parametrize("kind", ["websocket", "httpx"])


def connect(kind: str) -> Callable[..., Any]:
    return opener(kind)


async def echo(transport: Transport) -> None:
    try:
        while True:
            await transport.send(await transport.receive())
    except ConnectionClosed:
        pass


async def test_refused_port_raises_connect_error_with_its_cause(kind: str) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = port_of(listener)
    await listener.aclose()  # nothing listens there any more
    with anyio.fail_after(10), pytest.raises(ConnectError) as caught:
        async with connect(kind)(f"ws://127.0.0.1:{port}/"):
            pass  # pragma: no cover
    assert caught.value.__cause__ is not None


async def test_http_403_answer_raises_connect_error_naming_the_status(kind: str) -> None:
    answer = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with anyio.fail_after(10):
        async with http_responder(answer) as port:
            with pytest.raises(ConnectError, match="403") as caught:
                async with connect(kind)(f"ws://127.0.0.1:{port}/"):
                    pass  # pragma: no cover
    assert caught.value.__cause__ is not None


async def test_server_that_never_answers_times_out_as_connect_error(kind: str) -> None:
    with anyio.fail_after(10):
        async with http_responder(None) as port:
            start = anyio.current_time()
            with pytest.raises(ConnectError, match="timed out") as caught:
                async with connect(kind)(f"ws://127.0.0.1:{port}/", open_timeout=0.2):
                    pass  # pragma: no cover
            assert anyio.current_time() - start < 2
    assert isinstance(caught.value.__cause__, TimeoutError)


@pytest.mark.parametrize("url", ["not a url", "ws://"])
async def test_invalid_url_raises_connect_error(kind: str, url: str) -> None:
    with anyio.fail_after(10), pytest.raises(ConnectError):
        async with connect(kind)(url):
            pass  # pragma: no cover


@pytest.mark.parametrize("as_list", [False, True], ids=["mapping", "pairs"])
async def test_custom_headers_arrive_at_the_server(kind: str, as_list: bool) -> None:
    seen: list[Transport] = []

    async def handler(transport: Transport) -> None:
        seen.append(transport)
        await echo(transport)

    headers: Any = {"Authorization": "Bearer s3cret", "X-Worker-Name": "adder"}
    if as_list:
        headers = [*headers.items(), ("X-Tag", "a"), ("X-Tag", "b")]
    with anyio.fail_after(10):
        async with websocket_server(handler) as port:
            url = f"ws://127.0.0.1:{port}/path?q=1"
            async with connect(kind)(url, headers=headers) as client:
                await client.send(b"hi")
                assert await client.receive() == b"hi"
                assert client.path == "/"
                assert client.request_headers == {}
    (server_side,) = seen
    assert server_side.path == "/path?q=1"
    assert server_side.request_headers["authorization"] == "Bearer s3cret"
    assert server_side.request_headers["x-worker-name"] == "adder"
    if as_list:
        assert server_side.request_headers["x-tag"] == "a, b"


async def test_exception_from_the_block_propagates_unwrapped(kind: str) -> None:
    with anyio.fail_after(10):
        async with websocket_server(echo) as port:
            url = f"ws://127.0.0.1:{port}/"
            with pytest.raises(KeyError):
                async with connect(kind)(url, ping_interval=0.05):
                    raise KeyError("user bug")

            async def receive_after_close() -> None:
                async with connect(kind)(url) as client:
                    await client.aclose(4000)
                    await client.receive()

            with pytest.raises(ConnectionClosed):  # our own error type, not a group
                await receive_after_close()


async def test_cancelling_the_block_closes_cleanly(kind: str) -> None:
    with anyio.fail_after(10):
        async with websocket_server(echo) as port:
            with anyio.CancelScope() as scope:
                async with connect(kind)(f"ws://127.0.0.1:{port}/", ping_interval=0.05) as t:
                    scope.cancel()
                    await anyio.sleep_forever()
            assert scope.cancelled_caught
            assert t.closed
            assert t.close_code == 1001


async def test_wss_against_a_local_tls_server(kind: str) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with anyio.fail_after(10):
        async with websocket_server(echo, ssl_context=server_context) as port:
            url = f"wss://127.0.0.1:{port}/"
            if kind == "websocket":
                session = connect(kind)(url, ssl_context=client_context)
                async with session as client:
                    await client.send(b"secret")
                    assert await client.receive() == b"secret"
            else:
                async with (
                    httpx.AsyncClient(verify=client_context) as http_client,
                    connect(kind)(url, http_client=http_client) as client,
                ):
                    await client.send(b"secret")
                    assert await client.receive() == b"secret"
            # Without trusting the CA, the handshake fails as a ConnectError.
            with pytest.raises(ConnectError):
                async with connect(kind)(url):
                    pass  # pragma: no cover


async def test_keepalive_fails_a_silent_peer_with_1011(kind: str) -> None:
    # Real sockets: trio's autojump clock would jump over the socket waits, so these are
    # small real timeouts, bounded by fail_after.
    with anyio.fail_after(5):
        options = {"ping_interval": 0.05, "ping_timeout": 0.1}
        async with wire_under_test(f"{kind}-client", **options) as (transport, peer):
            with pytest.raises(ConnectionClosed) as caught:
                await transport.receive()  # the peer never reads, so never answers
            assert caught.value.code == 1011
            assert transport.close_code == 1011
            frames = []
            while not frames or frames[-1].opcode is not Opcode.CLOSE:
                frames.append(await peer.next_frame())
            assert {f.opcode for f in frames[:-1]} == {Opcode.PING}
            assert Close.parse(frames[-1].data).code == 1011


async def test_keepalive_keeps_a_responsive_connection_open(kind: str) -> None:
    with anyio.fail_after(5):
        options = {"ping_interval": 0.02, "ping_timeout": 2.0}
        async with wire_under_test(f"{kind}-client", **options) as (transport, peer):
            got: list[bytes] = []

            async def reader() -> None:  # pongs are read by whoever receives
                got.append(await transport.receive())

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                pings = 0
                while pings < 3:  # the raw peer answers each one as it reads it
                    if (await peer.next_frame()).opcode is Opcode.PING:
                        pings += 1
                await peer.send_text(b"still here")
            assert got == [b"still here"]
            assert not transport.closed


async def test_keepalive_works_while_the_application_is_not_receiving(kind: str) -> None:
    # Nobody calls receive(): the keepalive task reads the pong itself, and keeps any
    # message it reads on the way for the next receive().
    with anyio.fail_after(5):
        options = {"ping_interval": 0.02, "ping_timeout": 1.0}
        async with wire_under_test(f"{kind}-client", **options) as (transport, peer):
            await peer.send_text(b"early")
            pings = 0
            while pings < 3:
                if (await peer.next_frame()).opcode is Opcode.PING:
                    pings += 1
            assert not transport.closed
            assert await transport.receive() == b"early"


async def test_keepalive_does_not_read_ahead_without_bound(kind: str) -> None:
    # The application stopped consuming: past its read-ahead limit the keepalive leaves
    # the pong unread, so the ping fails, as with websockets' full queue. What was read
    # is still delivered before the close is reported.
    with anyio.fail_after(5):
        options = {"ping_interval": 0.05, "ping_timeout": 0.1}
        async with wire_under_test(f"{kind}-client", **options) as (transport, peer):
            for n in range(40):
                peer.protocol.send_text(b"%d" % n)
            await peer.stream.send(b"".join(peer.protocol.data_to_send()))  # one write
            # The raw peer answers every ping it reads; the client, not receiving, gives up.
            frames = [await peer.next_frame()]
            while frames[-1].opcode is not Opcode.CLOSE:
                frames.append(await peer.next_frame())
            assert Close.parse(frames[-1].data).code == 1011
            assert transport.close_code == 1011
            got = [await transport.receive() for _ in range(40)]
            assert got == [b"%d" % n for n in range(40)]
            with pytest.raises(ConnectionClosed) as caught:
                await transport.receive()
            assert caught.value.code == 1011


EARLY_PAYLOAD = b'{"text": "' + b"abcdefghij" * 20 + b'"}'  # 214 bytes of JSON


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5, 50])
async def test_a_frame_cut_short_in_the_handshake_read_arrives_whole(kind: str, split: int) -> None:
    """The server answers 101 and the start of a frame in one write, the rest once the
    client is connected: the client gives websockets only the response head, so the frame
    arrives intact (with websockets holding the first bytes, the two parsers disagreed)."""
    from websockets.frames import Frame, Opcode
    from websockets.utils import accept_key

    frame = Frame(Opcode.TEXT, EARLY_PAYLOAD).serialize(mask=False)
    connected = anyio.Event()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            head = await read_request_head(stream)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            response = (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key.decode())}\r\n\r\n"
            )
            await stream.send(response.encode() + frame[:split])
            await connected.wait()
            await stream.send(frame[split:])
            with contextlib.suppress(anyio.EndOfStream):
                await stream.receive()  # the client's close frame: hang up

    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve, tg)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with opener(kind)(f"ws://127.0.0.1:{port}/", ping_interval=None) as client:
                connected.set()
                assert await client.receive() == EARLY_PAYLOAD
            tg.cancel_scope.cancel()
