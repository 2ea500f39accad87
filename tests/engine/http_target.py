"""A local HTTP server for the tests of HTTP-invoked functions: anyio sockets and h11.

`target_server(respond)` listens on 127.0.0.1, port 0, for the length of an `async with`
block, keeps every request it receives (method, target, headers, body) in `requests`, and
answers each with whatever `respond(request)` returns (a `Reply`): a status, a body, and
optionally a body cut short by a closed connection. `respond` may wait as long as it likes
(a slow endpoint); leaving the block cancels it. Connections are kept alive, as a real
server's are, so the engine's pooled client is exercised too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import h11


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it (header names in lower case)."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The only value of header `name` (fails if it was sent more than once)."""
        values = self.all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """What the server answers: `cut_at` sends only that many body bytes, then closes."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    cut_at: int | None = None

    @classmethod
    def of(cls, value: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(value).encode())


Responder = Callable[[Recorded], Awaitable[Reply]]


async def echo_json(request: Recorded) -> Reply:
    """The default responder: `{"echo": <the request's JSON body>}`."""
    return Reply.of({"echo": request.json()})


@dataclass(eq=False)
class TargetServer:
    url: str
    respond: Responder
    requests: list[Recorded] = field(default_factory=list)
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    async def wait_for_requests(self, count: int) -> list[Recorded]:
        """Wait until `count` requests have arrived; returns them all."""
        while len(self.requests) < count:
            if self._arrived.is_set():
                self._arrived = anyio.Event()
            await self._arrived.wait()
        return self.requests

    async def _serve(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            connection = h11.Connection(h11.SERVER)
            while True:
                request = await _read_request(connection, stream)
                if request is None:
                    return
                self.requests.append(request)
                self._arrived.set()
                reply = await self.respond(request)
                if not await _send_reply(connection, stream, reply):
                    return
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()


async def _read_request(
    connection: h11.Connection, stream: anyio.abc.ByteStream
) -> Recorded | None:
    head: h11.Request | None = None
    body = b""
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:  # the client went away mid-request
            return None
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            connection.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            headers = [(k.decode().lower(), v.decode()) for k, v in head.headers]
            return Recorded(head.method.decode(), head.target.decode(), headers, body)
        else:  # ConnectionClosed, or a request cut off: nothing more to serve
            return None


async def _send_reply(
    connection: h11.Connection, stream: anyio.abc.ByteStream, reply: Reply
) -> bool:
    """Send the reply; False when the connection must end (a cut body)."""
    headers = [("content-type", reply.content_type), ("content-length", str(len(reply.body)))]
    data = connection.send(h11.Response(status_code=reply.status, headers=headers))
    try:
        if reply.cut_at is not None:
            await stream.send(data + reply.body[: reply.cut_at])
            return False
        data += connection.send(h11.Data(data=reply.body)) if reply.body else b""
        data += connection.send(h11.EndOfMessage())
        await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False
    return True


@asynccontextmanager
async def target_server(respond: Responder = echo_json) -> AsyncIterator[TargetServer]:
    """Serve on 127.0.0.1 (a free port) for the block; see the module docstring."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = TargetServer(f"http://127.0.0.1:{port}", respond)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, server._serve)
        try:
            yield server
        finally:
            tasks.cancel_scope.cancel()
