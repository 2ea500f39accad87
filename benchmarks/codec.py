"""Codec benchmark: one invocation exchange with anyiii's msgspec codec versus stdlib json.

One *exchange* is what a caller and a callee do for one call: build and encode the
`invokefunction` frame, decode it and read what a dispatcher reads (type, invocation id,
function id, data), then build and encode the `invocationresult` frame and decode that.
Every measurement runs in every round, interleaved slice by slice with the others, so a
ratio always compares figures taken under the same machine conditions. Reported values are
medians over rounds; a ratio is the median of the per-round ratios.

Also measured, in the same rounds: invocation id generation (`InvocationIds` against
`str(uuid.uuid4())`) and one exchange through the four sans-IO cores (caller worker,
caller's engine connection, callee's engine connection, callee worker).

Before timing anything the script checks that both codecs decode each frame to equal
values, in both directions, and that both exchanges hand the same payloads to their
readers; it exits non-zero with a message if they do not.

    PYTHONPATH=src python benchmarks/codec.py            # full run (about 25 s)
    PYTHONPATH=src python benchmarks/codec.py --quick    # smoke run (under a second)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

import msgspec

from anyiii._protocol import events as ev
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import (
    InvocationResult,
    InvokeFunction,
    decode_frame,
    decode_value,
    encode_frame,
    present,
    to_raw,
)
from anyiii._protocol.ids import InvocationIds
from anyiii._protocol.worker import WorkerConnection

FUNCTION_ID: Final = "math::add"
INVOCATION_ID: Final = "5f0c8a4e-3b1d-4c7a-9e2f-0a1b2c3d4e5f"
TRACEPARENT: Final = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
PAYLOAD: Final = {"a": 2, "b": 3}
RESULT: Final = {"c": 5}
PAYLOAD_RAW: Final = to_raw(PAYLOAD)
RESULT_RAW: Final = to_raw(RESULT)

TABLE_HEADER: Final = "| measurement | median µs | per second | ratio (median of rounds) |"
"""The first line of the summary table (the smoke test looks for it)."""
X: Final = "\N{MULTIPLICATION SIGN}"
SLICES: Final = 20
"""Each round interleaves the ops in this many slices (see `measure_round`)."""


class BenchmarkError(Exception):
    """A sanity check failed: the figures would compare different work."""


# --- the two codecs, doing the same work ----------------------------------------------------


def anyiii_exchange(
    *, forward: bool = False, decode_payloads: bool = False
) -> tuple[object, object]:
    """One exchange with anyiii's codec. Returns what the callee and the caller read.

    By default each side turns its dict into `Raw` with `to_raw` (as a worker does) and
    leaves the `Raw` it receives undecoded (as a dispatcher does). `forward` uses payloads
    that are already `Raw` (as the engine forwards them); `decode_payloads` also decodes
    both payloads into dicts (as a handler and its caller finally do).
    """
    invoke = encode_frame(
        InvokeFunction(
            function_id=FUNCTION_ID,
            invocation_id=INVOCATION_ID,
            data=PAYLOAD_RAW if forward else to_raw(PAYLOAD),
            traceparent=TRACEPARENT,
        )
    )
    call = decode_frame(invoke)
    if not isinstance(call, InvokeFunction) or call.invocation_id is None:
        raise BenchmarkError(f"invoke frame decoded as {call!r}")
    function_id, data = call.function_id, call.data
    answer = encode_frame(
        InvocationResult(
            invocation_id=call.invocation_id,
            function_id=function_id,
            result=RESULT_RAW if forward else to_raw(RESULT),
            traceparent=call.traceparent,
        )
    )
    reply = decode_frame(answer)
    if not isinstance(reply, InvocationResult) or reply.error is not None:
        raise BenchmarkError(f"result frame decoded as {reply!r}")
    if decode_payloads:
        return decode_value(data), decode_value(reply.result)  # type: ignore[arg-type]
    return data, reply.result


def json_invoke(invocation_id: str) -> dict[str, Any]:
    """The invoke frame as a plain dict, with the keys and values anyiii sends."""
    return {
        "type": "invokefunction",
        "function_id": FUNCTION_ID,
        "invocation_id": invocation_id,
        "data": dict(PAYLOAD),
        "traceparent": TRACEPARENT,
    }


def json_result(invocation_id: str, function_id: str, traceparent: str) -> dict[str, Any]:
    """The result frame as a plain dict, with the keys and values anyiii sends."""
    return {
        "type": "invocationresult",
        "invocation_id": invocation_id,
        "function_id": function_id,
        "result": dict(RESULT),
        "traceparent": traceparent,
    }


def json_exchange() -> tuple[object, object]:
    """One exchange with stdlib json on dicts (which always decodes the payloads too)."""
    invoke = json.dumps(json_invoke(INVOCATION_ID)).encode()
    call = json.loads(invoke)
    if call["type"] != "invokefunction" or call["invocation_id"] is None:
        raise BenchmarkError(f"invoke frame decoded as {call!r}")
    function_id, data = call["function_id"], call["data"]
    answer = json.dumps(json_result(call["invocation_id"], function_id, call["traceparent"]))
    reply = json.loads(answer.encode())
    if reply["type"] != "invocationresult" or reply.get("error") is not None:
        raise BenchmarkError(f"result frame decoded as {reply!r}")
    return data, reply["result"]


def check_codecs_agree() -> tuple[list[int], list[int]]:
    """Both codecs decode each frame to equal values, both ways, and exchange equal payloads.

    Returns the byte sizes of the invoke and result frames: anyiii's, then json's.
    """
    ours: tuple[InvokeFunction, InvocationResult] = (
        InvokeFunction(
            function_id=FUNCTION_ID,
            invocation_id=INVOCATION_ID,
            data=to_raw(PAYLOAD),
            traceparent=TRACEPARENT,
        ),
        InvocationResult(
            invocation_id=INVOCATION_ID,
            function_id=FUNCTION_ID,
            result=to_raw(RESULT),
            traceparent=TRACEPARENT,
        ),
    )
    theirs = (json_invoke(INVOCATION_ID), json_result(INVOCATION_ID, FUNCTION_ID, TRACEPARENT))
    for frame, plain in zip(ours, theirs, strict=True):
        wire = encode_frame(frame)
        if json.loads(wire) != plain:
            raise BenchmarkError(
                f"json reads anyiii's {wire!r} as {json.loads(wire)!r}, not {plain!r}"
            )
        decoded = decode_frame(json.dumps(plain).encode())
        if type(decoded) is not type(frame) or json.loads(encode_frame(decoded)) != plain:
            raise BenchmarkError(f"anyiii reads json's {plain!r} as {decoded!r}")
    if anyiii_exchange(decode_payloads=True) != json_exchange():
        raise BenchmarkError("the two exchanges hand different payloads to their readers")
    return [len(encode_frame(f)) for f in ours], [len(json.dumps(p)) for p in theirs]


# --- ids and the sans-IO cores --------------------------------------------------------------


def uuid4_text() -> str:
    """What most SDKs do for each invocation id."""
    return str(uuid.uuid4())


def core_round_trip() -> Callable[[], object]:
    """One exchange through four cores: caller ⇄ engine ⇄ callee, frames moved by hand.

    Workers turn user values into `Raw` (as a runtime would); the engine passes them on.
    The returned function runs one exchange; it is checked once before it is returned.
    """
    caller_link = EngineConnection(str(uuid.uuid4()), str(uuid.uuid4()))
    callee_link = EngineConnection(str(uuid.uuid4()), str(uuid.uuid4()))
    caller, callee = WorkerConnection(), WorkerConnection()
    caller.receive(caller_link.start())
    callee.receive(callee_link.start())

    def exchange() -> ev.Event:
        invocation_id, frame = caller.call(FUNCTION_ID, to_raw(PAYLOAD), traceparent=TRACEPARENT)
        (requested,) = caller_link.receive(frame)
        if not isinstance(requested, ev.CallRequested):
            raise BenchmarkError(f"the engine read the call as {requested!r}")
        call = requested.call
        dispatch = callee_link.dispatch(
            invocation_id, call.function_id, call.data, traceparent=call.traceparent
        )
        (invocation,) = callee.receive(dispatch)
        if not isinstance(invocation, ev.InvocationRequested) or invocation.invocation_id is None:
            raise BenchmarkError(f"the callee read the dispatch as {invocation!r}")
        answer = callee.complete(
            invocation.invocation_id, to_raw(RESULT), traceparent=invocation.traceparent
        )
        (received,) = callee_link.receive(answer)
        if not isinstance(received, ev.ResultReceived):
            raise BenchmarkError(f"the engine read the result as {received!r}")
        result = received.result
        relay = caller_link.deliver_result(
            invocation_id, present(result.result), traceparent=result.traceparent
        )
        (completed,) = caller.receive(relay)
        return completed

    completed = exchange()
    if not isinstance(completed, ev.CallCompleted) or completed.result is None:
        raise BenchmarkError(f"the cores ended the exchange with {completed!r}")
    if decode_value(completed.result) != RESULT:
        raise BenchmarkError(f"the cores delivered {completed.result!r}")
    if caller.pending_calls or callee.in_flight or caller_link.awaiting_results:
        raise BenchmarkError("the cores kept state after a completed exchange")
    return exchange


# --- timing and reporting -------------------------------------------------------------------


def seconds(op: Callable[[], object], iterations: int) -> float:
    """Wall time of `iterations` calls of `op` (GC left on, as in real use)."""
    start = time.perf_counter()
    for _ in range(iterations):
        op()
    return time.perf_counter() - start


def measure_round(ops: dict[str, Callable[[], object]], iterations: int) -> dict[str, float]:
    """Mean µs per call of every op, over about `iterations` calls each.

    The calls are cut into `SLICES` slices and the ops take turns slice by slice, in an
    order that reverses every slice, so a slowdown of the machine (this VM has them, for
    seconds at a time) weighs on every op alike instead of on whichever ran during it.
    """
    per_slice = max(iterations // SLICES, 1)
    totals = dict.fromkeys(ops, 0.0)
    order = list(ops)
    gc.collect()
    for _ in range(SLICES):
        for name in order:
            totals[name] += seconds(ops[name], per_slice)
        order.reverse()
    return {name: total / (per_slice * SLICES) * 1e6 for name, total in totals.items()}


def run(iterations: int, rounds: int) -> int:
    """Check, warm up, measure `rounds` rounds, print them and the summary table."""
    (ours_inv, ours_res), (json_inv, json_res) = check_codecs_agree()
    ids = InvocationIds()
    cores = core_round_trip()
    ops: dict[str, Callable[[], object]] = {
        "json": json_exchange,
        "anyiii": anyiii_exchange,
        "anyiii-fwd": partial(anyiii_exchange, forward=True),
        "anyiii+dec": partial(anyiii_exchange, decode_payloads=True),
        "uuid4": uuid4_text,
        "ids": ids,
        "cores": cores,
    }
    for op in ops.values():
        seconds(op, max(iterations // 10, 100))  # warm-up

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"msgspec {msgspec.__version__}, {platform.system()} {platform.release()}, "
        f"{platform.machine()}, CPUs seen: {_cpu_count()}"
    )
    print(f"{iterations:,} iterations {X} {rounds} rounds; µs per operation\n")
    print("round | " + " | ".join(ops) + " | json÷anyiii")
    results: dict[str, list[float]] = {name: [] for name in ops}
    for round_no in range(rounds):
        for name, micros in measure_round(ops, iterations).items():
            results[name].append(micros)
        row = " | ".join(f"{results[name][-1]:.3f}" for name in ops)
        round_ratio = results["json"][-1] / results["anyiii"][-1]
        print(f"{round_no + 1:>5} | {row} | {round_ratio:.2f}{X}")

    def ratio(slow: str, fast: str) -> float:
        return statistics.median(a / b for a, b in zip(results[slow], results[fast], strict=True))

    rows: Sequence[tuple[str, str, str]] = (
        (f"exchange, stdlib json on dicts ({json_inv}/{json_res} B)", "json", f"1.00{X}"),
        (
            f"exchange, anyiii: `to_raw` out, `Raw` kept on receipt ({ours_inv}/{ours_res} B)",
            "anyiii",
            f"{ratio('json', 'anyiii'):.2f}{X} faster than json",
        ),
        (
            "exchange, anyiii: payloads already `Raw` (engine forwarding)",
            "anyiii-fwd",
            f"{ratio('json', 'anyiii-fwd'):.2f}{X} faster than json",
        ),
        (
            "exchange, anyiii: `to_raw` out, `decode_value` on receipt",
            "anyiii+dec",
            f"{ratio('json', 'anyiii+dec'):.2f}{X} faster than json",
        ),
        ("invocation id, `str(uuid.uuid4())`", "uuid4", f"1.00{X}"),
        ("invocation id, `InvocationIds()` call", "ids", f"{ratio('uuid4', 'ids'):.2f}{X} faster"),
        (
            "exchange through the four sans-IO cores",
            "cores",
            f"{ratio('cores', 'anyiii'):.2f}{X} the bare anyiii exchange",
        ),
    )
    print("\n" + TABLE_HEADER)
    print("|---|---:|---:|---|")
    for label, name, note in rows:
        median = statistics.median(results[name])
        print(f"| {label} | {median:.2f} | {_per_second(median)} | {note} |")
    return 0


def _per_second(micros: float) -> str:
    rate = 1e6 / micros
    return f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.0f}k"


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=100_000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians are taken)")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: 2,000 iterations {X} 3 rounds"
    )
    args = parser.parse_args(argv)
    iterations, rounds = (2_000, 3) if args.quick else (args.iterations, args.rounds)
    if iterations < 1 or rounds < 1:
        parser.error("--iterations and --rounds must be positive")
    try:
        return run(iterations, rounds)
    except BenchmarkError as exc:
        print(f"benchmark sanity check failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
