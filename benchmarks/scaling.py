"""How cost grows with load: calls in flight, payload size, engine size, memory.

    python benchmarks/scaling.py [--rounds 3] [--series a,b,c,d] [--quick] [--out DIR]
                                 [--no-charts] [--charts] [--engine-backend asyncio|trio]

Engine (`anyiii engine`), callee and caller are separate processes talking over real
sockets on 127.0.0.1, as in `roundtrip.py`. Four series:

* **a, calls in flight**: a caller keeps 1, 10, 100, 1,000 and 10,000 calls to an echo
  function (100-byte payload) in flight, for the official `iii-sdk`, anyiii on asyncio and
  anyiii on trio (both workers of a pair use the same SDK). Throughput, p50/p99 latency
  and the CPU time per call of caller, callee and engine (from `/proc/<pid>/stat` over the
  measured window). Errors (timeouts, rejections) are counted and shown, never dropped.
* **b, payload size**: the same echo with 100 B, 10 KiB and 1 MiB payloads (the JSON
  encoding of a string of that many bytes) at 10 in flight: MB/s of payload echoed
  (calls/s times payload size; every call carries it both ways), and anyiii/official as the
  median of per-round ratios.
* **c, routing cost**: one anyiii (asyncio) caller/callee pair at 100 in flight while the
  engine also holds 1, 100 or 1,000 idle connected workers, or 10,000 registered
  functions (on one worker, or spread over 100): throughput and the engine's CPU per
  routed call, and its ratio to the 1-idle-worker case, per round. The idle workers are
  anyiii connections opened by one helper process.
* **d, memory**: the engine's resident memory (VmRSS) with 1,000 idle workers connected
  minus with none, divided by 1,000 (the helper's own RSS per connection alongside); and
  the caller's VmRSS while 10,000 calls are pending on a callee that holds them (its
  handler waits for a release) minus before, divided by 10,000 (the callee's growth per
  held invocation alongside).

Each measured window starts after a warm-up (at least one full wave of calls) and lasts
at least `--window` seconds and two full waves. A round runs every SDK (series a, b, d) and
every engine configuration (series c) once, in a rotating order; tables give medians over
rounds. Series a, b and the second half of d share one caller/callee pair per SDK and
round: the memory measurement runs first, on fresh processes.

Sanity checks come before anything is timed, and the script exits non-zero when one fails:
every payload size comes back exactly as sent (and so must every call of the load), every
held call comes back, the callee served exactly as many echo calls as the caller saw
answered (at least as many when some calls failed), and the engine lists every idle
worker and function the helper made. A
phase that fails under load (a process dies or stops answering) is reported with the
tables, and the exit status is non-zero when that happens to anyiii.

The anyiii callee serves the echo with the default `WorkerLimits` (256 handlers running,
4,096 more queued, `worker_busy` beyond: such rejections would show as errors). The held
calls of series d go to a second connection of the same callee process whose
`max_concurrency` is the number held, so that all of them are running handlers, as they are
with the official SDK, which has no such limit. The helper and this script raise their
soft open-file limit to the hard limit (children inherit it), for the 1,000 sockets of
series c and d.

Charts (one PNG per series, `scaling-*.png` in `--out`, default `docs/benchmarks/`) need
matplotlib, the `bench` extra; `--quick` (tiny sizes, one round, for the smoke test) draws
none unless `--charts` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _processes import cpu_seconds, engine_process, raise_fd_limit, rss_kib
from _scaling_report import (
    EngineLoad,
    PairResult,
    Plan,
    Timing,
    draw_charts,
    rate_text,
    report_inflight,
    report_memory,
    report_routing,
    report_sizes,
    size_label,
)
from _scaling_scripts import ANYIII, HELPER, SDKS
from _scaling_workers import (
    Lines,
    PhaseFailed,
    SanityError,
    idle_workers,
    started,
    wait_ready,
    warm_helper,
)

# -- one load phase -------------------------------------------------------------------------


def load_phase(
    caller: Lines, pids: dict[str, int], in_flight: int, size: int, timing: Timing
) -> dict[str, Any]:
    """Run one load phase in the caller; CPU time of every process in `pids` over the
    window (from /proc) per call answered in it."""
    spec = {
        "kind": "load",
        "in_flight": in_flight,
        "size": size,
        "warmup": timing.warmup,
        "warm_calls": in_flight,
        "window": timing.window,
        "min_calls": max(timing.waves * in_flight, 20),
        "limit": timing.limit,
    }
    caller.send(json.dumps(spec))
    caller.expect("start", timeout=timing.limit + 60)
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    caller.expect("end", timeout=timing.limit + 60)
    after = {role: cpu_seconds(pid) for role, pid in pids.items()}
    result: dict[str, Any] = json.loads(caller.next(timeout=timing.limit + 60))
    if result["mismatched"]:
        raise SanityError(f"{result['mismatched']} echoes came back different from the payload")
    calls = result["calls"]
    result["rate"] = calls / result["seconds"]
    for role in pids:
        cpu = after[role] - before[role]
        result[f"{role}_cpu_us"] = cpu / calls * 1e6 if calls else math.nan
    return result


# -- series a, b and the pending calls of d: one pair per SDK and round ---------------------


def pair_stage(url: str, engine_pid: int, sdk_name: str, plan: Plan) -> PairResult:
    """One callee/caller pair of `sdk_name`: the held calls first (fresh processes), then
    the payload sizes are checked, then the in-flight levels and the payload sizes."""
    sdk = SDKS[sdk_name]
    callee_argv = [sys.executable, "-c", sdk.callee, url]
    caller_argv = [sys.executable, "-c", sdk.caller, url]
    if sdk.backend:
        callee_argv += [sdk.backend, str(plan.hold)]
        caller_argv += [sdk.backend]
    out = PairResult()
    with ExitStack() as stack:
        callee = stack.enter_context(started(callee_argv, f"the {sdk_name} callee"))
        caller = stack.enter_context(started(caller_argv, f"the {sdk_name} caller"))
        wait_ready(callee, caller)  # the caller retries its first call until echo is there
        pids = {"caller": caller.child.pid, "callee": callee.child.pid, "engine": engine_pid}
        try:
            if plan.hold:
                out.hold = hold_phase(caller, callee, plan.hold)
            caller.send(json.dumps({"kind": "check", "sizes": sorted({100, *plan.sizes})}))
            caller.expect("checked", timeout=60)
            for level in plan.levels:
                out.levels[level] = load_phase(caller, pids, level, 100, plan.timing)
            for size in plan.sizes:
                phase = load_phase(caller, pids, plan.size_in_flight, size, plan.timing)
                phase["mb_s"] = phase["rate"] * size / 1e6
                out.sizes[size] = phase
            caller.send("quit")
            answered = json.loads(caller.next(timeout=60))["answered"]
            callee.send("count")
            served = int(callee.expect("served", timeout=30)[0])
        except PhaseFailed as failure:
            out.failed = str(failure)
            return out
        errors = any(p["errors"] for p in (*out.levels.values(), *out.sizes.values()))
        if served != answered and not (errors and served >= answered):
            raise SanityError(
                f"{sdk_name}: the callee served {served} echo calls, the caller saw {answered}"
            )
    return out


def hold_phase(caller: Lines, callee: Lines, count: int) -> dict[str, float]:
    """Resident memory of caller and callee per pending call: `count` calls held by the
    callee, against the same processes idle just before."""
    caller.send(json.dumps({"kind": "hold", "count": count}))
    caller.expect("idle")
    idle = rss_kib(caller.child.pid), rss_kib(callee.child.pid)
    caller.send("go")
    callee.send(f"hold {count}")
    held = int(callee.expect("held", timeout=180)[0])
    busy = rss_kib(caller.child.pid), rss_kib(callee.child.pid)
    callee.send("release")
    result = json.loads(caller.next(timeout=120))
    what = (
        f"{count} calls held: the callee admitted {held}, {result['ok']} came back "
        f"exactly, {result['mismatched']} different, errors {result['errors']}"
    )
    if result["mismatched"]:
        raise SanityError(what)
    if held != count or result["ok"] != count:
        raise PhaseFailed(what)
    return {
        "caller_kib": (busy[0] - idle[0]) / count,
        "callee_kib": (busy[1] - idle[1]) / count,
    }


# -- series c: routing with idle workers and registered functions ---------------------------


def routing_series(
    backend: str, configs: list[EngineLoad], rounds: int, in_flight: int, timing: Timing
) -> dict[str, list[dict[str, Any]]]:
    """One engine, one anyiii asyncio pair and one helper process; per round, every
    configuration of idle workers in turn, held by the helper, measured by the pair."""
    runs: dict[str, list[dict[str, Any]]] = {c.label: [] for c in configs}
    sdk = SDKS["anyiii asyncio"]
    with engine_process(backend) as (url, engine_pid), ExitStack() as stack:
        callee_argv = [sys.executable, "-c", sdk.callee, url, "asyncio", "0"]
        callee = stack.enter_context(started(callee_argv, "the routing callee"))
        caller_argv = [sys.executable, "-c", sdk.caller, url, "asyncio"]
        caller = stack.enter_context(started(caller_argv, "the routing caller"))
        helper = stack.enter_context(started(HELPER, "the idle-worker helper"))
        wait_ready(callee, caller, helper)
        warm_helper(helper, url)
        caller.send(json.dumps({"kind": "check", "sizes": [100]}))
        caller.expect("checked")
        pids = {"engine": engine_pid, "caller": caller.child.pid, "callee": callee.child.pid}
        for round_number in range(rounds):
            turn = round_number % len(configs)
            for config in configs[turn:] + configs[:turn]:
                with idle_workers(helper, url, config.workers, config.functions):
                    result = load_phase(caller, pids, in_flight, 100, timing)
                runs[config.label].append(result)
                print(
                    f"round {round_number + 1} c {config.label:34}: {result['rate']:8,.0f} "
                    f"calls/s, engine {result['engine_cpu_us']:5.1f} µs/call",
                    flush=True,
                )
        caller.send("quit")
        answered = json.loads(caller.next())["answered"]
        callee.send("count")
        served = int(callee.expect("served")[0])
        if served != answered:
            raise SanityError(f"routing: the callee served {served}, the caller saw {answered}")
    return runs


# -- series d, first half: engine memory per connected worker -------------------------------


def engine_memory(backend: str, count: int) -> dict[str, float]:
    """A fresh engine's RSS with `count` idle workers minus with none (after one warm-up
    connection), per worker; and the helper's own RSS per connection."""
    with (
        started(HELPER, "the idle-worker helper") as helper,
        engine_process(backend) as (url, engine_pid),
    ):
        wait_ready(helper)
        helper_base = warm_helper(helper, url)
        engine_base = rss_kib(engine_pid)
        with idle_workers(helper, url, count, 0) as helper_rss:
            engine_rss = rss_kib(engine_pid)
    return {
        "engine_kib": (engine_rss - engine_base) / count,
        "helper_kib": (helper_rss - helper_base) / count,
    }


