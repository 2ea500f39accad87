"""Echo micro-benchmark of the default transport (websockets Sans-I/O over anyio).

    python benchmarks/transport_echo.py [--rounds 5] [--seq 2000] [--pipe 10000]

A 175-byte JSON text message goes client → server → client. The client is this process;
the server is a subprocess started per measurement (`--serve BACKEND`), on 127.0.0.1 with
an ephemeral port, running the same backend as the client. When the machine has two or
more CPUs, the client is pinned to CPU 0 and the server to CPU 1, as in the design
notes' transport-measurements.md, so the numbers can be compared with its
"sansio+gc/anyio" rows.

Phases, each after a warm-up:

* `seq`: one message in flight; round trips per second, p50 and p99 latency;
* `pipe100`: a sender keeps 100 messages in flight (window semaphore) while a receiver
  drains; frames per second, and the client's CPU time per frame.

The anyiii server echoes the way the embedded engine answers: the reading task queues
replies with `send_nowait` and a `run_writer` task flushes them (group commit), which
batches writes under load at the price of one task hop per reply. `--echo direct` makes
it `await send()` each reply instead, like the sketch in transport-measurements.md.

As a yardstick measured in the same rounds, the same phases also run over websockets' own
I/O layer for the backend (`websockets.asyncio` or `websockets.trio`, compression off) on
both sides; the ratio columns are anyiii over that, per round, then the median. Absolute
numbers move with the machine's load; the ratios carry over. Every round runs every
configuration once, in turn, with a fresh server; the table shows medians over rounds.
Every phase has a deadline and a server exits on its own after 240 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from anyiii._errors import ConnectionClosed
from anyiii._transport import Transport, open_websocket, serve_websockets

BACKENDS = ("asyncio", "trio")
STACKS = ("anyiii", "ws")
_TEMPLATE = (
    b'{"type":"invokefunction","invocation_id":"8c1f2b4e-0d8a-4e57-9f0e-2b7c1d9a6e31",'
    b'"function_id":"math::add","data":{"a":1,"b":2},"pad":"%s"}'
)
MESSAGE = _TEMPLATE % (b"x" * (175 - len(_TEMPLATE) + 2))  # a 175-byte invoke-like frame
assert len(MESSAGE) == 175
PHASE_DEADLINE = 60.0
SERVER_LIFETIME = 240.0


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


# -- server (subprocess) --------------------------------------------------------------------


async def _echo_direct(transport: Transport) -> None:
    try:
        while True:
            await transport.send(await transport.receive())
    except ConnectionClosed:
        pass


async def _echo(transport: Transport) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(transport.run_writer)
        try:
            while True:
                transport.send_nowait(await transport.receive())
        except ConnectionClosed:
            pass
        tg.cancel_scope.cancel()


async def _ws_echo(connection: Any) -> None:
    async for message in connection:
        await connection.send(message)


async def _serve(stack: str, backend: str, echo: str) -> None:
    with anyio.move_on_after(SERVER_LIFETIME):
        async with anyio.create_task_group() as tg:
            if stack == "anyiii":
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
                handler = _echo if echo == "engine" else _echo_direct
                await tg.start(serve_websockets, listener, handler)
            elif backend == "asyncio":
                from websockets.asyncio.server import serve

                server = await serve(_ws_echo, "127.0.0.1", 0, compression=None, ping_interval=None)
                port = next(iter(server.sockets)).getsockname()[1]
                tg.start_soon(server.serve_forever)
            else:
                import trio
                from websockets.trio.server import serve as trio_serve

                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                port = listeners[0].socket.getsockname()[1]
                tg.start_soon(
                    lambda: trio_serve(
                        _ws_echo, listeners=listeners, compression=None, ping_interval=None
                    )
                )
            print(port, flush=True)
            # The parent closes our stdin when it is done with us.
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
            tg.cancel_scope.cancel()


# -- client ---------------------------------------------------------------------------------


Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[Any]]


@asynccontextmanager
async def _client(stack: str, backend: str, url: str) -> AsyncIterator[tuple[Send, Receive]]:
    if stack == "anyiii":
        async with open_websocket(url, ping_interval=None) as transport:
            yield transport.send, transport.receive
        return
    if backend == "asyncio":
        from websockets.asyncio.client import connect
    else:
        from websockets.trio.client import connect  # type: ignore[assignment]
    async with connect(url, compression=None, ping_interval=None) as connection:
        yield connection.send, lambda: connection.recv(decode=False)


async def _sequential(send: Send, receive: Receive, count: int) -> tuple[float, list[float]]:
    latencies = []
    clock = time.perf_counter
    start = clock()
    for _ in range(count):
        sent = clock()
        await send(MESSAGE)
        await receive()
        latencies.append(clock() - sent)
    return clock() - start, latencies


async def _pipelined(send: Send, receive: Receive, count: int, window: int) -> float:
    slots = anyio.Semaphore(window)

    async def sender() -> None:
        for _ in range(count):
            await slots.acquire()
            await send(MESSAGE)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        for _ in range(count):
            await receive()
            slots.release()
    return time.perf_counter() - start


async def _measure(stack: str, backend: str, port: int, seq: int, pipe: int) -> dict[str, float]:
    async with _client(stack, backend, f"ws://127.0.0.1:{port}/") as (send, receive):
        with anyio.fail_after(PHASE_DEADLINE):
            await _sequential(send, receive, min(200, seq))
            elapsed, latencies = await _sequential(send, receive, seq)
        with anyio.fail_after(PHASE_DEADLINE):
            await _pipelined(send, receive, min(1000, pipe), 100)
            cpu = time.process_time()
            pipe_elapsed = await _pipelined(send, receive, pipe, 100)
            cpu = time.process_time() - cpu
    latencies.sort()
    return {
        "seq_rps": seq / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "pipe_fps": pipe / pipe_elapsed,
        "cpu_us_per_frame": cpu / pipe * 1e6,
    }


def _one_round(stack: str, backend: str, echo: str, seq: int, pipe: int) -> dict[str, float]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", stack, backend, "--echo", echo],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return anyio.run(_measure, stack, backend, port, seq, pipe, backend=backend)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", nargs=2, metavar=("STACK", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seq", type=int, default=2000, help="sequential round trips")
    parser.add_argument("--pipe", type=int, default=10000, help="pipelined frames")
    parser.add_argument(
        "--echo",
        choices=("engine", "direct"),
        default="engine",
        help="anyiii server: send_nowait + run_writer like the engine, or await send()",
    )
    args = parser.parse_args()
    if args.serve:
        stack, backend = args.serve
        _pin(1)
        anyio.run(_serve, stack, backend, args.echo, backend=backend)
        return
    _pin(0)
    configs = [(stack, backend) for backend in BACKENDS for stack in STACKS]
    results: dict[tuple[str, str], list[dict[str, float]]] = {c: [] for c in configs}
    for round_number in range(1, args.rounds + 1):
        for stack, backend in configs:
            result = _one_round(stack, backend, args.echo, args.seq, args.pipe)
            results[stack, backend].append(result)
        print(f"round {round_number}/{args.rounds} done", file=sys.stderr, flush=True)
    _print_table(results, args.rounds)


def _print_table(results: dict[tuple[str, str], list[dict[str, float]]], rounds: int) -> None:
    columns = [
        ("seq_rps", "seq rt/s", "{:,.0f}"),
        ("p50_us", "p50 µs", "{:.0f}"),
        ("p99_us", "p99 µs", "{:.0f}"),
        ("pipe_fps", "pipe100 frames/s", "{:,.0f}"),
        ("cpu_us_per_frame", "client CPU µs/frame (pipe)", "{:.1f}"),
    ]
    names = {"anyiii": "anyiii sansio+gc", "ws": "websockets' own"}
    print(
        f"\n175-byte echo, client ⇄ server in two processes, median of {rounds} rounds; "
        "ratios are anyiii / websockets' own layer, per round"
    )
    print("| stack | " + " | ".join(t for _, t, _ in columns) + " | seq ratio | pipe ratio |")
    print("|---|" + "---:|" * (len(columns) + 2))
    for backend in BACKENDS:
        ours, theirs = results["anyiii", backend], results["ws", backend]
        for stack in STACKS:
            rows = results[stack, backend]
            cells = [fmt.format(statistics.median(r[key] for r in rows)) for key, _, fmt in columns]
            if stack == "anyiii":
                for key in ("seq_rps", "pipe_fps"):
                    ratio = statistics.median(
                        a[key] / b[key] for a, b in zip(ours, theirs, strict=True)
                    )
                    cells.append(f"{ratio:.2f}x")
            else:
                cells += ["", ""]
            print(f"| {names[stack]} / {backend} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
