"""Floor programs for `engine_floor.py`: a relay, a caller and a callee that do only what no
Python implementation of the protocol can skip.

    python benchmarks/_floor.py relay  asyncio|anyio [--backend asyncio|trio]
    python benchmarks/_floor.py caller asyncio|anyio URL [--backend asyncio|trio]
    python benchmarks/_floor.py callee asyncio|anyio URL [--backend asyncio|trio]

Each does the WebSocket upgrade, splits and (un)masks frames, decodes and encodes messages
with the SDK's msgspec frame types, and routes with one dictionary lookup. Nothing else: no
protocol state, no validation beyond the decoder's, no timeouts, no backpressure, no
cleanup when a peer leaves, no context per invocation. They are measuring sticks, not
programs to use.

Two flavours, the same work:

* `asyncio`: asyncio `Protocol` callbacks and futures, no tasks but the caller's 100: the
  least the interpreter can do per message;
* `anyio`: what the SDK is allowed to use (library code may import anyio only): byte
  streams, one reader task and one writer task per link, an `anyio.Event` per call.

The relay prints "floor relay: workers ws://HOST:PORT"; the callee prints READY once its
function is registered; the caller prints GO once a call has gone through, then the number
of calls done so far for every line read from stdin (as `chain_profile.py`'s load does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc

from _floor_wire import (
    FUNCTION,
    Framing,
    Router,
    accept_response,
    answer_invocation,
    call_frame,
    result_of,
    upgrade_request,
)
from anyiii._protocol.frames import (
    InvocationResult,
    RegisterFunction,
    WorkerRegistered,
    encode_frame,
    to_raw,
)
from anyiii._protocol.ids import InvocationIds

# --- asyncio flavour -------------------------------------------------------------------------


class AsyncioLink(asyncio.Protocol):
    """One WebSocket link as asyncio callbacks; each loop turn's sends leave in one write."""

    def __init__(self, *, client: bool, on_message: Callable[[AsyncioLink, bytes], None]):
        self.framing = Framing(client=client)
        self.on_message = on_message
        self.open = asyncio.get_running_loop().create_future()
        self.out: list[bytes] = []
        self.head = bytearray()
        self.worker_id = os.urandom(16).hex()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        if self.framing.client:
            self.transport.write(upgrade_request())

    def send(self, message: bytes) -> None:
        if not self.out:
            asyncio.get_running_loop().call_soon(self.flush)
        self.out.append(self.framing.frame(message))

    def flush(self) -> None:
        out, self.out = self.out, []
        self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.framing.client:
                self.transport.write(accept_response(bytes(self.head[:end])))
            data = bytes(self.head[end + 4 :])
            self.open.set_result(None)
            if not self.framing.client:
                self.send(encode_frame(WorkerRegistered(worker_id=self.worker_id)))
        for message in self.framing.split(data):
            self.on_message(self, message)


async def asyncio_connect(url: str, on_message: Callable[[Any, bytes], None]) -> AsyncioLink:
    parts = urlsplit(url)
    _, link = await asyncio.get_running_loop().create_connection(
        lambda: AsyncioLink(client=True, on_message=on_message), parts.hostname, parts.port
    )
    await link.open
    return link


async def asyncio_relay() -> None:
    router = Router()
    server = await asyncio.get_running_loop().create_server(
        lambda: AsyncioLink(client=False, on_message=router.on_message), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"floor relay: workers ws://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


async def asyncio_callee(url: str) -> None:
    def on_message(link: AsyncioLink, data: bytes) -> None:
        answer = answer_invocation(data)
        if answer is not None:
            link.send(answer)

    link = await asyncio_connect(url, on_message)
    link.send(encode_frame(RegisterFunction(id=FUNCTION)))
    print("READY", flush=True)
    await asyncio.to_thread(sys.stdin.readline)


async def asyncio_caller(url: str) -> None:
    waiting: dict[str, asyncio.Future[InvocationResult]] = {}
    loop = asyncio.get_running_loop()
    done = 0

    def on_message(link: AsyncioLink, data: bytes) -> None:
        result = result_of(data)
        if result is not None:
            future = waiting.pop(result.invocation_id, None)
            if future is not None:
                future.set_result(result)

    link = await asyncio_connect(url, on_message)
    new_id, data = InvocationIds(), to_raw({"a": 2, "b": 3})

    async def call() -> InvocationResult:
        invocation_id, frame = call_frame(new_id, data)
        future = waiting[invocation_id] = loop.create_future()
        link.send(frame)
        return await future

    for _ in range(400):  # until the callee's function is registered
        if (await call()).error is None:
            break
        await asyncio.sleep(0.05)

    async def keep_calling() -> None:
        nonlocal done
        while True:
            await call()
            done += 1

    tasks = [asyncio.create_task(keep_calling()) for _ in range(100)]
    print("GO", flush=True)
    while True:
        await asyncio.to_thread(sys.stdin.readline)
        print(done, flush=True)
    del tasks


# --- anyio flavour ---------------------------------------------------------------------------


class AnyioLink:
    """One WebSocket link over an anyio byte stream: a reader task and a writer task."""

    def __init__(self, stream: anyio.abc.ByteStream, *, client: bool) -> None:
        self.stream = stream
        self.framing = Framing(client=client)
        self.out: list[bytes] = []
        self.wakeup: anyio.Event | None = None
        self.worker_id = os.urandom(16).hex()

    def send(self, message: bytes) -> None:
        self.out.append(self.framing.frame(message))
        wakeup, self.wakeup = self.wakeup, None
        if wakeup is not None:
            wakeup.set()

    async def write_forever(self) -> None:
        while True:
            if not self.out:
                self.wakeup = anyio.Event()
                await self.wakeup.wait()
                continue
            out, self.out = self.out, []
            await self.stream.send(b"".join(out))

    async def read_forever(self, rest: bytes, on_message: Callable[[Any, bytes], None]) -> None:
        data = rest
        while True:
            for message in self.framing.split(data):
                on_message(self, message)
            data = await self.stream.receive()


async def read_head(stream: anyio.abc.ByteStream) -> tuple[bytes, bytes]:
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive()
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest


async def anyio_connect(
    url: str, tasks: anyio.abc.TaskGroup, on_message: Callable[[Any, bytes], None]
) -> AnyioLink:
    parts = urlsplit(url)
    stream = await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80)
    await stream.send(upgrade_request())
    _, rest = await read_head(stream)
    link = AnyioLink(stream, client=True)
    tasks.start_soon(link.write_forever)
    tasks.start_soon(link.read_forever, rest, on_message)
    return link


