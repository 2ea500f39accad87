"""Soak and scale: does anything grow that should not, and does the engine hold many workers
and calls at once?

    python benchmarks/soak.py [--backend asyncio|trio] [--engine process|inprocess]
                              [--calls 200000] [--workers 1000] [--in-flight 10000]
                              [--churn 2000] [--chart PATH] [--json PATH] [--quick]

Workers connect over real sockets on 127.0.0.1 to an embedded engine: `anyiii engine` in a
subprocess (`--engine process`, the default, so that the engine's memory and descriptors
are its own), or `anyiii.engine.run()` inside this process (`--engine inprocess`). All
workers live in this process, on `--backend` (the engine subprocess runs on it too). Four
phases, in this order:

1. **soak**: `--calls` calls to an echo function from `--callers` callers (each keeping
   `--concurrency` calls in flight); this process's and the engine's RSS and open file
   descriptors are sampled every `--sample-every` calls. Flat lines mean no leak.
2. **scale**: `--workers` workers connect at once, each registering one function; the time
   until all are connected, until the engine lists them all, then one call to each, then
   RSS and fds with all of them connected (per worker: growth over the count) and after
   they all closed.
3. **in flight**: `--in-flight` calls at once to a function that waits on an event (its
   worker's `max_concurrency` lets all of them run); once the callee runs all of them the
   event is set and the time until every call is answered is measured.
4. **churn**: `--churn` cycles of a worker connecting, registering a function, calling it
   through the engine and disconnecting (`--churn-parallel` at a time), while a caller keeps
   `--concurrency` echo calls running; RSS and fds before (the churn load already running)
   and after (every churned worker gone from the engine's list, garbage collected), and
   sampled every `--churn-sample-every` cycles.

RSS and fds come from psutil when it is installed, else from `/proc/<pid>/status` (VmRSS)
and `/proc/<pid>/fd`. Every call's answer is compared with what was sent; a call that
fails, is not answered or comes back different is counted and printed, and makes the exit
status 1, as does a phase that fails. The soft limit on open files is raised to the hard
limit when the phases need more; if the hard limit is too low, `--workers` is reduced and
the report says so.

`--chart PATH` draws a PNG (matplotlib, the `bench` extra): RSS and fds over the soak and
the churn, latency per phase, RSS per connected worker; `--also RUN.json ...` adds runs
saved earlier with `--json` to the chart (to show both backends in one), and `--replot`
draws the chart of those alone, running nothing. `--quick` runs tiny sizes (the smoke
test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from _processes import engine_process
from _soak_phases import run_phases
from _soak_report import PROBE_SOURCE, draw_chart, load_runs, notes, table

# -- set-up and report ----------------------------------------------------------------------


def fd_budget(args: argparse.Namespace) -> list[str]:
    """Make room for the phases' sockets: raise the soft limit, else reduce `--workers`."""
    said: list[str] = []
    per_worker = 2 if args.engine == "inprocess" else 1  # both ends live here in-process
    spare = 200 + per_worker * (args.callers + 2 + args.churn_parallel)
    needed = spare + per_worker * args.workers
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = hard if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(needed, soft), top), hard))
        said.append(f"open-file soft limit raised from {soft} to {min(max(needed, soft), top)}")
        soft = min(max(needed, soft), top)
    if soft != resource.RLIM_INFINITY and soft < needed:
        workers = max((soft - spare) // per_worker, 1)
        said.append(
            f"--workers reduced from {args.workers} to {workers}: the open-file hard limit "
            f"is {hard}"
        )
        args.workers = workers
    return said


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def unanswered(results: dict[str, Any]) -> list[str]:
    """Rows where a call (or cycle) was not answered exactly."""
    return [
        f"{row['name']}: {row['answered']:,} of {row['count']:,} answered, errors {row['errors']}"
        for row in results["rows"]
        if row["answered"] != row["count"] or row["errors"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--engine", choices=("process", "inprocess"), default="process")
    parser.add_argument("--calls", type=int, default=200_000, help="soak calls")
    parser.add_argument("--callers", type=int, default=4, help="soak caller workers")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight per caller")
    parser.add_argument("--sample-every", type=int, help="soak calls per sample (calls/200)")
    parser.add_argument("--workers", type=int, default=1_000, help="workers connected at once")
    parser.add_argument("--in-flight", type=int, default=10_000, help="calls held at once")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of scale and of in flight (reuse or leak?)"
    )
    parser.add_argument("--churn", type=int, default=2_000, help="connect/close cycles")
    parser.add_argument("--churn-parallel", type=int, default=8, help="churn cycles at once")
    parser.add_argument("--churn-sample-every", type=int, help="cycles per sample (churn/100)")
    parser.add_argument("--phase-timeout", type=float, default=900.0, metavar="SECONDS")
    parser.add_argument("--chart", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    parser.add_argument("--also", nargs="*", default=[], metavar="JSON", help="runs to chart too")
    parser.add_argument("--json", metavar="PATH", help="write the raw results")
    parser.add_argument(
        "--replot", action="store_true", help="run nothing: draw --chart from the --also runs"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args()
    if args.replot:
        if not args.chart or not args.also:
            parser.error("--replot needs --chart and --also")
        draw_chart(Path(args.chart), load_runs(args.also))
        print(f"chart: {args.chart}")
        return
    if args.quick:
        args.calls, args.workers, args.in_flight, args.churn = 200, 10, 100, 20
        args.callers, args.concurrency, args.churn_parallel = 2, 4, 4
    args.sample_every = args.sample_every or max(args.calls // 200, 1)
    args.churn_sample_every = args.churn_sample_every or max(args.churn // 100, 1)
    said = fd_budget(args)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "backend": args.backend,
        "engine": args.engine,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "probe": PROBE_SOURCE,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "load_average_before": os.getloadavg(),
        "params": {
            key: getattr(args, key)
            for key in (
                "calls",
                "callers",
                "concurrency",
                "sample_every",
                "workers",
                "in_flight",
                "rounds",
                "churn",
                "churn_parallel",
                "churn_sample_every",
            )
        },
    }
    if args.engine == "process":
        with engine_process(args.backend) as (url, pid):
            results.update(anyio.run(run_phases, args, url, pid, backend=args.backend))
    else:
        results.update(anyio.run(run_phases, args, None, None, backend=args.backend))
    results["load_average_after"] = os.getloadavg()
    results["said"] = said
    results["unanswered"] = unanswered(results)
    report(args, results)
    if results["failures"] or results["unanswered"]:
        sys.exit(1)


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    print(
        f"soak and scale, backend {args.backend}, engine {args.engine}, {results['date']}, "
        f"commit {results['commit']}, Python {results['python']}, {results['cpus']} CPUs, "
        f"usage from {results['probe']}, open-file limit {results['fd_limit']}, load average "
        f"{results['load_average_before'][0]:.2f} before, "
        f"{results['load_average_after'][0]:.2f} after"
    )
    for line in results["said"]:
        print(f"note: {line}")
    print()
    for line in table(results):
        print(line)
    print()
    for line in notes(results):
        print(f"* {line}")
    for line in results["failures"]:
        print(f"FAILED {line}")
    for line in results["unanswered"]:
        print(f"NOT ANSWERED {line}")
    if not results["failures"] and not results["unanswered"]:
        print("every call was answered")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"json: {args.json}")
    if args.chart:
        draw_chart(Path(args.chart), [*load_runs(args.also), results])
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
