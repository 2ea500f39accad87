"""Routed invocations per second through the embedded engine, with official SDK workers.

    python benchmarks/engine_routing.py [--rounds 3] [--calls 10000] [--quick]

Three processes per measurement: the engine (`python -m anyiii engine`), a callee and a
caller, both written with the official `iii-sdk` (PyPI) so that the engine is the only
anyiii part and therefore the variable. The caller measures sequential calls (1 in flight:
latency percentiles and rate) and 100 concurrent callers (throughput). The engine runs on
asyncio and on trio, interleaved within every round; the report gives medians over rounds
and the trio/asyncio ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass

from _processes import first_line, process

CALLEE = textwrap.dedent(
    """
    import sys, time
    from iii import InitOptions, register_worker

    client = register_worker(sys.argv[1], InitOptions(worker_name="bench-callee"))

    async def add(data):
        return {"c": data["a"] + data["b"]}

    client.register_function("bench::add", add)
    print("READY", flush=True)
    while True:
        time.sleep(3600)
    """
)

CALLER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from iii import InitOptions, register_worker

    client = register_worker(sys.argv[1], InitOptions(worker_name="bench-caller"))
    sequential, concurrent = int(sys.argv[2]), int(sys.argv[3])
    request = {"function_id": "bench::add", "payload": {"a": 2, "b": 3}}

    async def main():
        deadline = time.monotonic() + 20
        while True:  # wait until the callee's registration reached the engine
            try:
                await client.trigger_async(request)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        for _ in range(200):
            await client.trigger_async(request)
        latencies = []
        started = time.perf_counter()
        for _ in range(sequential):
            t = time.perf_counter()
            await client.trigger_async(request)
            latencies.append(time.perf_counter() - t)
        seq_elapsed = time.perf_counter() - started

        async def runner(count):
            for _ in range(count):
                await client.trigger_async(request)

        started = time.perf_counter()
        await asyncio.gather(*(runner(concurrent // 100) for _ in range(100)))
        c100_elapsed = time.perf_counter() - started
        latencies.sort()
        print(json.dumps({
            "seq_rate": sequential / seq_elapsed,
            "p50_us": latencies[len(latencies) // 2] * 1e6,
            "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
            "c100_rate": (concurrent // 100 * 100) / c100_elapsed,
        }), flush=True)

    asyncio.run(main())
    client.shutdown()
    """
)


@dataclass(frozen=True)
class Sample:
    """One measurement of one engine backend."""

    seq_rate: float
    p50_us: float
    p99_us: float
    c100_rate: float


def measure(backend: str, sequential: int, concurrent: int) -> Sample:
    """Start engine, callee and caller; return the caller's figures."""
    engine_cmd = [sys.executable, "-m", "anyiii", "engine", "--port", "0", "--http-port", "0"]
    with process(*engine_cmd, "--backend", backend, "--log-level", "warning") as engine:
        url = first_line(engine, "the engine").split()[3]
        with process(sys.executable, "-c", CALLEE, url) as callee:
            if first_line(callee, "the callee") != "READY":
                sys.exit("the callee did not start")
            caller_cmd = [sys.executable, "-c", CALLER, url, str(sequential), str(concurrent)]
            with process(*caller_cmd) as caller:
                result = json.loads(first_line(caller, "the caller"))
    return Sample(**result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10_000, help="calls in the c100 phase")
    parser.add_argument("--sequential", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="one small round (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls, args.sequential = 1, 1_000, 200
    samples: dict[str, list[Sample]] = {"asyncio": [], "trio": []}
    for round_number in range(args.rounds):
        for backend in samples if round_number % 2 == 0 else reversed(list(samples)):
            started = time.perf_counter()
            sample = measure(backend, args.sequential, args.calls)
            samples[backend].append(sample)
            print(
                f"round {round_number + 1} {backend:7}: seq {sample.seq_rate:8.0f}/s "
                f"p50 {sample.p50_us:6.0f} µs p99 {sample.p99_us:6.0f} µs "
                f"c100 {sample.c100_rate:8.0f}/s ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    print()
    print("| engine backend | 1 in flight (calls/s) | p50 µs | p99 µs | 100 in flight (calls/s) |")
    print("|---|---:|---:|---:|---:|")
    for backend, runs in samples.items():
        print(
            f"| {backend} | {statistics.median(s.seq_rate for s in runs):,.0f} "
            f"| {statistics.median(s.p50_us for s in runs):,.0f} "
            f"| {statistics.median(s.p99_us for s in runs):,.0f} "
            f"| {statistics.median(s.c100_rate for s in runs):,.0f} |"
        )
    ratio = statistics.median(s.c100_rate for s in samples["trio"]) / statistics.median(
        s.c100_rate for s in samples["asyncio"]
    )
    print(f"\ntrio/asyncio engine throughput at 100 in flight: {ratio:.2f}x")


if __name__ == "__main__":
    main()
