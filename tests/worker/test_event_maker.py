"""`event_maker()` makes events that behave exactly like `anyio.Event()`, on both
backends, without anyio's per-event backend lookup (and, on asyncio, without building the
underlying event twice); `backend_clock()` is `anyio.current_time` without that lookup."""

from __future__ import annotations

import anyio
import pytest

from anyiii._concurrency import OneShot, backend_clock, event_maker


async def test_made_events_are_anyio_events_that_set_and_wake_waiters() -> None:
    new_event = event_maker()
    event = new_event()
    assert isinstance(event, anyio.Event)
    assert new_event is not anyio.Event  # the backend's own class, not the dispatcher
    assert not event.is_set()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await event.wait()
        woken.append(n)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for n in range(3):
                tasks.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()
            assert event.statistics().tasks_waiting == 3
            event.set()
    assert sorted(woken) == [0, 1, 2]
    assert event.is_set()
    await event.wait()  # set already: returns at once


async def test_each_made_event_is_independent() -> None:
    new_event = event_maker()
    first, second = new_event(), new_event()
    first.set()
    assert not second.is_set()
    with anyio.move_on_after(0.05) as scope:
        await second.wait()
    assert scope.cancelled_caught  # a wait on an unset event is cancellable


async def test_a_wait_on_a_made_event_is_cancelled_like_any_wait() -> None:
    event = event_maker()()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(event.wait)
            await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
    assert event.statistics().tasks_waiting == 0


def test_outside_an_event_loop_it_is_anyio_event_itself() -> None:
    assert event_maker() is anyio.Event


async def test_a_one_shot_on_a_made_event_resolves_once() -> None:
    slot: OneShot[int, str] = OneShot(event_maker()())
    slot.resolve(1, None)
    slot.resolve(2, "late")  # ignored
    with anyio.fail_after(5):
        await slot.wait()
    assert (slot.result, slot.error, slot.resolved) == (1, None, True)


@pytest.mark.autojump
async def test_backend_clock_reads_the_clock_that_cancel_scopes_use() -> None:
    # On trio under the autojump test clock the time is virtual and moves only when every
    # task sleeps: a wall clock such as time.monotonic would disagree with it by hours.
    clock = backend_clock()
    before, reading, after = anyio.current_time(), clock(), anyio.current_time()
    assert before <= reading <= after
    deadline = clock() + 0.25
    with anyio.CancelScope(deadline=deadline) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert deadline <= clock() <= anyio.current_time()
    assert clock() - deadline < 0.25  # the scope ended at the deadline read from `clock`
