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
import queue
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _processes import cpu_seconds, engine_process, process, raise_fd_limit, rss_kib

# -- the worker scripts ---------------------------------------------------------------------

_DRIVER = """
import gc, json, os, sys, time

def say(*words):
    print(*words, flush=True)

def payload_of(size):
    # a string whose JSON encoding (two quotes, hex digits) is exactly `size` bytes
    return os.urandom(size // 2).hex()[: size - 2]

def error_code(error):
    return str(getattr(error, "code", None) or type(error).__name__)

answered = 0  # echo calls answered with the exact payload, over the whole run

async def first_call(call):
    global answered
    deadline = time.monotonic() + 20
    while True:
        try:
            await call(payload_of(100))
            answered += 1
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await sleep(0.05)

async def check(call, sizes):
    global answered
    for size in sizes:
        payload = payload_of(size)
        result = await call(payload)
        if result != payload:
            say("FAIL", f"a {size}-byte echo came back as {type(result).__name__}"
                f" of length {len(result) if hasattr(result, '__len__') else '?'}")
            return False
        answered += 1
    return True

async def load(call, spec):
    global answered
    payload = payload_of(spec["size"])
    st = {"ok": 0, "mismatched": 0, "record": False, "stop": False}
    errors = {}
    latencies = []
    window = {}

    async def keep_calling():
        while not st["stop"]:
            started = time.perf_counter()
            try:
                result = await call(payload)
            except Exception as error:
                code = error_code(error)
                errors[code] = errors.get(code, 0) + 1
                continue
            if result != payload:
                st["mismatched"] += 1
                continue
            st["ok"] += 1
            if st["record"]:
                latencies.append(time.perf_counter() - started)

    async def control():
        began = time.perf_counter()
        limit = began + spec["limit"]
        while time.perf_counter() < limit and (
            time.perf_counter() - began < spec["warmup"] or st["ok"] < spec["warm_calls"]
        ):
            await sleep(0.01)
        first = st["ok"]
        st["record"] = True
        say("start")
        started = time.perf_counter()
        limit = started + spec["limit"]
        while time.perf_counter() < limit and (
            time.perf_counter() - started < spec["window"]
            or st["ok"] - first < spec["min_calls"]
        ):
            await sleep(0.01)
        window["seconds"] = time.perf_counter() - started
        window["calls"] = st["ok"] - first
        st["record"] = False
        say("end")
        st["stop"] = True

    await gather(control(), *(keep_calling() for _ in range(spec["in_flight"])))
    answered += st["ok"]
    latencies.sort()
    return {
        "calls": window["calls"],
        "seconds": window["seconds"],
        "p50_us": latencies[len(latencies) // 2] * 1e6 if latencies else float("nan"),
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6 if latencies else float("nan"),
        "errors": errors,
        "mismatched": st["mismatched"],
    }

async def hold(call_hold, spec):
    payload = payload_of(100)
    st = {"ok": 0, "mismatched": 0}
    errors = {}

    async def one():
        try:
            result = await call_hold(payload)
        except Exception as error:
            code = error_code(error)
            errors[code] = errors.get(code, 0) + 1
            return
        st["ok" if result == payload else "mismatched"] += 1

    gc.collect()
    say("idle")
    await readline()
    await gather(*(one() for _ in range(spec["count"])))
    return {"ok": st["ok"], "mismatched": st["mismatched"], "errors": errors}

async def serve(call, call_hold):
    await first_call(call)
    say("READY")
    while True:
        line = (await readline()).strip()
        if not line or line == "quit":
            break
        spec = json.loads(line)
        if spec["kind"] == "check":
            if not await check(call, spec["sizes"]):
                return
            say("checked")
        elif spec["kind"] == "load":
            say(json.dumps(await load(call, spec)))
        elif spec["kind"] == "hold":
            say(json.dumps(await hold(call_hold, spec)))
    say(json.dumps({"answered": answered}))
"""

OFFICIAL_CALLER = _DRIVER + textwrap.dedent(
    """
    import asyncio
    from iii import InitOptions, register_worker

    client = register_worker(sys.argv[1], InitOptions(worker_name="bench-caller"))
    sleep = asyncio.sleep

    async def gather(*coroutines):
        await asyncio.gather(*coroutines)

    async def readline():
        return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def call(payload):
        return await client.trigger_async({"function_id": "bench::echo", "payload": payload})

    async def call_hold(payload):
        return await client.trigger_async({"function_id": "bench::hold", "payload": payload})

    asyncio.run(serve(call, call_hold))
    client.shutdown()
    """
)

