"""Where the time goes at 100 calls in flight: flame graphs and busy shares of the three
processes (caller, callee, engine), all anyiii, through one `anyiii engine`.

    python benchmarks/chain_profile.py [--backend asyncio|trio|uvloop] [--seconds 10]
                                       [--out DIR] [--no-flame] [--src DIR]

(Named so, not `profile.py`: a script of that name shadows the standard library's
`profile` module, which `cProfile` imports, for anything run from this folder.)

Needs the `bench` extra (py-spy). The caller keeps 100 calls in flight for the whole run;
after a warm-up, py-spy samples each process for `--seconds` without stopping it
(`--nonblocking`, so the async code runs undisturbed), and writes one SVG flame graph per
process to `--out` (default `docs/benchmarks/`). The table gives, per process, its busy
share of the window (CPU time over wall time: the rest is idle, waiting for the others)
and its CPU time per call. `--no-flame` measures the same without sampling (py-spy costs
CPU of its own); `--src DIR` runs all three processes from another source tree, to compare
a change with the tree before it on the same load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _processes import THIS_SRC, calls_so_far, cpu_seconds, engine_process, first_line, process
from roundtrip import ANYIII_CALLEE, ANYIII_LOAD


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        sys.exit("py-spy is not installed: pip install -e '.[bench]'")
    return found


def neutral_title(svg: Path, role: str, backend: str) -> None:
    """Replace the title py-spy gives a flame graph (its own command line, with this
    machine's paths in it) by what the graph shows."""
    if not svg.exists():
        return
    text = svg.read_text(encoding="utf-8")
    title = f"{role}, {backend}, 100 calls in flight (py-spy, 200 samples/s)"
    text = re.sub(r'(<text id="title"[^>]*>)[^<]*(</text>)', rf"\g<1>{title}\g<2>", text, count=1)
    svg.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio", "uvloop"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "docs" / "benchmarks"))
    parser.add_argument("--no-flame", action="store_true", help="measure without sampling")
    parser.add_argument("--src", default=THIS_SRC, help="the anyiii source tree to run")
    parser.add_argument("--quick", action="store_true", help="a one-second run, no flames")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.no_flame = 1.0, 0.5, True
    spy = "" if args.no_flame else py_spy()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (
        engine_process(src=args.src) as (url, engine_pid),
        process(sys.executable, "-c", ANYIII_CALLEE, url, args.backend, src=args.src) as callee,
    ):
        if first_line(callee, "the callee") != "READY":
            sys.exit("the callee did not start")
        with process(sys.executable, "-c", ANYIII_LOAD, url, args.backend, src=args.src) as caller:
            if first_line(caller, "the caller") != "GO":
                sys.exit("the caller did not start")
            time.sleep(args.warmup)  # a benchmark's warm-up, not synchronisation
            pids = {"caller": caller.pid, "callee": callee.pid, "engine": engine_pid}
            cpu_before = {role: cpu_seconds(pid) for role, pid in pids.items()}
            calls_before = calls_so_far(caller)
            started = time.perf_counter()
            if args.no_flame:
                time.sleep(args.seconds)  # the measurement window, not synchronisation
            else:
                samplers = [
                    subprocess.Popen(
                        [
                            spy,
                            "record",
                            "--pid",
                            str(pid),
                            "--duration",
                            str(int(args.seconds)),
                            "--rate",
                            "200",
                            "--nonblocking",
                            "--format",
                            "flamegraph",
                            "-o",
                            str(out / f"flame-{role}-{args.backend}.svg"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for role, pid in pids.items()
                ]
                for sampler in samplers:
                    sampler.wait(timeout=args.seconds + 60)
                for role in pids:
                    neutral_title(out / f"flame-{role}-{args.backend}.svg", role, args.backend)
            wall = time.perf_counter() - started
            calls = calls_so_far(caller) - calls_before
            cpu_after = {role: cpu_seconds(pid) for role, pid in pids.items()}
    print(f"backend {args.backend}: {calls / wall:,.0f} calls/s over {wall:.1f} s")
    print()
    print("| process | busy share of the window | CPU µs per call | flame graph |")
    print("|---|---:|---:|---|")
    for role in pids:
        cpu = cpu_after[role] - cpu_before[role]
        print(
            f"| {role} | {cpu / wall:.0%} | {cpu / calls * 1e6:.0f} "
            f"| flame-{role}-{args.backend}.svg |"
        )


if __name__ == "__main__":
    main()
