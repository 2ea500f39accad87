"""Routed invocations per second through the embedded engine, with official SDK workers.

    python benchmarks/engine_routing.py [--rounds 3] [--calls 10000] [--quick]

Three processes per measurement: the engine (`python -m anyiii engine`), a callee and a
caller, both written with the official `iii-sdk` (PyPI) so that the engine is the only
anyiii part and therefore the variable. The workers and the measurement are those of
`roundtrip.py` for the official SDK: sequential calls (1 in flight: latency percentiles and
rate), then 10 and 100 in flight (throughput). The engine runs on
asyncio and on trio, interleaved within every round; the report gives medians over rounds
and the trio/asyncio ratio of medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _processes import engine_process
from roundtrip import measure as measure_pair


def measure(backend: str, sequential: int, calls: int) -> dict[str, float]:
    """One official callee/caller pair through an engine running on `backend`."""
    with engine_process(backend) as (url, pid):
        return measure_pair(url, pid, "official iii-sdk", sequential, calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10_000, help="calls in the c100 phase")
    parser.add_argument("--sequential", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="one small round (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls, args.sequential = 1, 1_000, 200
    samples: dict[str, list[dict[str, float]]] = {"asyncio": [], "trio": []}
    for round_number in range(args.rounds):
        for backend in samples if round_number % 2 == 0 else reversed(list(samples)):
            started = time.perf_counter()
            sample = measure(backend, args.sequential, args.calls)
            samples[backend].append(sample)
            print(
                f"round {round_number + 1} {backend:7}: seq {sample['rate_1']:8.0f}/s "
                f"p50 {sample['p50_us']:6.0f} µs p99 {sample['p99_us']:6.0f} µs "
                f"c100 {sample['rate_100']:8.0f}/s ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    print()
    print("| engine backend | 1 in flight (calls/s) | p50 µs | p99 µs | 100 in flight (calls/s) |")
    print("|---|---:|---:|---:|---:|")
    for backend, runs in samples.items():
        print(
            f"| {backend} | {statistics.median(s['rate_1'] for s in runs):,.0f} "
            f"| {statistics.median(s['p50_us'] for s in runs):,.0f} "
            f"| {statistics.median(s['p99_us'] for s in runs):,.0f} "
            f"| {statistics.median(s['rate_100'] for s in runs):,.0f} |"
        )
    ratio = statistics.median(s["rate_100"] for s in samples["trio"]) / statistics.median(
        s["rate_100"] for s in samples["asyncio"]
    )
    print(f"\ntrio/asyncio engine throughput at 100 in flight: {ratio:.2f}x")


if __name__ == "__main__":
    main()