ANYIII_CALLER = _DRIVER + textwrap.dedent(
    """
    import anyio
    import anyiii

    sleep = anyio.sleep

    async def gather(*coroutines):
        async with anyio.create_task_group() as tasks:
            for coroutine in coroutines:
                tasks.start_soon(lambda c=coroutine: c)

    async def readline():
        return await anyio.to_thread.run_sync(sys.stdin.readline)

    async def main():
        async with anyiii.connect(sys.argv[1], worker_name="bench-caller") as worker:

            async def call(payload):
                return await worker.trigger_async(
                    {"function_id": "bench::echo", "payload": payload}
                )

            async def call_hold(payload):
                return await worker.trigger_async(
                    {"function_id": "bench::hold", "payload": payload}
                )

            await serve(call, call_hold)

    anyio.run(main, backend=sys.argv[2])
    """
)

OFFICIAL_CALLEE = textwrap.dedent(
    """
    import asyncio, sys, time
    from iii import InitOptions, register_worker

    client = register_worker(sys.argv[1], InitOptions(worker_name="bench-callee"))
    served = held = 0
    loop = release = None

    async def hold(data):
        global held, loop, release
        if release is None:  # handlers run on the SDK's own event loop
            loop, release = asyncio.get_running_loop(), asyncio.Event()
        held += 1
        await release.wait()
        return data

    async def echo(data):
        global served
        served += 1
        return data

    client.register_function("bench::hold", hold)
    client.register_function("bench::echo", echo)  # registered last: it answering means both are
    print("READY", flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "hold":
            deadline = time.monotonic() + 120
            while held < int(command[1]) and time.monotonic() < deadline:
                time.sleep(0.01)
            print("held", held, flush=True)
        elif command[0] == "release":
            loop.call_soon_threadsafe(release.set)
        elif command[0] == "count":
            print("served", served, flush=True)
    client.shutdown()
    """
)

ANYIII_CALLEE = textwrap.dedent(
    """
    import contextlib, sys
    import anyio
    import anyiii

    async def main():
        url, capacity = sys.argv[1], int(sys.argv[3])
        async with contextlib.AsyncExitStack() as stack:
            # the echo keeps the default WorkerLimits (256 running, 4,096 queued)
            worker = await stack.enter_async_context(
                anyiii.connect(url, worker_name="bench-callee")
            )
            served = 0
            release = anyio.Event()

            @worker.function("bench::echo")
            async def echo(data):
                nonlocal served
                served += 1
                return data

            holder = worker
            if capacity:
                # held calls: a connection of their own whose limits let all of them run
                holding = anyiii.WorkerLimits(max_concurrency=capacity)
                holder = await stack.enter_async_context(
                    anyiii.connect(url, worker_name="bench-callee-hold", limits=holding)
                )

                @holder.function("bench::hold")
                async def hold(data):
                    await release.wait()
                    return data

                # registered before the caller starts (which waits for the echo itself)
                query = {"function_id": "engine::workers::list", "payload": {"search": "bench"}}
                with anyio.fail_after(20):
                    while not any(
                        found["id"] == holder.worker_id and found["function_count"] == 1
                        for found in (await worker.trigger_async(query))["workers"]
                    ):
                        await anyio.sleep(0.05)
            print("READY", flush=True)
            while True:
                command = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
                if not command or command[0] == "quit":
                    break
                if command[0] == "hold":
                    with anyio.move_on_after(120):
                        while holder.statistics().running_invocations < int(command[1]):
                            await anyio.sleep(0.01)
                    print("held", holder.statistics().running_invocations, flush=True)
                elif command[0] == "release":
                    release.set()
                elif command[0] == "count":
                    print("served", served, flush=True)

    anyio.run(main, backend=sys.argv[2])
    """
)

