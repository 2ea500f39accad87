"""anyiii workers against official `iii-sdk` workers, through the same embedded engine.

    python benchmarks/roundtrip.py [--rounds 3] [--calls 10000] [--quick]
                                   [--baseline REV | --baseline-src DIR]

For each SDK (the official Python `iii-sdk`, anyiii on asyncio, on trio, and on asyncio
with uvloop as a row of its own) a callee
process serves `bench::add` and a caller process measures, in this order: sequential calls
(1 in flight: p50/p99 latency and rate), then throughput with 10 and with 100 calls in
flight. Both workers of a measurement use the same SDK; the engine (`anyiii engine`, one
process for the whole run) is the same for all. The SDKs take turns within every round, in
a rotating order. The report gives medians over rounds, each worker's resident memory
(VmRSS at the end) and, per round, anyiii's ratio to the official SDK.

`--baseline REV` adds anyiii from a git revision (`HEAD`, `HEAD~1`, a branch, a tag, a
commit id; its `src/` is exported to a temporary directory for the run) as two more SDKs in
the same rotation, and reports this checkout's ratios to it: a same-run check that a change
made nothing slower. `--baseline-src DIR` does the same with another source tree's `src`
folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import textwrap
from contextlib import ExitStack

from _processes import THIS_SRC, cpu_seconds, engine_process, first_line, process
from _revisions import exported_revision

_MEASURE = """
async def measure(call, sequential, total):
    import time
    latencies = []
    for _ in range(200):
        await call()
    started = time.perf_counter()
    for _ in range(sequential):
        t = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - t)
    seq_rate = sequential / (time.perf_counter() - started)
    rates = {}
    calls = 200 + sequential
    for in_flight in (10, 100):
        each = total // in_flight
        if in_flight == 100:
            print("c100", flush=True)  # the harness samples the callee's and engine's CPU
        cpu = time.process_time()
        started = time.perf_counter()
        await gather(*(loop(call, each) for _ in range(in_flight)))
        rates[in_flight] = each * in_flight / (time.perf_counter() - started)
        cpu_per_call = (time.process_time() - cpu) / (each * in_flight) * 1e6
        calls += each * in_flight
        if in_flight == 100:
            print("c100 done", flush=True)
    latencies.sort()
    return {
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
        "rate_1": seq_rate, "rate_10": rates[10], "rate_100": rates[100],
        "caller_cpu_us_100": cpu_per_call, "calls": calls, "calls_100": each * 100,
    }

