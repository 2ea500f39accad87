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

The server echoes the way the embedded engine answers: the reading task queues replies
with `send_nowait` and a `run_writer` task flushes them (group commit). Rounds alternate
the backends, each with a fresh server; the table shows medians over rounds. Every phase
has a deadline and the server exits on its own after 240 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio
import anyio.abc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from anyiii._errors import ConnectionClosed
from anyiii._transport import Transport, open_websocket, serve_websockets

BACKENDS = ("asyncio", "trio")
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


async def _echo(transport: Transport) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(transport.run_writer)
        try:
            while True:
                transport.send_nowait(await transport.receive())
        except ConnectionClosed:
            pass
        tg.cancel_scope.cancel()


async def _serve() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    print(listener.extra(anyio.abc.SocketAttribute.local_port), flush=True)
    with anyio.move_on_after(SERVER_LIFETIME):
        async with anyio.create_task_group() as tg:
            await tg.start(serve_websockets, listener, _echo)
            # The parent closes our stdin when it is done with us.
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
            tg.cancel_scope.cancel()


# -- client ---------------------------------------------------------------------------------


async def _sequential(transport: Transport, count: int) -> tuple[float, list[float]]:
    latencies = []
    clock = time.perf_counter
    start = clock()
    for _ in range(count):
        sent = clock()
        await transport.send(MESSAGE)
        await transport.receive()
        latencies.append(clock() - sent)
    return clock() - start, latencies


async def _pipelined(transport: Transport, count: int, window: int) -> float:
    slots = anyio.Semaphore(window)

    async def sender() -> None:
        for _ in range(count):
            await slots.acquire()
            await transport.send(MESSAGE)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        for _ in range(count):
            await transport.receive()
            slots.release()
    return time.perf_counter() - start


async def _measure(port: int, seq: int, pipe: int) -> dict[str, float]:
    url = f"ws://127.0.0.1:{port}/"
    async with open_websocket(url, ping_interval=None) as transport:
        with anyio.fail_after(PHASE_DEADLINE):
            await _sequential(transport, min(200, seq))
            elapsed, latencies = await _sequential(transport, seq)
        with anyio.fail_after(PHASE_DEADLINE):
            await _pipelined(transport, min(1000, pipe), 100)
            cpu = time.process_time()
            pipe_elapsed = await _pipelined(transport, pipe, 100)
            cpu = time.process_time() - cpu
    latencies.sort()
    return {
        "seq_rps": seq / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "pipe_fps": pipe / pipe_elapsed,
        "cpu_us_per_frame": cpu / pipe * 1e6,
    }


def _one_round(backend: str, seq: int, pipe: int) -> dict[str, float]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return anyio.run(_measure, port, seq, pipe, backend=backend)
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
    parser.add_argument("--serve", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seq", type=int, default=2000, help="sequential round trips")
    parser.add_argument("--pipe", type=int, default=10000, help="pipelined frames")
    args = parser.parse_args()
    if args.serve:
        _pin(1)
        anyio.run(_serve, backend=args.serve)
        return
    _pin(0)
    results: dict[str, list[dict[str, float]]] = {backend: [] for backend in BACKENDS}
    for round_number in range(1, args.rounds + 1):
        for backend in BACKENDS:
            results[backend].append(_one_round(backend, args.seq, args.pipe))
        print(f"round {round_number}/{args.rounds} done", file=sys.stderr, flush=True)

    columns = [
        ("seq_rps", "seq rt/s", "{:,.0f}"),
        ("p50_us", "p50 µs", "{:.0f}"),
        ("p99_us", "p99 µs", "{:.0f}"),
        ("pipe_fps", "pipe100 frames/s", "{:,.0f}"),
        ("cpu_us_per_frame", "client CPU µs/frame (pipe)", "{:.1f}"),
    ]
    print(
        f"\n175-byte echo, websocket client ⇄ server (2 processes), median of {args.rounds} rounds"
    )
    print("| backend | " + " | ".join(title for _, title, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for backend in BACKENDS:
        cells = [
            fmt.format(statistics.median(r[key] for r in results[backend]))
            for key, _, fmt in columns
        ]
        print(f"| sansio+gc/anyio/{backend} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