IDLE_WORKERS = textwrap.dedent(
    """
    import gc, resource, sys
    import anyio
    import anyiii

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    async def idle(data):
        return data

    async def hold_open(url, count, functions, stop, done):
        per_worker = [functions // count + (i < functions % count) for i in range(count)]
        opening = anyio.Semaphore(32)  # handshakes at once
        connected = []

        async def one(i):
            await opening.acquire()
            opened = False
            try:
                async with anyiii.connect(url, worker_name=f"idle-{i}") as worker:
                    for j in range(per_worker[i]):
                        worker.register_function(f"idle::{i}::{j}", idle)
                    connected.append(worker)
                    opening.release()
                    opened = True
                    await stop.wait()
            finally:
                if not opened:
                    opening.release()

        async with anyio.create_task_group() as tasks:
            for i in range(count):
                tasks.start_soon(one, i)
            seen = (0, 0)
            with anyio.move_on_after(180):
                while len(connected) < count:
                    await anyio.sleep(0.05)
                while seen != (count, functions):  # until the engine lists them all
                    listed = await connected[0].trigger_async(
                        {"function_id": "engine::workers::list", "payload": {"search": "idle-"}}
                    )
                    idle_workers = [w for w in listed["workers"] if w["name"].startswith("idle-")]
                    seen = (len(idle_workers), sum(w["function_count"] for w in idle_workers))
                    if seen != (count, functions):
                        await anyio.sleep(0.1)
            gc.collect()
            print("open", rss_kib(), *seen, flush=True)
        done.set()

    async def main():
        async with anyio.create_task_group() as tasks:
            print("READY", flush=True)
            while True:
                command = (await anyio.to_thread.run_sync(sys.stdin.readline)).split()
                if not command or command[0] == "quit":
                    break
                if command[0] == "warm":  # one connection opened and closed: imports warmed
                    async with anyiii.connect(command[1], worker_name="bench-warm-up"):
                        pass
                    gc.collect()
                    print("warm", rss_kib(), flush=True)
                elif command[0] == "open":
                    stop, done = anyio.Event(), anyio.Event()
                    url, count, functions = command[1], int(command[2]), int(command[3])
                    tasks.start_soon(hold_open, url, count, functions, stop, done)
                elif command[0] == "close":
                    stop.set()
                    await done.wait()
                    print("closed", flush=True)

    anyio.run(main)
    """
)


@dataclass(frozen=True)
class Sdk:
    """One SDK's worker scripts: both workers of a pair use the same one."""

    callee: str
    caller: str
    backend: str | None  # anyiii's anyio backend; None for the official SDK


SDKS = {
    "official iii-sdk": Sdk(OFFICIAL_CALLEE, OFFICIAL_CALLER, None),
    "anyiii asyncio": Sdk(ANYIII_CALLEE, ANYIII_CALLER, "asyncio"),
    "anyiii trio": Sdk(ANYIII_CALLEE, ANYIII_CALLER, "trio"),
}
OFFICIAL = "official iii-sdk"
ANYIII = ("anyiii asyncio", "anyiii trio")

# -- talking to the processes ---------------------------------------------------------------


class SanityError(Exception):
    """A sanity check failed: the benchmark would measure the wrong thing."""


class PhaseFailed(Exception):
    """A process died or went silent under load: reported, not hidden."""