async def loop(call, count):
    for _ in range(count):
        await call()

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
"""

OFFICIAL_CALLEE = textwrap.dedent(
    """
    import sys, time
    from iii import InitOptions, register_worker

    client = register_worker(sys.argv[1], InitOptions(worker_name="bench-callee"))

    async def add(data):
        return {"c": data["a"] + data["b"]}

    client.register_function("bench::add", add)
    print("READY", flush=True)
    sys.stdin.readline()
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            print(line.split()[1], time.process_time(), flush=True)
    """
)

OFFICIAL_CALLER = _MEASURE + textwrap.dedent(
    """
    import asyncio, json, sys, time
    from iii import InitOptions, register_worker

    gather = asyncio.gather
    client = register_worker(sys.argv[1], InitOptions(worker_name="bench-caller"))
    request = {"function_id": "bench::add", "payload": {"a": 2, "b": 3}}

    async def call():
        return await client.trigger_async(request)

    async def main():
        deadline = time.monotonic() + 20
        while True:
            try:
                await call()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        result = await measure(call, int(sys.argv[2]), int(sys.argv[3]))
        result["rss_kib"] = rss_kib()
        print(json.dumps(result), flush=True)

    asyncio.run(main())
    client.shutdown()
    """
)

ANYIII_CALLEE = textwrap.dedent(
    """
    import sys, time
    import anyio
    import anyiii

    async def main():
        async with anyiii.connect(sys.argv[1], worker_name="bench-callee") as worker:

            @worker.function("bench::add")
            async def add(data):
                return {"c": data["a"] + data["b"]}

            print("READY", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                print(line.split()[1], time.process_time(), flush=True)

    uvloop = sys.argv[2] == "uvloop"
    anyio.run(
        main,
        backend="asyncio" if uvloop else sys.argv[2],
        backend_options={"use_uvloop": True} if uvloop else {},
    )
    """
)

ANYIII_CALLER = _MEASURE + textwrap.dedent(
    """
    import json, sys
    import anyio
    import anyiii

    async def gather(*coroutines):
        async with anyio.create_task_group() as tasks:
            for coroutine in coroutines:
                tasks.start_soon(lambda c=coroutine: c)

    async def main():
        async with anyiii.connect(sys.argv[1], worker_name="bench-caller") as worker:
            request = {"function_id": "bench::add", "payload": {"a": 2, "b": 3}}

            async def call():
                return await worker.trigger_async(request)

            with anyio.fail_after(20):
                while True:
                    try:
                        await call()
                        break
                    except anyiii.InvocationError:
                        await anyio.sleep(0.05)
            result = await measure(call, int(sys.argv[2]), int(sys.argv[3]))
            result["rss_kib"] = rss_kib()
            print(json.dumps(result), flush=True)

    uvloop = sys.argv[4] == "uvloop"
    anyio.run(
        main,
        backend="asyncio" if uvloop else sys.argv[4],
        backend_options={"use_uvloop": True} if uvloop else {},
    )
    """
)

SDKS = {
    "official iii-sdk": (OFFICIAL_CALLEE, OFFICIAL_CALLER, []),
    "anyiii asyncio": (ANYIII_CALLEE, ANYIII_CALLER, ["asyncio"]),
    "anyiii trio": (ANYIII_CALLEE, ANYIII_CALLER, ["trio"]),
    "anyiii uvloop": (ANYIII_CALLEE, ANYIII_CALLER, ["uvloop"]),
}
"""`anyiii uvloop` is asyncio on uvloop (the `uvloop` extra): reported as its own row, not
as the headline, which compares the default loops."""
BASELINE = {
    "baseline asyncio": (ANYIII_CALLEE, ANYIII_CALLER, ["asyncio"]),
    "baseline trio": (ANYIII_CALLEE, ANYIII_CALLER, ["trio"]),
}


# An anyiii caller keeping 100 calls in flight for as long as it runs: it prints GO, then
# the number of calls done so far for every line read from stdin (`calls_so_far`).
ANYIII_LOAD = textwrap.dedent(
    """
    import sys
    import anyio
    import anyiii

    done = 0

    async def main():
        async with anyiii.connect(sys.argv[1], worker_name="bench-caller") as worker:
            request = {"function_id": "bench::add", "payload": {"a": 2, "b": 3}}
            with anyio.fail_after(20):
                while True:
                    try:
                        await worker.trigger_async(request)
                        break
                    except anyiii.InvocationError:
                        await anyio.sleep(0.05)

            async def keep_calling():
                global done
                while True:
                    await worker.trigger_async(request)
                    done += 1

            async with anyio.create_task_group() as tasks:
                for _ in range(100):
                    tasks.start_soon(keep_calling)
                print("GO", flush=True)
                while True:
                    await anyio.to_thread.run_sync(sys.stdin.readline)
                    print(done, flush=True)

    uvloop = sys.argv[2] == "uvloop"
    anyio.run(
        main,
        backend="asyncio" if uvloop else sys.argv[2],
        backend_options={"use_uvloop": True} if uvloop else {},
    )
    """
)


def measure(
    url: str,
    engine_pid: int,
    sdk: str,
    sequential: int,
    total: int,
    src: str = THIS_SRC,
) -> dict[str, float]:
    """Run one callee/caller pair of `sdk` against the engine at `url`, with anyiii
    imported from `src`.

    Besides rates and memory, it reports CPU time per call during the 100-in-flight phase,
    for the caller, the callee and the engine (whose share is the same work for every SDK).
    """
    callee_src, caller_src, extra = {**SDKS, **BASELINE}[sdk]
    backend = extra[0] if extra else ""
    callee_args = [sys.executable, "-c", callee_src, url, *([backend] if backend else [])]
    with process(*callee_args, src=src) as callee:
        if first_line(callee, f"the {sdk} callee") != "READY":
            sys.exit(f"the {sdk} callee did not start")
        caller_args = [sys.executable, "-c", caller_src, url, str(sequential), str(total)]
        with process(*caller_args, *extra, src=src) as caller:
            if first_line(caller, f"the {sdk} caller") != "c100":
                sys.exit(f"the {sdk} caller did not reach the 100-in-flight phase")
            before = cpu_seconds(engine_pid), cpu_seconds(callee.pid)
            if first_line(caller, f"the {sdk} caller") != "c100 done":
                sys.exit(f"the {sdk} caller did not finish the 100-in-flight phase")
            after = cpu_seconds(engine_pid), cpu_seconds(callee.pid)
            result: dict[str, float] = json.loads(first_line(caller, f"the {sdk} caller"))
        calls = result["calls_100"]
        result["engine_cpu_us"] = (after[0] - before[0]) / calls * 1e6
        result["callee_cpu_us"] = (after[1] - before[1]) / calls * 1e6
        assert callee.stdin is not None
        callee.stdin.write("\n")
        callee.stdin.flush()
        result["callee_rss_kib"] = float(first_line(callee, f"the {sdk} callee").split()[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=10_000, help="calls per in-flight phase")
    parser.add_argument("--sequential", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="one small round (smoke test)")
    against = parser.add_mutually_exclusive_group()
    against.add_argument(
        "--baseline", metavar="REV", help="a git revision to measure in the same run, for ratios"
    )
    against.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="an anyiii source tree to measure in the same run, for ratios",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls, args.sequential = 1, 1_000, 200
    with ExitStack() as stack:
        baseline = args.baseline_src
        if args.baseline is not None:
            baseline = os.path.join(stack.enter_context(exported_revision(args.baseline)), "src")
        run(args, baseline)


def run(args: argparse.Namespace, baseline: str | None) -> None:
    """Measure every SDK (and the `baseline` src folder's anyiii, if any) and report."""
    sources = dict.fromkeys(SDKS, THIS_SRC)
    if baseline:
        sources.update(dict.fromkeys(BASELINE, baseline))
    runs: dict[str, list[dict[str, float]]] = {sdk: [] for sdk in sources}
    with engine_process() as (url, engine_pid):
        order = list(sources)
        for round_number in range(args.rounds):
            turn = round_number % len(order)
            for sdk in order[turn:] + order[:turn]:
                result = measure(
                    url, engine_pid, sdk, args.sequential, args.calls, src=sources[sdk]
                )
                runs[sdk].append(result)
                print(
                    f"round {round_number + 1} {sdk:16}: p50 {result['p50_us']:6.0f} µs "
                    f"p99 {result['p99_us']:6.0f} µs  1: {result['rate_1']:6.0f}/s  "
                    f"10: {result['rate_10']:6.0f}/s  100: {result['rate_100']:6.0f}/s  "
                    f"CPU µs/call caller {result['caller_cpu_us_100']:4.0f} "
                    f"callee {result['callee_cpu_us']:4.0f} engine {result['engine_cpu_us']:4.0f}",
                    flush=True,
                )
    print()
    print(
        "| SDK | p50 µs (1 in flight) | p99 µs | calls/s, 1 in flight | 10 in flight "
        "| 100 in flight | caller RSS MiB | callee RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for sdk, results in runs.items():

        def med(key: str, rs: list[dict[str, float]] = results) -> float:
            return statistics.median(r[key] for r in rs)

        print(
            f"| {sdk} | {med('p50_us'):,.0f} | {med('p99_us'):,.0f} | {med('rate_1'):,.0f} "
            f"| {med('rate_10'):,.0f} | {med('rate_100'):,.0f} "
            f"| {med('rss_kib') / 1024:.1f} | {med('callee_rss_kib') / 1024:.1f} |"
        )
    print()
    print("| SDK | caller CPU µs/call at 100 in flight | callee CPU µs/call | engine CPU µs/call |")
    print("|---|---:|---:|---:|")
    for sdk, results in runs.items():
        print(
            f"| {sdk} | {statistics.median(r['caller_cpu_us_100'] for r in results):.0f} "
            f"| {statistics.median(r['callee_cpu_us'] for r in results):.0f} "
            f"| {statistics.median(r['engine_cpu_us'] for r in results):.0f} |"
        )
    official = runs["official iii-sdk"]
    for sdk in ("anyiii asyncio", "anyiii trio", "anyiii uvloop"):
        ratios = [
            ours["rate_100"] / theirs["rate_100"]
            for ours, theirs in zip(runs[sdk], official, strict=True)
        ]
        print(
            f"{sdk} / official at 100 in flight: {statistics.median(ratios):.2f}x "
            f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    if baseline:
        report_baseline(runs)


def report_baseline(runs: dict[str, list[dict[str, float]]]) -> None:
    """This checkout against the baseline tree: per-round ratios of throughput at 100 in
    flight and of CPU per call (caller, callee); below 1.0 CPU means cheaper now."""
    for backend in ("asyncio", "trio"):
        ours, base = runs[f"anyiii {backend}"], runs[f"baseline {backend}"]
        for key, what in (
            ("rate_100", "throughput at 100 in flight"),
            ("caller_cpu_us_100", "caller CPU per call"),
            ("callee_cpu_us", "callee CPU per call"),
        ):
            ratios = [o[key] / b[key] for o, b in zip(ours, base, strict=True)]
            print(
                f"{backend}: this / baseline {what}: {statistics.median(ratios):.2f}x "
                f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})"
            )


if __name__ == "__main__":
    main()