async def anyio_relay() -> None:
    router = Router()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        head, rest = await read_head(stream)
        await stream.send(accept_response(head))
        link = AnyioLink(stream, client=False)
        link.send(encode_frame(WorkerRegistered(worker_id=link.worker_id)))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(link.write_forever)
            await link.read_forever(rest, router.on_message)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    print(f"floor relay: workers ws://127.0.0.1:{port}", flush=True)
    await listener.serve(serve)


class TransportLink:
    """The floor routing's view of one of anyiii's own server transports."""

    def __init__(self, transport: Any) -> None:
        self.send = transport.send_nowait
        self.worker_id = os.urandom(16).hex()


async def transport_relay() -> None:
    """The floor's routing on anyiii's WebSocket server transport (`serve_websockets`,
    `receive_some`, `send_nowait` and the writer task): what the transport costs without
    the engine's router."""
    from anyiii._transport.websocket_server import serve_websockets

    router = Router()

    async def serve(transport: Any) -> None:
        link = TransportLink(transport)
        link.send(encode_frame(WorkerRegistered(worker_id=link.worker_id)))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(transport.run_writer)
            while True:
                for message in await transport.receive_some():
                    router.on_message(link, message)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    print(f"floor relay: workers ws://127.0.0.1:{port}", flush=True)
    await serve_websockets(listener, serve)


async def anyio_callee(url: str) -> None:
    def on_message(link: AnyioLink, data: bytes) -> None:
        answer = answer_invocation(data)
        if answer is not None:
            link.send(answer)

    async with anyio.create_task_group() as tasks:
        link = await anyio_connect(url, tasks, on_message)
        link.send(encode_frame(RegisterFunction(id=FUNCTION)))
        print("READY", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        tasks.cancel_scope.cancel()


async def anyio_caller(url: str) -> None:
    waiting: dict[str, list[Any]] = {}
    done = 0

    def on_message(link: AnyioLink, data: bytes) -> None:
        result = result_of(data)
        if result is not None:
            slot = waiting.pop(result.invocation_id, None)
            if slot is not None:
                slot.append(result)
                slot[0].set()

    async with anyio.create_task_group() as tasks:
        link = await anyio_connect(url, tasks, on_message)
        new_id, data = InvocationIds(), to_raw({"a": 2, "b": 3})

        async def call() -> InvocationResult:
            invocation_id, frame = call_frame(new_id, data)
            slot: list[Any] = [anyio.Event()]
            waiting[invocation_id] = slot
            link.send(frame)
            await slot[0].wait()
            result: InvocationResult = slot[1]
            return result

        for _ in range(400):  # until the callee's function is registered
            if (await call()).error is None:
                break
            await anyio.sleep(0.05)

        async def keep_calling() -> None:
            nonlocal done
            while True:
                await call()
                done += 1

        for _ in range(100):
            tasks.start_soon(keep_calling)
        print("GO", flush=True)
        while True:
            await anyio.to_thread.run_sync(sys.stdin.readline)
            print(done, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("relay", "caller", "callee"))
    parser.add_argument("flavour", choices=("asyncio", "anyio", "transport"))
    parser.add_argument("url", nargs="?")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    if args.flavour == "transport":  # a relay only: the floor's routing on anyiii's transport
        anyio.run(transport_relay, backend=args.backend)
    elif args.flavour == "asyncio":
        program = {"relay": asyncio_relay, "caller": asyncio_caller, "callee": asyncio_callee}
        asyncio.run(program[args.role](*([] if args.role == "relay" else [args.url])))
    else:
        program = {"relay": anyio_relay, "caller": anyio_caller, "callee": anyio_callee}
        anyio.run(
            program[args.role], *([] if args.role == "relay" else [args.url]), backend=args.backend
        )


if __name__ == "__main__":
    main()
