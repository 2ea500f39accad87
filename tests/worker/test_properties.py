"""Property tests of the worker runtime: Hypothesis draws payloads, concurrency, handler
outcomes, cancellations and limits; every call must end with exactly its own outcome.

Workers reach the embedded engine through the in-memory transport (no sockets), so each
example is fast and nothing but the runtime and the router is exercised. Each test runs
on asyncio and on trio (anyio's pytest plugin runs the Hypothesis examples on the backend).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyiii
from anyiii.testing import running_engine
from strategies import CALLER_KEY, PAYLOADS

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@asynccontextmanager
async def two_workers(
    callee_limits: anyiii.WorkerLimits | None = None,
) -> AsyncIterator[tuple[anyiii.Worker, anyiii.Worker]]:
    """A caller and a callee on one engine, both over memory transports."""
    async with running_engine(http_port=None) as engine:
        opener = engine.memory_transport_opener()
        async with (
            anyiii.connect("ws://memory", transport=opener, reconnect=False) as caller,
            anyiii.connect(
                "ws://memory", transport=opener, reconnect=False, limits=callee_limits
            ) as callee,
        ):
            yield caller, callee


async def applied(worker: anyiii.Worker) -> None:
    """A round trip on `worker`'s connection: the engine has applied its registrations."""
    await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})


def without_caller(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != CALLER_KEY}
    return value


def settled(worker: anyiii.Worker) -> None:
    stats = worker.statistics()
    assert stats.pending_calls == 0, stats
    assert stats.running_invocations == 0, stats


@EXAMPLES
@given(payloads=st.lists(PAYLOADS, min_size=1, max_size=5))
async def test_any_json_payload_comes_back_exactly(payloads: list[Any]) -> None:
    with anyio.fail_after(20):
        async with two_workers() as (caller, callee):
            callee.register_function("prop::echo", lambda data: data)
            await applied(callee)
            for payload in payloads:
                result = await caller.trigger_async(
                    {"function_id": "prop::echo", "payload": payload}
                )
                assert without_caller(result) == payload
            settled(caller)
            settled(callee)


