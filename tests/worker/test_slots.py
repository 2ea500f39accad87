"""`Slots`, the invocation runner's concurrency bound: never more holders than slots,
waiters served in arrival order, and no slot lost to a cancellation."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from anyiii._worker.slots import Slots


async def test_never_more_holders_than_slots_and_everyone_gets_one() -> None:
    slots = Slots(3)
    holding = peak = done = 0

    async def hold() -> None:
        nonlocal holding, peak, done
        if not slots.take_nowait():
            await slots.take()
        try:
            holding += 1
            peak = max(peak, holding)
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            holding -= 1
        finally:
            slots.give_back()
        done += 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(hold)
    assert (done, peak) == (20, 3)
    assert (slots.in_use, slots.waiting) == (0, 0)


async def test_waiters_are_served_in_arrival_order() -> None:
    slots = Slots(1)
    assert slots.take_nowait()
    order: list[int] = []

    async def wait_turn(n: int) -> None:
        await slots.take()
        order.append(n)
        slots.give_back()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            for n in range(5):
                tasks.start_soon(wait_turn, n)
                await anyio.wait_all_tasks_blocked()  # each is waiting before the next
            assert slots.waiting == 5
            assert not slots.take_nowait()  # a newcomer cannot overtake the line
            slots.give_back()
    assert order == [0, 1, 2, 3, 4]
    assert slots.in_use == 0


async def test_a_cancelled_waiter_takes_nothing() -> None:
    slots = Slots(1)
    assert slots.take_nowait()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(slots.take)
            await anyio.wait_all_tasks_blocked()
            assert slots.waiting == 1
            tasks.cancel_scope.cancel()
    assert slots.waiting == 0
    slots.give_back()
    assert slots.in_use == 0
    assert slots.take_nowait()


async def test_a_slot_handed_to_a_waiter_as_it_is_cancelled_is_passed_on() -> None:
    slots = Slots(1)
    assert slots.take_nowait()
    second_got_it = anyio.Event()

    async def second() -> None:
        await slots.take()
        second_got_it.set()
        slots.give_back()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            first = anyio.CancelScope()

            async def first_waiter() -> None:
                with first:
                    await slots.take()
                    slots.give_back()  # not reached: the cancellation wins

            tasks.start_soon(first_waiter)
            await anyio.wait_all_tasks_blocked()
            tasks.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            # The first waiter is cancelled, and before it runs to see that, the slot is
            # handed to it (it is still first in line): it must pass the slot on.
            first.cancel()
            slots.give_back()
            await second_got_it.wait()
    assert (slots.in_use, slots.waiting) == (0, 0)


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
