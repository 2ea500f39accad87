"""The phases of `soak.py` (soak, scale, in flight, churn) and the workers they share, all
in one process on one event loop, against an engine reached over 127.0.0.1."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import anyio

import anyiii
from _soak_report import Probe, latency_stats
from _soak_support import (
    ECHO,
    LONG_MS,
    Latencies,
    collected_objects,
    count_error,
    echo,
    failure_text,
    highest,
    listed,
    wait_until,
)


class Soak:
    """The workers every phase shares (one callee, the callers) and the phases."""

    def __init__(self, args: argparse.Namespace, url: str, probe: Probe) -> None:
        self.args = args
        self.url = url
        self.probe = probe
        self.callers: list[anyiii.Worker] = []
        self.results: dict[str, Any] = {"rows": [], "failures": []}

    def row(self, name: str, timed: str, **fields: Any) -> dict[str, Any]:
        row = {"name": name, "timed": timed, "errors": {}, **fields}
        self.results["rows"].append(row)
        return row

    async def echo_calls(
        self,
        worker: anyiii.Worker,
        take: Callable[[], int | None],
        latencies: Latencies,
        errors: dict[str, int],
        answered: Callable[[], None],
    ) -> None:
        """Echo calls one after another while `take()` gives a number to send."""
        while (number := take()) is not None:
            payload = f"soak call {number}"
            started = time.perf_counter()
            try:
                result = await worker.trigger_async({"function_id": ECHO, "payload": payload})
            except anyiii.InvocationError as error:
                count_error(errors, error)
                continue
            if result != payload:
                errors["mismatched"] = errors.get("mismatched", 0) + 1
                continue
            latencies.append(time.perf_counter() - started)
            answered()

    # -- 1. soak --------------------------------------------------------------------------

    async def soak(self) -> None:
        args = self.args
        warm = {"left": min(2_000, max(args.calls // 20, 10))}

        def take_warm() -> int | None:
            warm["left"] -= 1
            return warm["left"] if warm["left"] >= 0 else None

        ignored = Latencies(0)
        warm_errors: dict[str, int] = {}
        async with anyio.create_task_group() as tasks:
            for caller in self.callers:
                for _ in range(args.concurrency):
                    tasks.start_soon(
                        self.echo_calls, caller, take_warm, ignored, warm_errors, lambda: None
                    )
        latencies = Latencies(args.calls)
        objects_before = collected_objects()
        row = self.row("soak", "call", count=args.calls, answered=0)
        errors: dict[str, int] = row["errors"]
        state: dict[str, int] = {"issued": 0, "done": 0, "next": args.sample_every}
        samples = [self.probe.sample(0, 0.0)]
        row["before"] = self.probe.take()
        started = time.perf_counter()

        def take() -> int | None:
            if state["issued"] >= args.calls:
                return None
            state["issued"] += 1
            return state["issued"]

        def answered() -> None:
            state["done"] += 1
            if state["done"] >= state["next"]:
                state["next"] += args.sample_every
                samples.append(self.probe.sample(state["done"], time.perf_counter() - started))

        async with anyio.create_task_group() as tasks:
            for caller in self.callers:
                for _ in range(args.concurrency):
                    tasks.start_soon(self.echo_calls, caller, take, latencies, errors, answered)
        row["seconds"] = time.perf_counter() - started
        row["answered"] = state["done"]
        row["after"] = self.probe.take()  # before the statistics: they make a sorted list
        last = self.probe.sample(state["done"], row["seconds"], row["after"])
        if samples[-1]["at"] == state["done"]:
            samples[-1] = last
        else:
            samples.append(last)
        row["peak"] = highest(samples, self.probe.pids)
        row["latency_ms"] = latency_stats(latencies.values())
        self.results["soak"] = {
            "warmup_calls": min(2_000, max(args.calls // 20, 10)),
            "warmup_errors": warm_errors,
            "samples": samples,
            "gc_objects": [objects_before, collected_objects()],
        }

    # -- 2. scale -------------------------------------------------------------------------

    async def scale(self, round_: int) -> None:
        count = self.args.workers
        name = f"scale (round {round_})"
        row = self.row(f"{name}: connect", "connect + register", count=count, answered=0)
        calls = self.row(f"{name}: one call each", "call", count=count, answered=0)
        out: dict[str, Any] = {"round": round_, "per_worker_kib": {}}
        self.results.setdefault("scale", []).append(out)
        out["gc_objects"] = [collected_objects()]
        row["before"] = calls["before"] = out["before"] = self.probe.take()
        stop = anyio.Event()
        settled = anyio.Event()
        connect_times: list[float] = []
        workers: list[anyiii.Worker] = []
        state = {"ended": 0}

        def one_ended() -> None:
            state["ended"] += 1
            if state["ended"] == count:
                settled.set()

        async def one(i: int) -> None:
            begun = time.perf_counter()
            up = False
            try:
                async with anyiii.connect(
                    self.url, worker_name=f"soak-scale-{i}", reconnect=False
                ) as worker:
                    worker.register_function(f"soak::scale::{i}", echo)
                    connect_times.append(time.perf_counter() - begun)
                    workers.append(worker)
                    up = True
                    one_ended()
                    await stop.wait()
            except Exception as error:  # a worker that failed to connect, or dropped
                count_error(row["errors"], error)
                if not up:
                    one_ended()

        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for i in range(count):
                tasks.start_soon(one, i)
            try:
                with anyio.fail_after(self.args.phase_timeout):
                    await settled.wait()
                row["seconds"] = out["connect_seconds"] = time.perf_counter() - started
                row["answered"] = out["connected"] = len(workers)
                row["latency_ms"] = latency_stats(connect_times)
                caller = self.callers[0]

                async def all_listed() -> bool:
                    found = await listed(caller, "soak-scale-")
                    return len(found) == len(workers) and all(
                        w["function_count"] == 1 for w in found
                    )

                await wait_until(all_listed, "the engine listing every worker", 60, 0.1)
                out["listed_seconds"] = time.perf_counter() - started
                await self.call_each(calls, len(workers))
                out["gc_objects"].append(collected_objects())
                row["peak"] = calls["peak"] = out["peak"] = self.probe.take()
            finally:
                closing = time.perf_counter()
                stop.set()
        out["close_seconds"] = time.perf_counter() - closing
        workers.clear()  # the closed workers are not kept alive by this benchmark

        async def none_listed() -> bool:
            return not await listed(self.callers[0], "soak-scale-")

        await wait_until(none_listed, "the engine dropping the closed workers", 60, 0.1)
        out["gc_objects"].append(collected_objects())
        row["after"] = calls["after"] = out["after"] = self.probe.take()
        for role in self.probe.pids:
            grown = out["peak"][role]["rss_kib"] - out["before"][role]["rss_kib"]
            out["per_worker_kib"][role] = grown / max(out.get("connected", 0), 1)

    async def call_each(self, row: dict[str, Any], count: int) -> None:
        """One call to each scale worker's function, all at once, from one caller."""
        latencies: list[float] = []
        caller = self.callers[0]

        async def call(i: int) -> None:
            payload = f"scale worker {i}"
            begun = time.perf_counter()
            try:
                result = await caller.trigger_async(
                    {"function_id": f"soak::scale::{i}", "payload": payload}
                )
            except anyiii.InvocationError as error:
                count_error(row["errors"], error)
                return
            if result != payload:
                count_error(row["errors"], ValueError("mismatched"))
                return
            latencies.append(time.perf_counter() - begun)
            row["answered"] += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for i in range(count):
                tasks.start_soon(call, i)
        row["seconds"] = time.perf_counter() - started
        row["latency_ms"] = latency_stats(latencies)

    # -- 3. in flight ---------------------------------------------------------------------

    async def in_flight(self, round_: int) -> None:
        count = self.args.in_flight
        name = f"in flight (round {round_})"
        row = self.row(name, "answer after release", count=count, answered=0)
        out: dict[str, Any] = {"round": round_}
        self.results.setdefault("in_flight", []).append(out)
        release = anyio.Event()

        async def hold(data: Any) -> Any:
            await release.wait()
            return data

        limits = anyiii.WorkerLimits(max_concurrency=count)
        async with anyiii.connect(
            self.url, worker_name="soak-holder", limits=limits, reconnect=False
        ) as holder:
            holder.register_function("soak::hold", hold)

            async def registered() -> bool:
                found = await listed(self.callers[0], "soak-holder")
                return len(found) == 1 and found[0]["function_count"] == 1

            await wait_until(registered, "the engine listing the holding function", 30)
            out["gc_objects"] = [collected_objects()]
            row["before"] = self.probe.take()
            answered_at: list[float] = []
            caller = self.callers[0]

            async def call(i: int) -> None:
                payload = f"held call {i}"
                try:
                    result = await caller.trigger_async(
                        {"function_id": "soak::hold", "payload": payload}
                    )
                except anyiii.InvocationError as error:
                    count_error(row["errors"], error)
                    return
                if result != payload:
                    count_error(row["errors"], ValueError("mismatched"))
                    return
                answered_at.append(time.perf_counter())

            started = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for i in range(count):
                    tasks.start_soon(call, i)

                async def all_running() -> bool:
                    return holder.statistics().running_invocations >= count or bool(row["errors"])

                try:
                    await wait_until(all_running, "every held call running", 300, 0.01)
                finally:
                    out["held"] = holder.statistics().running_invocations
                    out["hold_seconds"] = time.perf_counter() - started
                    row["peak"] = self.probe.take()
                    released = time.perf_counter()
                    release.set()
            row["seconds"] = out["answer_seconds"] = time.perf_counter() - released
            row["answered"] = len(answered_at)
            row["latency_ms"] = latency_stats([t - released for t in answered_at])
            answered_at.clear()

        async def holder_gone() -> bool:
            return not await listed(self.callers[0], "soak-holder")

        await wait_until(holder_gone, "the engine dropping the holder", 60, 0.1)
        out["gc_objects"].append(collected_objects())
        row["after"] = self.probe.take()

    # -- 4. churn -------------------------------------------------------------------------

    async def churn(self) -> None:
        args = self.args
        cycles = args.churn
        row = self.row("churn", "connect, register, call, close", count=cycles, answered=0)
        load = self.row("churn: calls meanwhile", "call", count=0, answered=0)
        out: dict[str, Any] = {"cycles": cycles}
        self.results["churn"] = out
        state: dict[str, int] = {"next": 0, "done": 0, "sample": args.churn_sample_every, "load": 0}
        load_latencies = Latencies(100_000)
        cycle_times = Latencies(cycles)
        samples: list[dict[str, Any]] = []
        churning = {"on": True}

        def take_load() -> int | None:
            if not churning["on"]:
                return None
            state["load"] += 1
            return state["load"]

        def load_answered() -> None:
            load["answered"] += 1

        async def cycle(k: int) -> None:
            begun = time.perf_counter()
            async with anyiii.connect(
                self.url, worker_name=f"soak-churn-{k}", reconnect=False
            ) as worker:
                worker.register_function(f"soak::churn::{k}", echo)
                payload = f"churn cycle {k}"
                result = await worker.trigger_async(
                    {"function_id": f"soak::churn::{k}", "payload": payload}
                )
                if result != payload:
                    raise ValueError("mismatched")
            cycle_times.append(time.perf_counter() - begun)

        async def churner() -> None:
            while state["next"] < cycles:
                k = state["next"]
                state["next"] += 1
                try:
                    await cycle(k)
                except Exception as error:  # connection refused, dropped, call failed
                    count_error(row["errors"], error)
                else:
                    row["answered"] += 1
                state["done"] += 1
                if state["done"] >= state["sample"]:
                    state["sample"] += args.churn_sample_every
                    samples.append(self.probe.sample(state["done"], time.perf_counter() - started))

        async with anyio.create_task_group() as background:
            load_caller = self.callers[-1]
            for _ in range(args.concurrency):
                background.start_soon(
                    self.echo_calls,
                    load_caller,
                    take_load,
                    load_latencies,
                    load["errors"],
                    load_answered,
                )
            await anyio.sleep(0.2)  # the load is running when the baseline is taken
            out["gc_objects"] = [collected_objects()]
            row["before"] = load["before"] = out["before"] = self.probe.take()
            started = time.perf_counter()
            samples.append(self.probe.sample(0, 0.0))
            async with anyio.create_task_group() as tasks:
                for _ in range(min(args.churn_parallel, cycles)):
                    tasks.start_soon(churner)
            row["seconds"] = load["seconds"] = time.perf_counter() - started
            churning["on"] = False
        load["count"] = state["load"]
        row["latency_ms"] = latency_stats(cycle_times.values())
        load["latency_ms"] = latency_stats(load_latencies.values())

        async def none_listed() -> bool:
            return not await listed(self.callers[0], "soak-churn-")

        await wait_until(none_listed, "the engine dropping the churned workers", 60, 0.1)
        await anyio.sleep(0.5)  # closed sockets are released on both sides
        out["gc_objects"].append(collected_objects())
        row["after"] = load["after"] = out["after"] = self.probe.take()
        samples.append(self.probe.sample(cycles, row["seconds"], row["after"]))
        out["samples"] = samples
        row["peak"] = load["peak"] = highest(samples, self.probe.pids)

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> None:
        args = self.args
        callee_limits = anyiii.WorkerLimits(max_concurrency=max(256, args.concurrency * 4))
        caller_limits = anyiii.WorkerLimits(invocation_timeout_ms=LONG_MS)
        async with AsyncExitStack() as stack:
            callee = await stack.enter_async_context(
                anyiii.connect(self.url, worker_name="soak-callee", limits=callee_limits)
            )
            callee.register_function(ECHO, echo)
            for i in range(args.callers):
                self.callers.append(
                    await stack.enter_async_context(
                        anyiii.connect(
                            self.url, worker_name=f"soak-caller-{i}", limits=caller_limits
                        )
                    )
                )

            async def routable() -> bool:
                try:
                    await self.callers[0].trigger_async({"function_id": ECHO, "payload": 1})
                except anyiii.InvocationError:
                    return False
                return True

            await wait_until(routable, "the echo function answering", 30)
            phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [("soak", self.soak)]
            for round_ in range(1, args.rounds + 1):
                phases.append((f"scale, round {round_}", partial(self.scale, round_)))
            for round_ in range(1, args.rounds + 1):
                phases.append((f"in flight, round {round_}", partial(self.in_flight, round_)))
            phases.append(("churn", self.churn))
            for name, phase in phases:
                began = time.perf_counter()
                try:
                    with anyio.fail_after(args.phase_timeout):
                        await phase()
                except Exception as failure:  # reported with the table, then the next phase
                    self.results["failures"].append(f"{name}: {failure_text(failure)}")
                print(
                    f"{name}: done in {time.perf_counter() - began:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            self.results["end"] = self.end_of_run()

    def end_of_run(self) -> dict[str, Any]:
        """Usage at the end, and this process's RSS once the C allocator has given its free
        memory back (glibc's `malloc_trim`): what the RSS kept after the phases is made of,
        live data or free memory held for reuse."""
        gc.collect()
        end: dict[str, Any] = {"usage": self.probe.take(), "trimmed_rss_kib": None}
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: no such call
            return end
        end["trimmed_rss_kib"] = self.probe.take()["this"]["rss_kib"]
        return end


async def run_phases(args: argparse.Namespace, url: str | None, engine_pid: int | None) -> Any:
    """All four phases against the engine at `url`, or against one started here."""
    async with AsyncExitStack() as stack:
        if url is None:
            engine = await stack.enter_async_context(anyiii.engine.run(http_port=None))
            url = engine.url
        soak = Soak(args, url, Probe(engine_pid))
        await soak.run()
        return soak.results