outcomes = st.one_of(
    st.tuples(st.just("return"), PAYLOADS),
    st.tuples(st.just("raise"), st.text(st.characters(exclude_categories=["Cs"]), min_size=1)),
    st.tuples(st.just("yield"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("thread"), st.integers()),
    st.tuples(st.just("sleep"), st.floats(min_value=0, max_value=0.005)),
)


async def run_outcome(data: dict[str, Any]) -> Any:
    kind, value = data["outcome"]
    if kind == "raise":
        raise RuntimeError(value)
    if kind == "yield":
        for _ in range(value):
            await anyio.lowlevel.checkpoint()
        return {"token": data["token"], "yielded": value}
    if kind == "thread":
        return await anyio.to_thread.run_sync(lambda: {"token": data["token"], "n": value})
    if kind == "sleep":
        await anyio.sleep(value)
        return {"token": data["token"], "slept": True}
    return {"token": data["token"], "value": value}


def expected(token: int, kind: str, value: Any) -> Any:
    if kind == "yield":
        return {"token": token, "yielded": value}
    if kind == "thread":
        return {"token": token, "n": value}
    if kind == "sleep":
        return {"token": token, "slept": True}
    return {"token": token, "value": value}


@EXAMPLES
@given(plan=st.lists(outcomes, min_size=1, max_size=120))
async def test_concurrent_calls_each_end_with_their_own_outcome(
    plan: list[tuple[str, Any]],
) -> None:
    ended: dict[int, tuple[str, Any]] = {}
    with anyio.fail_after(30):
        async with two_workers() as (caller, callee):
            callee.register_function("prop::run", run_outcome)
            await applied(callee)

            async def call(token: int, outcome: tuple[str, Any]) -> None:
                request = {
                    "function_id": "prop::run",
                    "payload": {"token": token, "outcome": outcome},
                }
                try:
                    ended[token] = ("result", await caller.trigger_async(request))
                except anyiii.InvocationError as error:
                    ended[token] = ("error", (error.code, error.message))

            async with anyio.create_task_group() as tasks:
                for token, outcome in enumerate(plan):
                    tasks.start_soon(call, token, outcome)

            assert sorted(ended) == list(range(len(plan)))
            for token, (kind, value) in enumerate(plan):
                if kind == "raise":
                    assert ended[token] == ("error", ("invocation_failed", value))
                else:
                    assert ended[token] == ("result", expected(token, kind, value))
            settled(caller)
            settled(callee)
            assert caller.statistics().late_results == 0


@EXAMPLES
@given(
    plan=st.lists(
        st.tuples(st.booleans(), st.integers(min_value=0, max_value=6)), min_size=1, max_size=40
    )
)
async def test_cancelled_calls_leave_nothing_behind_and_steal_nothing(
    plan: list[tuple[bool, int]],
) -> None:
    """Each call is cancelled (True) after a number of checkpoints, or runs to its end.
    Cancelled calls wait on a handler that only answers after everything is decided; their
    late answers are dropped and counted, never delivered to another call."""
    release = anyio.Event()
    results: dict[int, Any] = {}
    with anyio.fail_after(30):
        async with two_workers() as (caller, callee):

            async def handler(data: dict[str, Any]) -> Any:
                if data["cancel"]:
                    await release.wait()
                return {"token": data["token"]}

            callee.register_function("prop::maybe", handler)
            await applied(callee)

            async def call(token: int, cancel: bool, after: int) -> None:
                request = {
                    "function_id": "prop::maybe",
                    "payload": {"token": token, "cancel": cancel},
                }
                with anyio.CancelScope() as scope:
                    if cancel:

                        async def cancel_later() -> None:
                            for _ in range(after):
                                await anyio.lowlevel.checkpoint()
                            scope.cancel()

                        async with anyio.create_task_group() as inner:
                            inner.start_soon(cancel_later)
                            results[token] = await caller.trigger_async(request)
                    else:
                        results[token] = await caller.trigger_async(request)

            async with anyio.create_task_group() as tasks:
                for token, (cancel, after) in enumerate(plan):
                    tasks.start_soon(call, token, cancel, after)

            cancelled = {t for t, (cancel, _) in enumerate(plan) if cancel}
            for token in range(len(plan)):
                if token not in cancelled:
                    assert results[token] == {"token": token}
            assert not set(results) & cancelled
            assert caller.statistics().pending_calls == 0
            release.set()
            await applied(callee)  # the released handlers answered by now
            await applied(caller)
            assert caller.statistics().late_results <= len(cancelled)
            settled(callee)


@EXAMPLES
@given(
    concurrency=st.integers(min_value=1, max_value=4),
    queued=st.integers(min_value=0, max_value=4),
    extra=st.integers(min_value=1, max_value=10),
)
async def test_beyond_the_limits_calls_get_worker_busy_and_never_hang(
    concurrency: int, queued: int, extra: int
) -> None:
    limits = anyiii.WorkerLimits(max_concurrency=concurrency, max_queued=queued)
    total = concurrency + queued + extra
    release = anyio.Event()
    started = 0
    all_started = anyio.Event()
    busy = 0
    all_busy = anyio.Event()
    outcomes: list[Any] = []
    with anyio.fail_after(30):
        async with two_workers(callee_limits=limits) as (caller, callee):

            async def handler(data: Any) -> str:
                nonlocal started
                started += 1
                if started == concurrency:
                    all_started.set()
                await release.wait()
                return "done"

            callee.register_function("prop::held", handler)
            await applied(callee)

            async def call() -> None:
                nonlocal busy
                try:
                    outcomes.append(
                        await caller.trigger_async({"function_id": "prop::held", "payload": None})
                    )
                except anyiii.InvocationError as error:
                    outcomes.append(error.code)
                    if error.code == "worker_busy":
                        busy += 1
                        if busy == extra:
                            all_busy.set()

            async with anyio.create_task_group() as tasks:
                for _ in range(total):
                    tasks.start_soon(call)
                await all_started.wait()
                await all_busy.wait()
                release.set()

            assert outcomes.count("done") == concurrency + queued
            assert outcomes.count("worker_busy") == extra
            assert callee.statistics().rejected_busy == extra
            settled(caller)
            settled(callee)
