"""Running invocations on reused tasks, each in its own `contextvars` context.

Spawning an anyio task for every invocation was the largest cost left in a callee's
profile (anyio builds a task handle, a cancel scope and an event per task). Reusing tasks
saves it, but a task that runs one handler after another would share its context between
them: a context variable set by one handler would still be set in the next.

`TaskPool` keeps both. A job runs on an idle pool task when there is one (else on a new
task, so a job never waits behind another), and every step of the job's coroutine runs
inside the job's own copy of the context, taken when the job was submitted, exactly what
a new task would have got. The pool task itself only relays what the coroutine yields to
the event loop and what the loop sends or throws back (`_InContext`), so the coroutine
runs on a real task of the backend, with that task's cancel scopes, and cancellation
reaches it as it would reach a task of its own.

Bounds: one task per running job, plus at most `max_idle` idle ones; nothing is queued.
A job's exception ends its pool task (as it ended the job's own task before); the task
group the pool spawns into sees it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import anyio
import anyio.abc

from .._concurrency import event_maker

__all__ = ["TaskPool"]

Job = tuple[Callable[..., Coroutine[Any, Any, Any]], tuple[Any, ...], contextvars.Context]


class _InContext:
    """Awaitable: drive `coro` to its end, each step inside `context`, relaying every
    yield to the task that awaits this and every value or exception back."""

    __slots__ = ("_context", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        self._coro = coro
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        run, send, throw = self._context.run, self._coro.send, self._coro.throw
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = run(send, value) if error is None else run(throw, error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            try:
                value = yield yielded
            except BaseException as exc:  # cancellation included: the coroutine decides
                error = exc


class _Idle:
    """An idle pool task waiting for its next job."""

    __slots__ = ("job", "wakeup")

    def __init__(self, wakeup: anyio.Event) -> None:
        self.wakeup = wakeup
        self.job: Job | None = None


class TaskPool:
    """Runs jobs on reused tasks of `group` (see the module docstring)."""

    __slots__ = ("_group", "_idle", "_max_idle", "_name", "_new_event")

    def __init__(self, group: anyio.abc.TaskGroup, *, max_idle: int = 64, name: str) -> None:
        """Made inside the event loop that runs `group`."""
        self._group = group
        self._idle: list[_Idle] = []
        self._max_idle = max_idle
        self._name = name
        self._new_event = event_maker()  # an event per finished job: the cheap way

    def submit(self, function: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run `function(*args)` now, in a copy of the current context."""
        job: Job = (function, args, contextvars.copy_context())
        if self._idle:
            idle = self._idle.pop()
            idle.job = job
            idle.wakeup.set()
        else:
            self._group.start_soon(self._serve, job, name=self._name)

    async def _serve(self, job: Job) -> None:
        idle_tasks = self._idle
        idle: _Idle | None = None  # this task's, reused for each wait between jobs
        while True:
            function, args, context = job
            await _InContext(function(*args), context)
            if len(idle_tasks) >= self._max_idle:
                return
            if idle is None:
                idle = _Idle(self._new_event())
            else:
                idle.wakeup, idle.job = self._new_event(), None
            idle_tasks.append(idle)
            try:
                await idle.wakeup.wait()
            except BaseException:
                if idle.job is None:  # cancelled (or failed) while idle: leave the pool
                    idle_tasks.remove(idle)
                    raise
                # A job was handed over as the cancellation came: run it all the same, so
                # it meets the cancellation itself and answers (its admission counts it).
            assert idle.job is not None  # only a wake-up with a job gets here
            job = idle.job
