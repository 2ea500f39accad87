"""The programs `scaling.py` runs: the caller and callee workers of each SDK, and the
helper that holds idle anyiii workers open. Each is Python source run with `python -c`;
they talk to `scaling.py` over stdin and stdout (`_scaling_workers.py`)."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

# -- the worker scripts ---------------------------------------------------------------------

_DRIVER = """
import gc, json, os, sys, time

def say(*words):
    print(*words, flush=True)

def payload_of(size):
    # a string whose JSON encoding (two quotes, hex digits) is exactly `size` bytes
    return os.urandom(size // 2).hex()[: size - 2]

def count_error(errors, error):
    # a failed call counts under its error code: the exception's `code`, else its type
    code = str(getattr(error, "code", None) or type(error).__name__)
    errors[code] = errors.get(code, 0) + 1

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
                count_error(errors, error)
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
            count_error(errors, error)
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

#: The helper process: holds idle anyiii workers open on the engine (series c and d).
HELPER = [sys.executable, "-c", IDLE_WORKERS]
