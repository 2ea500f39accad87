"""`TaskPool`: reused tasks, a context of its own for every job, nothing waits in line."""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import anyiii
from anyiii._worker.task_pool import TaskPool

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def test_a_job_keeps_its_context_across_awaits_and_never_passes_it_on() -> None:
    seen: list[tuple[str, str]] = []
    done = anyio.Event()

    async def job(name: str) -> None:
        before = marker.get()
        marker.set(name)
        await anyio.lowlevel.checkpoint()
        seen.append((before, marker.get()))
        if len(seen) == 20:
            done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            pool = TaskPool(tasks, name="job")
            for n in range(20):  # one after another: the same pool task runs them all
                pool.submit(job, str(n))
                while len(seen) <= n:
                    await anyio.lowlevel.checkpoint()
            await done.wait()
            tasks.cancel_scope.cancel()
    assert seen == [("unset", str(n)) for n in range(20)]
    assert marker.get() == "unset"


async def test_every_job_starts_at_once_however_many_are_blocked() -> None:
    started, release = 0, anyio.Event()
    all_started = anyio.Event()

    async def blocked() -> None:
        nonlocal started
        started += 1
        if started == 100:
            all_started.set()
        await release.wait()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            pool = TaskPool(tasks, max_idle=8, name="job")
            for _ in range(100):
                pool.submit(blocked)
            await all_started.wait()
            release.set()
            while len(pool._idle) < 8:
                await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            assert len(pool._idle) == 8  # the rest ended: idle tasks are bounded
            tasks.cancel_scope.cancel()


async def test_cancel_scopes_timeouts_and_errors_work_inside_a_job() -> None:
    results: list[Any] = []

    async def job() -> None:
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep_forever()
        results.append(scope.cancelled_caught)
        try:
            raise ValueError("inside")
        except ValueError as exc:
            results.append(str(exc))

    async def failing() -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("escapes")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            pool = TaskPool(tasks, name="job")
            pool.submit(job)
            while len(results) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            tasks.cancel_scope.cancel()
        assert results == [True, "inside"]
        with pytest.raises(ExceptionGroup) as caught:
            async with anyio.create_task_group() as tasks:
                TaskPool(tasks, name="job").submit(failing)
        (error,) = caught.value.exceptions
        assert isinstance(error, RuntimeError)
        assert str(error) == "escapes"  # ended its pool task, as it ended its own task


async def test_a_job_handed_to_an_idle_task_as_the_group_is_cancelled_still_runs() -> None:
    """The job meets the cancellation itself, so its invocation can answer
    `invocation_cancelled` instead of vanishing."""
    events: list[str] = []

    async def quick() -> None:
        events.append("quick")

    async def handed_over() -> None:
        events.append("started")
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            events.append("cancelled")
            raise

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            pool = TaskPool(tasks, name="job")
            pool.submit(quick)
            while not pool._idle:
                await anyio.lowlevel.checkpoint()
            tasks.cancel_scope.cancel()
            pool.submit(handed_over)
    assert events == ["quick", "started", "cancelled"]


async def test_handlers_never_see_context_variables_of_earlier_invocations() -> None:
    """Through a worker: one handler sets a variable; the next invocations, run on the
    same reused task, do not see it."""
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:

            @w.function("mark")
            async def mark(data: Any) -> str:
                before = marker.get()
                marker.set(str(data))
                await anyio.lowlevel.checkpoint()
                return f"{before}->{marker.get()}"

            answers = [
                await w.trigger_async({"function_id": "mark", "payload": n}) for n in range(5)
            ]
    assert answers == [f"unset->{n}" for n in range(5)]
