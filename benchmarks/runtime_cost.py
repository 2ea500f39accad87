"""CPU per call of the whole runtime in one process, this checkout against another tree.

    python benchmarks/runtime_cost.py --baseline REV [--rounds 9] [--calls 20000]
    python benchmarks/runtime_cost.py --baseline REV --instructions [--max-ratio 1.02]
    python benchmarks/runtime_cost.py --baseline-src DIR [...]

The baseline is a git revision (`--baseline HEAD`, `HEAD~1`, a branch, a tag, a commit
id), whose `src/` the script exports into a temporary directory for the run, or another
source tree's `src` folder (`--baseline-src`). "This checkout" is the working tree as it
is, uncommitted changes included, so `--baseline HEAD` measures what the edits cost.

One process holds an embedded engine and two workers (caller and callee) joined by the
in-memory transport, so a call crosses everything but the sockets: the caller's runtime
and protocol core, the engine's router, the callee's session, invocation runner and
handler, and back. Each sample is one fresh process making `--calls` calls at 100 in
flight on one backend, and reports the process's CPU time per call (user + system).

Why this and not only `roundtrip.py`: on a small shared VM the three-process round trip
moves by tens of percent between rounds, so a few percent of change in the runtime is
lost in the noise. Here every sample of this checkout is paired with a sample of the
baseline taken right after it (alternating which goes first), and the report gives the
median and the minimum of each side (the minimum is the sample least disturbed by other
load) and the median of the paired ratios.

`--instructions` counts instead of timing: each side runs under valgrind's callgrind
(Debian's `valgrind`) once with 1,000 and once with 3,000 calls, and the difference over
2,000 calls is the instructions one call costs, start-up and warm-up cancelled out. The
count does not depend on what else the machine does, so a change of a percent shows.

`--max-ratio X` turns the report into a guard: one line per backend gives this/baseline
CPU per call (the instruction ratio with `--instructions`, else the median of the paired
ratios) against the limit, and the exit status is 1 when any backend is above it. The
instruction ratio is the one to gate on: timed ratios on a shared machine move by more
than a few percent from run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap

from _processes import THIS_SRC, script_env
from _revisions import exported_revision

SAMPLE = textwrap.dedent(
    """
    import json, sys, time
    from contextlib import asynccontextmanager
    import anyio
    import anyiii

    CALLS, BACKEND = int(sys.argv[1]), sys.argv[2]


    def opener_for(engine, tasks):
        # Trees from before `memory_transport_opener` served memory pairs themselves.
        if hasattr(engine, "memory_transport_opener"):
            return engine.memory_transport_opener()
        from anyiii._transport import memory_transport_pair

        @asynccontextmanager
        async def open_one():
            client, server = memory_transport_pair()
            tasks.start_soon(engine._serve_transport, server)
            async with client:
                yield client

        return open_one


    async def main():
        async with anyiii.engine.run(http_port=None) as engine:
            async with anyio.create_task_group() as tasks:
                opener = opener_for(engine, tasks)
                async with (
                    anyiii.connect("ws://memory", transport=opener, reconnect=False) as callee,
                    anyiii.connect("ws://memory", transport=opener, reconnect=False) as caller,
                ):
                    @callee.function("bench::add")
                    async def add(data):
                        return {"c": data["a"] + data["b"]}

                    await callee.trigger_async(
                        {"function_id": "engine::functions::list", "payload": {}}
                    )
                    request = {"function_id": "bench::add", "payload": {"a": 2, "b": 3}}

                    async def loop(count):
                        for _ in range(count):
                            await caller.trigger_async(request)

                    await loop(500)  # warm up
                    cpu = time.process_time()
                    async with anyio.create_task_group() as calls:
                        for _ in range(100):
                            calls.start_soon(loop, CALLS // 100)
                    per_call = (time.process_time() - cpu) / CALLS * 1e6
                tasks.cancel_scope.cancel()
        print(json.dumps({"cpu_us": per_call}))


    anyio.run(main, backend=BACKEND)
    """
)


def sample(src: str, calls: int, backend: str) -> float:
    """CPU microseconds per call of one fresh process importing anyiii from `src`."""
    completed = subprocess.run(
        [sys.executable, "-c", SAMPLE, str(calls), backend],
        env=script_env(src),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if completed.returncode != 0:
        sys.exit(f"a sample failed ({src}, {backend}):\n{completed.stderr}")
    value: float = json.loads(completed.stdout.strip().splitlines()[-1])["cpu_us"]
    return value


def instructions(src: str, calls: int, backend: str) -> int:
    """Instructions (callgrind's Ir) of one process making `calls` calls."""
    env = dict(script_env(src), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as scratch:
        completed = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={os.path.join(scratch, 'out')}",
                sys.executable,
                "-c",
                SAMPLE,
                str(calls),
                backend,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=3600,
        )
    found = re.search(r"Collected : (\d+)", completed.stderr)
    if completed.returncode != 0 or found is None:
        sys.exit(f"callgrind failed ({src}, {backend}):\n{completed.stderr[-2000:]}")
    return int(found.group(1))


def precompile(src: str) -> None:
    """Byte-compile a tree before it is measured, so that no measured process pays for
    compiling it: under callgrind the first (1,000-call) run of a fresh tree would count
    the compilation and make the tree look cheaper per call than it is."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=False, timeout=600)


def count_instructions(baseline: str, backends: list[str]) -> dict[str, float]:
    """Instructions per call, this checkout against `baseline`, on each backend; returns
    the ratio this / baseline per backend."""
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    ratios = {}
    for backend in backends:
        per_call = {}
        for name, src in (("this", THIS_SRC), ("baseline", baseline)):
            few, many = instructions(src, 1_000, backend), instructions(src, 3_000, backend)
            per_call[name] = (many - few) / 2_000
            print(f"{backend} {name}: {per_call[name]:,.0f} instructions per call", flush=True)
        ratios[backend] = per_call["this"] / per_call["baseline"]
        print(f"{backend}: this / baseline {ratios[backend]:.3f}", flush=True)
    return ratios


def time_samples(baseline: str, backends: list[str], rounds: int, calls: int) -> dict[str, float]:
    """Paired CPU samples, this checkout against `baseline`, on each backend; returns the
    median of the paired ratios this / baseline per backend."""
    medians = {}
    for backend in backends:
        ours: list[float] = []
        base: list[float] = []
        for round_number in range(rounds):
            pair = [("this", THIS_SRC), ("baseline", baseline)]
            if round_number % 2:
                pair.reverse()
            for name, src in pair:
                (ours if name == "this" else base).append(sample(src, calls, backend))
            print(
                f"{backend} round {round_number + 1}: this {ours[-1]:6.1f} µs/call, "
                f"baseline {base[-1]:6.1f} µs/call",
                flush=True,
            )
        ratios = [o / b for o, b in zip(ours, base, strict=True)]
        medians[backend] = statistics.median(ratios)
        print(
            f"{backend}: this median {statistics.median(ours):.1f} (min {min(ours):.1f}) µs/call, "
            f"baseline median {statistics.median(base):.1f} (min {min(base):.1f}); "
            f"paired ratio median {medians[backend]:.3f}, "
            f"ratio of minima {min(ours) / min(base):.3f}",
            flush=True,
        )
    return medians


def guard(ratios: dict[str, float], limit: float) -> bool:
    """Print one verdict line per backend; true when every ratio is within `limit`."""
    print()
    for backend, ratio in ratios.items():
        verdict = "OK" if ratio <= limit else "REGRESSION"
        print(
            f"{backend} guard: this/baseline CPU per call = {ratio:.3f} (limit {limit}): {verdict}"
        )
    return all(ratio <= limit for ratio in ratios.values())


def compare(baseline: str, args: argparse.Namespace) -> dict[str, float]:
    """Run the comparison the arguments ask for against the `baseline` src folder."""
    backends = args.backends.split(",")
    for src in (THIS_SRC, baseline):
        precompile(src)
    if args.instructions:
        return count_instructions(baseline, backends)
    return time_samples(baseline, backends, args.rounds, args.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    against = parser.add_mutually_exclusive_group(required=True)
    against.add_argument(
        "--baseline", metavar="REV", help="a git revision, exported to a temporary directory"
    )
    against.add_argument("--baseline-src", metavar="DIR", help="the other tree's src folder")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--quick", action="store_true", help="one small round (smoke test)")
    parser.add_argument(
        "--max-ratio",
        type=float,
        metavar="X",
        help="exit 1 if this/baseline CPU per call exceeds X on any backend (e.g. 1.02)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 1, 1_000
    if args.baseline is None:
        ratios = compare(args.baseline_src, args)
    else:
        with exported_revision(args.baseline) as tree:
            ratios = compare(os.path.join(tree, "src"), args)
    if args.max_ratio is not None and not guard(ratios, args.max_ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
