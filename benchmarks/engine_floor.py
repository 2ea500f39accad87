"""How little CPU a Python engine can spend per routed call: a floor for `anyiii engine`.

    python benchmarks/engine_floor.py [--rounds 3] [--seconds 4] [--backend asyncio|trio] [--quick]

The load of `profile.py` (an anyiii caller keeping 100 calls in flight to an anyiii callee)
runs once through `anyiii engine` and once through a *floor relay*, alternating, and the
table gives each process's CPU time per call for both.

The floor relay (`FLOOR_RELAY` below, run as its own process) does only what no Python
engine can skip: the WebSocket upgrade, splitting and unmasking frames, decoding each
message with the SDK's msgspec frame types, one dictionary lookup to route it (function id
to connection for a call, invocation id to caller for a result), splicing
`_caller_worker_id` into the payload, encoding the frame for the other side and writing
each read's answers in one `transport.write`. It is an asyncio `Protocol`: no tasks, no
anyio, no protocol state machine, no namespaces, no validation beyond the decoder's, no
backpressure, no timeouts and no bookkeeping for disconnects. It is not an engine and must
never be used as one; it exists to show how much of `anyiii engine`'s CPU per call is the
price of Python itself and how much is the engine's own structure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _processes import calls_so_far, cpu_seconds, engine_process, first_line, process
from roundtrip import ANYIII_CALLEE, ANYIII_LOAD

FLOOR = str(Path(__file__).with_name("_floor.py"))

SETUPS = {
    "anyiii": ("anyiii", "anyiii"),
    "anyiii workers, asyncio floor relay": ("asyncio", "anyiii"),
    "anyio floor": ("anyio", "anyio"),
    "asyncio floor": ("asyncio", "asyncio"),
}
"""What each measured chain runs: (engine or relay, workers), each `anyiii` or a floor
flavour of `_floor.py`."""


@contextmanager
def engine_or_relay(kind: str, backend: str) -> Iterator[tuple[str, int]]:
    """`anyiii engine` or the floor relay, in a subprocess: its worker URL and pid."""
    if kind == "anyiii":
        with engine_process(backend) as started:
            yield started
        return
    with process(sys.executable, FLOOR, "relay", kind, "--backend", backend) as relay:
        yield first_line(relay, "the relay").split()[3], relay.pid


def measure(setup: str, backend: str, seconds: float, warmup: float) -> dict[str, float]:
    """CPU µs per call of caller, callee and engine (or relay) over one window."""
    engine, workers = SETUPS[setup]

    def worker(role: str, script: str, url: str) -> list[str]:
        if workers == "anyiii":
            return [sys.executable, "-c", script, url, backend]
        return [sys.executable, FLOOR, role, workers, url, "--backend", backend]

    with (
        engine_or_relay(engine, backend) as (url, engine_pid),
        process(*worker("callee", ANYIII_CALLEE, url)) as callee,
    ):
        if first_line(callee, "the callee") != "READY":
            sys.exit("the callee did not start")
        with process(*worker("caller", ANYIII_LOAD, url)) as caller:
            if first_line(caller, "the caller") != "GO":
                sys.exit("the caller did not start")
            time.sleep(warmup)  # a benchmark's warm-up, not synchronisation
            pids = {"caller": caller.pid, "callee": callee.pid, "engine": engine_pid}
            before = {role: cpu_seconds(pid) for role, pid in pids.items()}
            calls_before = calls_so_far(caller)
            time.sleep(seconds)  # the measurement window, not synchronisation
            calls = calls_so_far(caller) - calls_before
            after = {role: cpu_seconds(pid) for role, pid in pids.items()}
    if calls <= 0:
        sys.exit(f"no call completed through {setup}")
    result = {role: (after[role] - before[role]) / calls * 1e6 for role in pids}
    result["calls/s"] = calls / seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--quick", action="store_true", help="one short round (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 0.5, 0.3
    runs: dict[str, list[dict[str, float]]] = {setup: [] for setup in SETUPS}
    for round_ in range(args.rounds):
        order = list(SETUPS) if round_ % 2 == 0 else list(reversed(SETUPS))
        for setup in order:
            result = measure(setup, args.backend, args.seconds, args.warmup)
            runs[setup].append(result)
            print(
                f"round {round_ + 1} {setup}: {result['calls/s']:,.0f} calls/s, CPU µs per "
                f"call: caller {result['caller']:.1f}, callee {result['callee']:.1f}, "
                f"engine {result['engine']:.1f}",
                flush=True,
            )
    print()
    print(f"medians over {args.rounds} rounds (anyiii workers on {args.backend}):")
    print()
    print("| workers / engine | calls/s | caller µs/call | callee µs/call | engine µs/call |")
    print("|---|---:|---:|---:|---:|")
    for setup, results in runs.items():
        cells = [
            statistics.median(r[key] for r in results)
            for key in ("calls/s", "caller", "callee", "engine")
        ]
        print(f"| {setup} | {cells[0]:,.0f} | {cells[1]:.1f} | {cells[2]:.1f} | {cells[3]:.1f} |")


if __name__ == "__main__":
    main()