# -- main -----------------------------------------------------------------------------------


def rotated(items: list[str], turn: int) -> list[str]:
    turn %= len(items)
    return items[turn:] + items[:turn]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--series", default="a,b,c,d", help="any of a,b,c,d, comma-separated")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--window", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "docs" / "benchmarks"))
    parser.add_argument("--no-charts", action="store_true")
    parser.add_argument("--charts", action="store_true", help="draw charts even with --quick")
    parser.add_argument("--engine-backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    series = set(args.series.split(","))
    if not series <= {"a", "b", "c", "d"}:
        parser.error("--series takes a comma-separated subset of a,b,c,d")
    raise_fd_limit()
    held = 10_000
    idle_counts: tuple[int, ...] = (1, 100, 1_000)
    function_counts = (10_000, 100)
    plan = Plan(
        levels=[1, 10, 100, 1_000, 10_000] if "a" in series else [],
        sizes=[100, 10 * 1024, 2**20] if "b" in series else [],
        size_in_flight=10,
        hold=held if "d" in series else 0,
        timing=Timing(window=args.window),
    )
    routing_timing = Timing(window=max(args.window, 3.0))
    if args.quick:
        args.rounds = 1
        plan.levels = [1, 10, 100] if "a" in series else []
        plan.hold = held = 200 if "d" in series else 0
        plan.timing = routing_timing = Timing(window=0.15, warmup=0.05, waves=1)
        idle_counts, function_counts = (1, 20), (200, 10)
    draw = not args.no_charts and (args.charts or not args.quick)
    configs = [EngineLoad(f"{n:,} idle worker{'s' * (n != 1)}", n, 0) for n in idle_counts]
    total_functions, spread = function_counts
    configs.append(EngineLoad(f"{total_functions:,} functions on 1 worker", 1, total_functions))
    configs.append(
        EngineLoad(f"{total_functions:,} functions over {spread} workers", spread, total_functions)
    )
    memory_workers = idle_counts[-1]
    started_at = time.perf_counter()
    pairs: dict[str, list[PairResult]] = {sdk: [] for sdk in SDKS}
    holds: dict[str, list[dict[str, float]]] = {sdk: [] for sdk in SDKS}
    engine_mem: list[dict[str, float]] = []
    routing: dict[str, list[dict[str, Any]]] = {}
    try:
        if series & {"a", "b", "d"}:
            run_pairs(args.engine_backend, args.rounds, plan, pairs, holds)
        if "d" in series:
            for round_number in range(args.rounds):
                engine_mem.append(engine_memory(args.engine_backend, memory_workers))
                print(
                    f"round {round_number + 1} d engine: "
                    f"{engine_mem[-1]['engine_kib']:.1f} KiB per idle worker",
                    flush=True,
                )
        if "c" in series:
            routing = routing_series(args.engine_backend, configs, args.rounds, 100, routing_timing)
    except SanityError as error:
        sys.exit(f"sanity check failed: {error}")
    except PhaseFailed as error:
        sys.exit(f"a process failed: {error}")
    print(
        f"\n{args.rounds} round(s) in {time.perf_counter() - started_at:.0f} s; engine on "
        f"{args.engine_backend}; medians over rounds; ratios are medians of per-round ratios "
        "(per-round values in brackets)"
    )
    if "a" in series:
        report_inflight(pairs, plan.levels)
    if "b" in series:
        report_sizes(pairs, plan.sizes, plan.size_in_flight)
    if "c" in series:
        report_routing(routing, configs)
    if "d" in series:
        report_memory(engine_mem, memory_workers, {s: h for s, h in holds.items() if h}, held)
    if draw:
        for path in draw_charts(
            Path(args.out), pairs, plan, series, routing, configs, engine_mem, holds
        ):
            print(f"chart: {path}")
    broken = [f"{sdk}: {r.failed}" for sdk in ANYIII for r in pairs[sdk] if r.failed]
    if broken:
        sys.exit("anyiii failed under load: " + "; ".join(broken))


def run_pairs(
    backend: str,
    rounds: int,
    plan: Plan,
    pairs: dict[str, list[PairResult]],
    holds: dict[str, list[dict[str, float]]],
) -> None:
    """Series a, b and the held calls of d: one engine for all; per round every SDK's pair
    in a rotating order."""
    with engine_process(backend) as (url, engine_pid):
        for round_number in range(rounds):
            for sdk in rotated(list(SDKS), round_number):
                began = time.perf_counter()
                result = pair_stage(url, engine_pid, sdk, plan)
                pairs[sdk].append(result)
                if result.hold:
                    holds[sdk].append(result.hold)
                summary = ", ".join(
                    f"{level:,}: {phase['rate']:,.0f}/s" for level, phase in result.levels.items()
                )
                sizes = ", ".join(
                    f"{size_label(size)}: {rate_text(phase['mb_s'])} MB/s"
                    for size, phase in result.sizes.items()
                )
                print(
                    f"round {round_number + 1} {sdk:16} ({time.perf_counter() - began:.0f} s) "
                    f"{summary} {sizes}" + (f" FAILED: {result.failed}" if result.failed else ""),
                    flush=True,
                )


if __name__ == "__main__":
    main()