class Lines:
    """A child's stdout, read by a thread, so that every wait has a deadline."""

    def __init__(self, child: subprocess.Popen[str], what: str) -> None:
        self.child, self.what = child, what
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def next(self, timeout: float = 120.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise PhaseFailed(f"{self.what} said nothing for {timeout:.0f} s") from None
        if line is None:
            self._lines.put(None)
            self.child.wait(timeout=10)
            raise PhaseFailed(f"{self.what} exited (code {self.child.returncode})")
        if line.startswith("FAIL"):
            raise SanityError(f"{self.what}: {line}")
        return line

    def expect(self, word: str, timeout: float = 120.0) -> list[str]:
        """The next line, which must start with `word`; its other words."""
        line = self.next(timeout)
        words = line.split()
        if not words or words[0] != word:
            raise PhaseFailed(f"{self.what} said {line[:200]!r} instead of {word!r}")
        return words[1:]

    def send(self, text: str) -> None:
        assert self.child.stdin is not None
        try:
            self.child.stdin.write(text + "\n")
            self.child.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise PhaseFailed(f"{self.what} is gone ({error})") from None


@contextmanager
def started(argv: Sequence[str], what: str) -> Iterator[Lines]:
    """A process, killed on the way out (`process()`); yields its lines at once."""
    with process(*argv) as child:
        yield Lines(child, what)


def wait_ready(*processes: Lines) -> None:
    """Wait until each of `processes` (started together) says READY."""
    for lines in processes:
        lines.expect("READY", timeout=90)


HELPER = [sys.executable, "-c", IDLE_WORKERS]


def warm_helper(helper: Lines, url: str) -> int:
    """One connection to the engine at `url` opened and closed by the helper, so that
    imports, caches and the engine's first-connection costs are paid; the helper's RSS
    after it, in KiB."""
    helper.send(f"warm {url}")
    return int(helper.expect("warm", timeout=60)[0])


@contextmanager
def idle_workers(helper: Lines, url: str, count: int, functions: int) -> Iterator[int]:
    """The helper holds `count` idle anyiii workers with `functions` functions in all on
    the engine at `url`, for the length of the block; yields its RSS in KiB once the engine
    lists every one of them (a sanity check)."""
    helper.send(f"open {url} {count} {functions}")
    rss, workers, listed = (int(w) for w in helper.expect("open", timeout=240))
    if (workers, listed) != (count, functions):
        raise SanityError(
            f"the engine lists {workers} idle workers and {listed} of their functions, "
            f"not {count} and {functions}"
        )
    yield rss
    helper.send("close")
    helper.expect("closed", timeout=120)


@dataclass
class Timing:
    """How long a load phase warms up and measures."""

    window: float = 2.0
    warmup: float = 0.5
    waves: int = 2  # a window also lasts at least this many full waves of calls
    limit: float = 90.0  # give up waiting for warm-up or window after this long


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


@dataclass
class Plan:
    levels: list[int]
    sizes: list[int]
    size_in_flight: int
    hold: int  # calls held for the memory measurement; 0 for none
    timing: Timing


@dataclass
class PairResult:
    levels: dict[int, dict[str, Any]] = field(default_factory=dict)
    sizes: dict[int, dict[str, Any]] = field(default_factory=dict)
    hold: dict[str, float] = field(default_factory=dict)
    failed: str | None = None  # what went wrong, when a phase failed under load


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


@dataclass(frozen=True)
class EngineLoad:
    label: str
    workers: int
    functions: int


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


# -- reports --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return statistics.median(present) if present else math.nan


def ratio_text(ratios: Sequence[float]) -> str:
    present = [r for r in ratios if not math.isnan(r)]
    if not present:
        return "n/a"
    rounds = ", ".join(f"{r:.2f}" for r in ratios)
    return f"{statistics.median(present):.2f}x ({rounds})"


def count_text(n: float) -> str:
    return "n/a" if math.isnan(n) else f"{n:,.0f}"


def rate_text(n: float) -> str:
    """Three significant digits below 100, whole numbers above."""
    if math.isnan(n):
        return "n/a"
    return f"{n:,.0f}" if n >= 100 else f"{n:.3g}"


def errors_text(phases: Sequence[dict[str, Any]]) -> str:
    totals: dict[str, int] = {}
    for phase in phases:
        for code, n in phase["errors"].items():
            totals[code] = totals.get(code, 0) + n
    return ", ".join(f"{code}: {n:,}" for code, n in sorted(totals.items())) or "0"


def phase_values(runs: list[PairResult], key: str, level: int, what: str) -> list[float]:
    """`what` of the phase at `level` (in `levels` or `sizes`) in every round (NaN where
    the round has no such phase)."""
    values = []
    for run in runs:
        phase = getattr(run, key).get(level)
        values.append(math.nan if phase is None else float(phase[what]))
    return values


def report_inflight(runs: dict[str, list[PairResult]], levels: list[int]) -> None:
    print("\n### a. Calls in flight (100-byte echo)\n")
    print(
        "| SDK | in flight | calls/s | p50 µs | p99 µs | caller CPU µs/call "
        "| callee CPU µs/call | engine CPU µs/call | errors | calls/s vs official |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for sdk, rounds in runs.items():
        for level in levels:
            phases = [r.levels[level] for r in rounds if level in r.levels]
            if not phases:
                failures = "; ".join(r.failed for r in rounds if r.failed) or "not run"
                print(f"| {sdk} | {level:,} | failed: {failures} | | | | | | | |")
                continue

            def med(what: str, lv: int = level, rs: list[PairResult] = rounds) -> float:
                return median(phase_values(rs, "levels", lv, what))

            versus = ""
            if sdk != OFFICIAL and OFFICIAL in runs:
                ours = phase_values(rounds, "levels", level, "rate")
                theirs = phase_values(runs[OFFICIAL], "levels", level, "rate")
                versus = ratio_text([o / t for o, t in zip(ours, theirs, strict=True)])
            print(
                f"| {sdk} | {level:,} | {count_text(med('rate'))} | {count_text(med('p50_us'))} "
                f"| {count_text(med('p99_us'))} | {count_text(med('caller_cpu_us'))} "
                f"| {count_text(med('callee_cpu_us'))} | {count_text(med('engine_cpu_us'))} "
                f"| {errors_text(phases)} | {versus} |"
            )
    stopped = [(sdk, r.failed) for sdk, rs in runs.items() for r in rs if r.failed]
    for sdk, failure in stopped:
        print(f"\n{sdk}: a round stopped early: {failure}")


def size_label(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:g} MiB"
    if size >= 1024:
        return f"{size / 1024:g} KiB"
    return f"{size} B"


def report_sizes(runs: dict[str, list[PairResult]], sizes: list[int], in_flight: int) -> None:
    print(f"\n### b. Payload size (echo, {in_flight} in flight; MB/s = 10^6 payload bytes/s)\n")
    names = list(runs)
    others = [sdk for sdk in names if sdk != OFFICIAL]
    header = " | ".join(f"{sdk} MB/s" for sdk in names)
    ratios = " | ".join(f"{sdk} / official" for sdk in others) if OFFICIAL in runs else ""
    print(f"| payload | {header} |" + (f" {ratios} |" if ratios else ""))
    print("|---|" + "---:|" * len(names) + ("---|" * len(others) if ratios else ""))
    for size in sizes:
        cells = [rate_text(median(phase_values(runs[sdk], "sizes", size, "mb_s"))) for sdk in names]
        row = f"| {size_label(size)} | " + " | ".join(cells) + " |"
        if ratios:
            theirs = phase_values(runs[OFFICIAL], "sizes", size, "mb_s")
            for sdk in others:
                ours = phase_values(runs[sdk], "sizes", size, "mb_s")
                row += f" {ratio_text([o / t for o, t in zip(ours, theirs, strict=True)])} |"
        print(row)
    errors = [
        f"{sdk} {errors_text([p for r in rs for p in r.sizes.values()])}"
        for sdk, rs in runs.items()
    ]
    print("\nerrors: " + "; ".join(errors))


def report_routing(runs: dict[str, list[dict[str, Any]]], configs: list[EngineLoad]) -> None:
    print("\n### c. Routing cost (anyiii asyncio pair, 100 in flight, 100-byte echo)\n")
    print(
        "| engine also holds | connected workers | user functions | calls/s "
        "| engine CPU µs/call | engine CPU vs first row |"
    )
    print("|---|---:|---:|---:|---:|---|")
    base = [r["engine_cpu_us"] for r in runs[configs[0].label]]
    for config in configs:
        rounds = runs[config.label]
        cpu = [r["engine_cpu_us"] for r in rounds]
        print(
            f"| {config.label} | {config.workers + 2:,} | {config.functions + 1:,} "
            f"| {median([r['rate'] for r in rounds]):,.0f} | {median(cpu):.1f} "
            f"| {ratio_text([c / b for c, b in zip(cpu, base, strict=True)])} |"
        )


def report_memory(
    engine_runs: list[dict[str, float]],
    workers: int,
    hold_runs: dict[str, list[dict[str, float]]],
    held: int,
) -> None:
    print("\n### d. Memory (VmRSS growth, KiB)\n")
    print("| memory | process | count | KiB each (median) | per round |")
    print("|---|---|---:|---:|---|")

    def row(what: str, who: str, count: int, values: list[float]) -> None:
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {what} | {who} | {count:,} | {median(values):.2f} | {rounds} |")

    if engine_runs:
        row("per connected idle worker", "engine", workers, [r["engine_kib"] for r in engine_runs])
        row(
            "per connection",
            "anyiii helper holding them",
            workers,
            [r["helper_kib"] for r in engine_runs],
        )
    for sdk, runs in hold_runs.items():
        row("per pending call", f"{sdk} caller", held, [r["caller_kib"] for r in runs])
    for sdk, runs in hold_runs.items():
        row("per held invocation", f"{sdk} callee", held, [r["callee_kib"] for r in runs])


# -- charts (matplotlib is the `bench` extra: imported only here) ---------------------------


def draw_charts(
    out: Path,
    pairs: dict[str, list[PairResult]],
    plan: Plan,
    series: set[str],
    routing: dict[str, list[dict[str, Any]]],
    configs: list[EngineLoad],
    engine_mem: list[dict[str, float]],
    holds: dict[str, list[dict[str, float]]],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    if "a" in series:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        for sdk, rounds in pairs.items():
            xs = [lv for lv in plan.levels if any(lv in r.levels for r in rounds)]
            if not xs:
                continue

            def med(
                what: str, rs: list[PairResult] = rounds, levels: list[int] = xs
            ) -> list[float]:
                return [median(phase_values(rs, "levels", lv, what)) for lv in levels]

            axes[0].plot(xs, med("rate"), marker="o", label=sdk)
            axes[1].plot(xs, [v / 1000 for v in med("p50_us")], marker="o", label=sdk)
            total = [
                c + e + n
                for c, e, n in zip(
                    med("caller_cpu_us"), med("callee_cpu_us"), med("engine_cpu_us"), strict=True
                )
            ]
            (line,) = axes[2].plot(xs, total, marker="o", label=f"{sdk}: all three")
            axes[2].plot(
                xs, med("engine_cpu_us"), ls="--", color=line.get_color(), label=f"{sdk}: engine"
            )
        axes[0].set(title="Throughput", ylabel="calls/s")
        axes[1].set(title="p50 latency", ylabel="ms", yscale="log")
        axes[2].set(title="CPU per call", ylabel="µs (caller + callee + engine)")
        for ax in axes:
            ax.set(xscale="log", xlabel="calls in flight")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylim(bottom=0)
        axes[2].set_ylim(bottom=0)
        axes[0].legend(fontsize=8)
        axes[2].legend(fontsize=7)
        save(fig, "scaling-inflight.png")

    if "b" in series:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        width = 0.8 / max(len(pairs), 1)
        for i, (sdk, rounds) in enumerate(pairs.items()):
            values = [median(phase_values(rounds, "sizes", s, "mb_s")) for s in plan.sizes]
            offset = (i - (len(pairs) - 1) / 2) * width
            ax.bar([k + offset for k in range(len(plan.sizes))], values, width, label=sdk)
        ax.set_xticks(range(len(plan.sizes)), [size_label(s) for s in plan.sizes])
        ax.set(
            title=f"Echo throughput by payload size ({plan.size_in_flight} in flight)",
            ylabel="MB/s of payload (log)",
            yscale="log",
            xlabel="payload",
        )
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        save(fig, "scaling-payload.png")

    if "c" in series:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        labels = [c.label for c in configs]
        cpu = [median([r["engine_cpu_us"] for r in routing[label]]) for label in labels]
        rate = [median([r["rate"] for r in routing[label]]) for label in labels]
        axes[0].bar(range(len(labels)), cpu, color="tab:green")
        axes[0].set(title="Engine CPU per routed call", ylabel="µs")
        axes[1].bar(range(len(labels)), rate, color="tab:blue")
        axes[1].set(title="Throughput (anyiii asyncio pair, 100 in flight)", ylabel="calls/s")
        for ax in axes:
            ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
            ax.grid(True, axis="y", alpha=0.3)
        save(fig, "scaling-routing.png")

    if "d" in series:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        bars: list[tuple[str, float]] = []
        if engine_mem:
            bars.append(("engine\nper worker", median([r["engine_kib"] for r in engine_mem])))
            bars.append(("helper\nper connection", median([r["helper_kib"] for r in engine_mem])))
        for sdk, runs in holds.items():
            bars.append((f"{sdk}\ncaller per call", median([r["caller_kib"] for r in runs])))
        for sdk, runs in holds.items():
            bars.append((f"{sdk}\ncallee per call", median([r["callee_kib"] for r in runs])))
        ax.bar(range(len(bars)), [v for _, v in bars], color="tab:purple")
        ax.set_xticks(range(len(bars)), [label for label, _ in bars], fontsize=7)
        ax.set(title="Resident memory growth", ylabel="KiB each")
        ax.grid(True, axis="y", alpha=0.3)
        save(fig, "scaling-memory.png")
    return written


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
