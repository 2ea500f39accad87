"""How far each anyiii process is from the least Python can spend per call: floors.

    python benchmarks/engine_floor.py [--rounds 3] [--seconds 4] [--backend asyncio|trio]
                                      [--quick]

The load of `chain_profile.py` (a caller keeping 100 calls in flight to a callee through an
engine) runs through eight chains, in a rotating order every round, and the table gives
each process's CPU time per call (medians):

* `anyiii`: anyiii caller and callee, `anyiii engine`;
* `anyiii workers, ...`: the same workers through a floor relay instead of the engine:
  the floor's routing on anyiii's own server transport, the anyio floor relay, the
  asyncio floor relay (the engine's share, with the traffic anyiii workers make);
* `... floor caller, anyiii engine and callee`: a floor caller in anyiii's own chain (the
  caller's share: what a caller must spend with the writes and reads this engine and
  callee produce, which are smaller than a floor chain's);
* `anyio floor`: floor caller, callee and relay written with what anyiii's library code
  may use (anyio byte streams, a reader and a writer task per link, an `anyio.Event` per
  call);
* `asyncio floor`: the same floors as asyncio `Protocol` callbacks and futures.

The floor programs (`_floor.py`, with `_floor_wire.py`) do only what no Python
implementation of the protocol can skip: the WebSocket upgrade, splitting and
(un)masking frames, msgspec decoding and encoding with the SDK's frame types, one
dictionary lookup to route, `_caller_worker_id` spliced into the payload. No protocol
state, validation, namespaces, timeouts, backpressure, cleanup or context per
invocation. They are measuring sticks, never programs to use. The script also prints the
CPU per routed call of the engine's sans-IO router alone (`router_alone`: cores and
routing rules, no transport, no event loop), the share of `anyiii engine`'s cost that
lies above any transport.

`--backend` picks the backend of the anyiii workers, of `anyiii engine` and of the anyio
floor; the asyncio floor is asyncio whatever it says.
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
    "anyiii": ("anyiii", "anyiii", "anyiii"),
    "anyiii workers, floor routing on anyiii's transport": ("transport", "anyiii", "anyiii"),
    "anyiii workers, anyio floor relay": ("anyio", "anyiii", "anyiii"),
    "anyiii workers, asyncio floor relay": ("asyncio", "anyiii", "anyiii"),
    "anyio floor caller, anyiii engine and callee": ("anyiii", "anyiii", "anyio"),
    "asyncio floor caller, anyiii engine and callee": ("anyiii", "anyiii", "asyncio"),
    "anyio floor": ("anyio", "anyio", "anyio"),
    "asyncio floor": ("asyncio", "asyncio", "asyncio"),
}
"""What each measured chain runs: (engine or relay, callee, caller), each `anyiii` or a
floor flavour of `_floor.py`."""


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
    engine, callee_kind, caller_kind = SETUPS[setup]

    def worker(role: str, script: str, url: str) -> list[str]:
        kind = caller_kind if role == "caller" else callee_kind
        if kind == "anyiii":
            return [sys.executable, "-c", script, url, backend]
        return [sys.executable, FLOOR, role, kind, url, "--backend", backend]

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


def router_alone(calls: int = 20_000) -> float:
    """CPU µs per routed call of the engine's sans-IO router alone: the protocol cores'
    decoding and bookkeeping, the routing rules and the encoding, for one call and its
    result between two registered workers, with no transport and no event loop."""
    import json
    import uuid

    from anyiii._engine.router import Router

    clock = [0.0]
    router = Router(clock=lambda: clock[0], namespace_grace=0.0)
    caller, _ = router.open(peer="caller")
    callee, _ = router.open(peer="callee")
    clock[0] = 1.0
    router.tick()  # both connections' namespaces are fixed
    router.receive(callee, json.dumps({"type": "registerfunction", "id": "bench::add"}))
    ids = [str(uuid.uuid4()) for _ in range(calls)]
    invokes = [
        json.dumps(
            {
                "type": "invokefunction",
                "invocation_id": i,
                "function_id": "bench::add",
                "data": {"a": 2, "b": 3},
            }
        ).encode()
        for i in ids
    ]
    results = [
        json.dumps(
            {
                "type": "invocationresult",
                "invocation_id": i,
                "function_id": "bench::add",
                "result": {"c": 5},
            }
        ).encode()
        for i in ids
    ]
    started = time.process_time()
    for invoke, result in zip(invokes, results, strict=True):
        forwarded = router.receive_many(caller, (invoke,))
        answered = router.receive_many(callee, (result,))
        if not forwarded or not answered:
            sys.exit("the router did not route the call")
    return (time.process_time() - started) / calls * 1e6


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
    alone = statistics.median(router_alone() for _ in range(3))
    print(f"the engine's sans-IO router alone: {alone:.1f} µs of CPU per routed call")
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
