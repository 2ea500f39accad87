"""CPU per call of a forwarding primitive function against a typed function.

    python benchmarks/primitive.py [--rounds 5] [--calls 5000] [--quick]

One process holds an embedded engine, a worker serving a registry and a client, joined by
the in-memory transport. Both functions take the same payload (an object of 20 fields);
the typed one decodes it into a msgspec Struct and returns it, the primitive one forwards
the raw bytes (`Output.raw`) without decoding them. The two take turns, round after
round, on each backend; the report gives the medians and the median of the per-round
ratios (primitive / typed: below 1.0 means the primitive function is cheaper).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio
import msgspec

import anyiii
from anyiii.testing import running_engine


class Record(msgspec.Struct):
    """The payload: 20 fields, as a typed function sees it."""

    f0: int
    f1: str
    f2: float
    f3: list[int]
    f4: int
    f5: str
    f6: float
    f7: list[int]
    f8: int
    f9: str
    f10: float
    f11: list[int]
    f12: int
    f13: str
    f14: float
    f15: list[int]
    f16: int
    f17: str
    f18: float
    f19: list[int]


PAYLOAD: dict[str, Any] = {
    f"f{i}": [i, i + 1][:2]
    if i % 4 == 3
    else (i if i % 4 == 0 else (f"v{i}" if i % 4 == 1 else i + 0.5))
    for i in range(20)
}

bench = anyiii.Registry("bench")


@bench.function(id="bench::typed")
async def typed(record: Record) -> Record:
    return record


@bench.primitive_function(id="bench::primitive")
async def primitive(request: anyiii.Input) -> anyiii.Output:
    return anyiii.Output.raw(bytes(request.payload))


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    """CPU microseconds per call of each function, one sample per round each."""
    samples: dict[str, list[float]] = {"typed": [], "primitive": []}
    async with (
        running_engine(http_port=None) as engine,
        anyiii.connect(
            "ws://memory", transport=engine.memory_transport_opener(), registry=bench
        ) as server,
        anyiii.connect("ws://memory", transport=engine.memory_transport_opener()),
    ):
        await server.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        record = msgspec.convert(PAYLOAD, Record)
        assert msgspec.to_builtins(await typed(record)) == PAYLOAD  # same work, checked
        forwarded = await primitive(PAYLOAD)  # as it arrived: with the engine's caller key
        assert {k: v for k, v in forwarded.items() if k != "_caller_worker_id"} == PAYLOAD
        for round_number in range(rounds):
            order = [("typed", typed, record), ("primitive", primitive, PAYLOAD)]
            for name, function, argument in order[:: 1 if round_number % 2 else -1]:

                async def loop(count: int, f: Any = function, a: Any = argument) -> None:
                    for _ in range(count):
                        await f(a)

                cpu = time.process_time()
                async with anyio.create_task_group() as tasks:
                    for _ in range(10):
                        tasks.start_soon(loop, calls // 10)
                samples[name].append((time.process_time() - cpu) / calls * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true", help="one small round (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 1, 200
    print("| backend | typed CPU µs/call | primitive CPU µs/call | primitive / typed |")
    print("|---|---:|---:|---:|")
    for backend in ("asyncio", "trio"):
        samples = anyio.run(measure, args.calls, args.rounds, backend=backend)
        ratios = [p / t for p, t in zip(samples["primitive"], samples["typed"], strict=True)]
        print(
            f"| {backend} | {statistics.median(samples['typed']):.1f} "
            f"| {statistics.median(samples['primitive']):.1f} "
            f"| {statistics.median(ratios):.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
