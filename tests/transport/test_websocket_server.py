"""`serve_websockets`: what the embedded engine's listener must do besides moving frames."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
import pytest
from transport_peers import http_exchange, port_of, raw_client, websocket_server
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from anyiii._errors import ConnectError, ConnectionClosed
from anyiii._transport import Transport, open_websocket, serve_websockets

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def echo_once(transport: Transport) -> None:
    await transport.send(await transport.receive())


async def test_rejected_path_gets_404_and_accepted_path_keeps_its_query() -> None:
    paths: list[str] = []

    async def handler(transport: Transport) -> None:
        paths.append(transport.path)
        await echo_once(transport)

    with anyio.fail_after(10):
        async with websocket_server(handler, accept=lambda p: p.startswith("/ok")) as port:
            answer = await http_exchange(port, UPGRADE.format(path="/nope").encode())
            assert answer.startswith(b"HTTP/1.1 404 ")
            with pytest.raises(ConnectError, match="404") as caught:
                async with open_websocket(f"ws://127.0.0.1:{port}/nope"):
                    pass
            assert caught.value.__cause__ is not None
            async with open_websocket(f"ws://127.0.0.1:{port}/ok?key=1") as client:
                await client.send(b"ping")
                assert await client.receive() == b"ping"
    assert paths == ["/ok?key=1"]


async def test_an_unauthorized_upgrade_gets_401_before_the_handler_runs() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def authorize(target: str, headers: Mapping[str, str]) -> bool:
        seen.append((target, dict(headers)))
        return headers.get("x-key") == "yes"

    with anyio.fail_after(10):
        async with websocket_server(echo_once, authorize=authorize) as port:
            answer = await http_exchange(port, UPGRADE.format(path="/in?q=1").encode())
            async with open_websocket(f"ws://127.0.0.1:{port}/", headers={"X-Key": "yes"}) as ok:
                await ok.send(b"ping")
                assert await ok.receive() == b"ping"
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"\r\nWWW-Authenticate: Bearer\r\n" in answer
    assert seen[0][0] == "/in?q=1"
    assert seen[1][1]["x-key"] == "yes"  # header names lower-case


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"426"),  # plain HTTP, no upgrade
        (UPGRADE.replace("GET", "POST").format(path="/").encode(), b"405"),
        (b"NONSENSE\r\n\r\n", b"400"),
    ],
    ids=["plain-get", "post", "garbage"],
)
async def test_requests_that_are_not_websocket_upgrades_get_4xx(
    request_bytes: bytes, status: bytes
) -> None:
    handled = []

    async def handler(transport: Transport) -> None:
        handled.append(transport)  # pragma: no cover - must not happen

    with anyio.fail_after(10):
        async with websocket_server(handler) as port:
            answer = await http_exchange(port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status)
    assert not handled


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
async def test_handshake_not_finished_in_time_drops_the_connection(sent: bytes) -> None:
    async def handler(transport: Transport) -> None:  # pragma: no cover - never reached
        raise AssertionError("no handshake, no handler")

    with anyio.fail_after(5):
        async with websocket_server(handler, handshake_timeout=0.2) as port:
            start = anyio.current_time()
            answer = await http_exchange(port, sent)  # returns when the server hangs up
            assert answer == b""
            assert anyio.current_time() - start >= 0.15


async def test_a_failing_handler_is_logged_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(transport: Transport) -> None:
        if await transport.receive() == b"fail":
            raise KeyError("handler bug")
        await transport.send(b"served")

    caplog.set_level(logging.ERROR, logger="anyiii.transport")
    with anyio.fail_after(10):
        async with websocket_server(handler) as port:
            url = f"ws://127.0.0.1:{port}/"
            async with open_websocket(url) as first:
                await first.send(b"fail")
                with pytest.raises(ConnectionClosed) as caught:
                    await first.receive()
                assert caught.value.code == 1011
            async with open_websocket(url) as second:
                await second.send(b"work")
                assert await second.receive() == b"served"
    failures = [r for r in caplog.records if r.name == "anyiii.transport"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], KeyError)


async def test_compression_is_not_negotiated_even_when_offered() -> None:
    with anyio.fail_after(10):
        async with websocket_server(echo_once) as port:
            peer = await raw_client(port, extensions=[ClientPerMessageDeflateFactory()])
            async with peer.stream:
                assert peer.response is not None
                assert "Sec-WebSocket-Extensions" not in peer.response.headers
                assert peer.protocol.extensions == []
                await peer.send_text(b"plain")
                frame = await peer.next_frame()
                assert frame.data == b"plain"
                assert not frame.rsv1  # rsv1 would mark a compressed frame


async def test_server_side_transport_knows_its_peer_and_headers() -> None:
    seen: list[Transport] = []

    async def handler(transport: Transport) -> None:
        seen.append(transport)
        await echo_once(transport)

    with anyio.fail_after(10):
        async with (
            websocket_server(handler) as port,
            open_websocket(f"ws://127.0.0.1:{port}/") as client,
        ):
            await client.send(b"x")
            await client.receive()
            local = client.remote_address
    (server_side,) = seen
    assert local == f"127.0.0.1:{port}"
    assert server_side.remote_address is not None
    assert server_side.remote_address.startswith("127.0.0.1:")
    assert server_side.request_headers["upgrade"] == "websocket"
    assert "sec-websocket-extensions" not in server_side.request_headers  # we offer none


async def test_cancelling_the_server_closes_connections_with_1001_and_the_listener() -> None:
    async def handler(transport: Transport) -> None:
        await transport.send(b"hello")
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = port_of(listener)
        async with anyio.create_task_group() as tg:
            await tg.start(serve_websockets, listener, handler)
            async with open_websocket(f"ws://127.0.0.1:{port}/") as client:
                assert await client.receive() == b"hello"
                tg.cancel_scope.cancel()
                with pytest.raises(ConnectionClosed) as caught:
                    await client.receive()
                assert caught.value.code == 1001
        with pytest.raises(ConnectError):
            async with open_websocket(f"ws://127.0.0.1:{port}/"):
                pass


# A frame with a 2-byte extended length: a read can end after its first 2 header bytes,
# after the length, after the mask (client frames) or inside the payload.
EARLY_PAYLOAD = b'{"text": "' + b"abcdefghij" * 20 + b'"}'  # 214 bytes of JSON
EARLY_SPLITS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 50]


@pytest.mark.parametrize("split", EARLY_SPLITS)
async def test_a_frame_cut_short_in_the_handshake_read_arrives_whole(split: int) -> None:
    """The client sends its upgrade and the start of a frame in one write, the rest later:
    the server's handshake gives websockets only the request head, so the frame's first
    bytes are not lost to websockets' parser and the message arrives intact."""
    from websockets.frames import Frame, Opcode

    got: list[bytes] = []
    received = anyio.Event()

    async def handler(transport: Transport) -> None:
        got.append(await transport.receive())
        received.set()

    frame = Frame(Opcode.TEXT, EARLY_PAYLOAD).serialize(mask=True)
    with anyio.fail_after(10):
        async with websocket_server(handler) as port:
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(UPGRADE.format(path="/").encode() + frame[:split])
                answer = b""
                while b"\r\n\r\n" not in answer:
                    answer += await stream.receive()
                assert answer.startswith(b"HTTP/1.1 101 ")
                await stream.send(frame[split:])
                await received.wait()
    assert got == [EARLY_PAYLOAD]
