"""The structured combinators `gather`, `any` and `race`: their rules, one test each.

Every test runs on asyncio and on trio. Tests marked `autojump` get a virtual clock on trio,
so their sleeps are the durations being tested, not synchronization; on asyncio they are
short real sleeps whose order is what matters, so these tests space their deadlines
widely (tens of milliseconds). The children they run are in `combinator_support.py`; the
Hypothesis properties checking all three against a model are in
`test_combinators_properties.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from combinator_support import Boom, Combinator, Later, Tracker, indices

from anyiii._functions.combinators import AnyError, any, gather, race

COMBINATORS = pytest.mark.parametrize("combinator", [gather, any, race], ids=lambda c: c.__name__)


class Halt(BaseException):
    """Not an `Exception`: no combinator treats it as an outcome."""


# --- gather ------------------------------------------------------------------------------------


@pytest.mark.autojump
async def test_gather_returns_results_in_argument_order() -> None:
    tracker = Tracker()
    with anyio.fail_after(5):
        results = await gather(*(tracker.child(i, 10 * (4 - i)) for i in range(4)))
    assert results == [0, 10, 20, 30]
    assert tracker.order == [3, 2, 1, 0]  # they finished in the other order
    tracker.settled(4)


async def test_gather_of_nothing_is_an_empty_list() -> None:
    assert await gather() == []


async def test_gather_raises_the_first_failure_itself_and_cancels_the_siblings() -> None:
    tracker = Tracker()
    boom = Boom(7)
    siblings_running = anyio.Event()

    async def fail_once_siblings_run() -> int:
        await siblings_running.wait()
        raise boom

    async def sibling(index: int) -> int:
        if len(tracker.started) == 1:
            siblings_running.set()
        return await tracker.child(index, None)

    with anyio.fail_after(5):
        with pytest.raises(Boom) as info:
            await gather(sibling(0), fail_once_siblings_run(), sibling(1))
    assert info.value is boom
    assert tracker.cancelled == {0, 1}
    tracker.settled(2)


@pytest.mark.autojump
async def test_gather_raises_the_earliest_failure_not_the_first_argument() -> None:
    tracker = Tracker()
    with anyio.fail_after(5), pytest.raises(Boom) as info:
        await gather(tracker.child(0, 20, fail=True), tracker.child(1, 1, fail=True))
    assert info.value.index == 1
    assert tracker.cancelled == {0}
    tracker.settled(2)


async def test_gather_failures_at_once_raise_the_first_in_completion_order() -> None:
    order: list[int] = []

    async def fail(index: int) -> int:
        await anyio.lowlevel.checkpoint()  # both wake in the same scheduler pass
        order.append(index)
        raise Boom(index)

    with anyio.fail_after(5), pytest.raises(Boom) as info:
        await gather(fail(0), fail(1), fail(2))
    assert order  # at least one failed; the others failed too, or were cancelled first
    assert info.value.index == order[0]


async def test_a_sibling_of_an_instant_failure_ends_closed() -> None:
    async def fail_now() -> int:
        raise Boom(0)

    later = Tracker().child(1, None)
    with anyio.fail_after(5), pytest.raises(Boom):
        await gather(fail_now(), later)
    # anyio gives every spawned task its first step even in a cancelled scope, so `later`
    # starts and is cancelled at its first checkpoint; either way it ends closed.
    assert inspect.getcoroutinestate(later) == inspect.CORO_CLOSED


class RefusingGroup:
    """A real task group whose `start_soon` refuses every task after the first."""

    def __init__(self, real: anyio.abc.TaskGroup) -> None:
        self.real = real
        self.spawned = 0

    @property
    def cancel_scope(self) -> anyio.CancelScope:
        return self.real.cancel_scope

    async def __aenter__(self) -> RefusingGroup:
        await self.real.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self.real.__aexit__(*exc_info)

    def start_soon(self, func: Callable[..., Any], *args: Any, name: object = None) -> None:
        if self.spawned:
            raise RuntimeError("spawn refused")
        self.spawned += 1
        self.real.start_soon(func, *args, name=name)


@COMBINATORS
async def test_coroutines_whose_task_never_started_are_closed(
    combinator: Combinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When spawning fails part way, the coroutines not yet handed to a task are closed (an
    unclosed one would warn "never awaited", an error under this suite's filterwarnings)."""
    real_create = anyio.create_task_group
    made: list[object] = []

    def create() -> Any:
        group = RefusingGroup(real_create()) if not made else real_create()
        made.append(group)
        return group

    monkeypatch.setattr(anyio, "create_task_group", create)
    tracker = Tracker()
    first, second, third = tracker.child(0, None), tracker.child(1, 1), tracker.child(2, 1)
    with anyio.fail_after(5), pytest.raises(RuntimeError, match="spawn refused"):
        await combinator(first, second, third)
    monkeypatch.undo()
    assert tracker.started <= {0}
    assert tracker.running == 0
    for coroutine in (first, second, third):
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


@pytest.mark.autojump
async def test_gather_accepts_awaitables_that_are_not_coroutines() -> None:
    with anyio.fail_after(5):
        assert await gather(Later(1, 20), Later(2, 1)) == [1, 2]
        with pytest.raises(Boom) as info:
            await gather(Later(1, 1, fail=True), Later(2, 20))
    assert info.value.index == 1


async def test_gather_lets_a_base_exception_through_unwrapped() -> None:
    async def halt() -> int:
        raise Halt

    tracker = Tracker()
    with anyio.fail_after(5), pytest.raises(Halt):
        await gather(tracker.child(0, None), halt())
    tracker.settled(1)


# --- any ---------------------------------------------------------------------------------------


@pytest.mark.autojump
async def test_any_returns_the_first_success_past_earlier_failures() -> None:
    tracker = Tracker()
    with anyio.fail_after(5):
        result = await any(
            tracker.child(0, 1, fail=True),
            tracker.child(1, 30, fail=True),  # would fail after the winner: cancelled instead
            tracker.child(2, 10),
            tracker.child(3, None),
        )
    assert result == 20
    assert tracker.finished == {0, 2}
    assert tracker.cancelled == {1, 3}
    tracker.settled(4)


@pytest.mark.autojump
async def test_any_raises_every_failure_in_argument_order_when_all_fail() -> None:
    tracker = Tracker()
    with anyio.fail_after(5), pytest.raises(AnyError) as info:
        await any(*(tracker.child(i, 10 * (4 - i), fail=True) for i in range(4)))
    assert tracker.order == [3, 2, 1, 0]
    assert indices(info.value) == [0, 1, 2, 3]
    assert isinstance(info.value, ExceptionGroup)
    tracker.settled(4)


async def test_any_of_nothing_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        await any()


@pytest.mark.autojump
async def test_any_accepts_awaitables_that_are_not_coroutines() -> None:
    with anyio.fail_after(5):
        assert await any(Later(1, 1, fail=True), Later(2, 20)) == 2


def test_any_error_splits_into_any_errors() -> None:
    error = AnyError("all 3 awaitables failed", [Boom(0), ValueError("v"), Boom(2)])
    error.add_note("a note")
    booms, rest = error.split(Boom)
    assert isinstance(booms, AnyError)
    assert isinstance(rest, AnyError)
    assert indices(booms) == [0, 2]
    assert booms.message == error.message
    assert booms.__notes__ == ["a note"]
    assert isinstance(error.subgroup(ValueError), AnyError)
    with pytest.raises(AnyError) as info:
        handle_value_errors(error)
    assert indices(info.value) == [0, 2]


def handle_value_errors(error: BaseException) -> None:
    """Raise `error` and handle its ValueErrors with `except*`; the rest propagates."""
    try:
        raise error
    except* ValueError:
        pass


# --- race --------------------------------------------------------------------------------------


@pytest.mark.autojump
async def test_race_returns_the_first_finisher() -> None:
    tracker = Tracker()
    with anyio.fail_after(5):
        assert await race(tracker.child(0, 20), tracker.child(1, 1), tracker.child(2, None)) == 10
    assert tracker.cancelled == {0, 2}
    tracker.settled(3)


@pytest.mark.autojump
async def test_race_raises_when_the_first_finisher_fails() -> None:
    tracker = Tracker()
    with anyio.fail_after(5), pytest.raises(Boom) as info:
        await race(tracker.child(0, 20), tracker.child(1, 1, fail=True))
    assert info.value.index == 1
    assert tracker.cancelled == {0}
    tracker.settled(2)


async def test_race_of_nothing_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        await race()


@pytest.mark.autojump
async def test_race_accepts_awaitables_that_are_not_coroutines() -> None:
    with anyio.fail_after(5):
        assert await race(Later(1, 20), Later(2, 1)) == 2


# --- all three ---------------------------------------------------------------------------------


@COMBINATORS
async def test_cancelling_the_caller_cancels_every_child(combinator: Combinator) -> None:
    tracker = Tracker()
    all_started = anyio.Event()

    async def child(index: int) -> int:
        if len(tracker.started) == 2:
            all_started.set()
        return await tracker.child(index, None)

    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(combinator, child(0), child(1), child(2))
                await all_started.wait()
                scope.cancel()
    assert scope.cancelled_caught
    assert tracker.cancelled == {0, 1, 2}
    tracker.settled(3)


@COMBINATORS
async def test_the_callers_cancellation_is_reraised(combinator: Combinator) -> None:
    tracker = Tracker()
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await combinator(tracker.child(0, None), tracker.child(1, None))
            pytest.fail("the combinator returned inside a cancelled scope")  # pragma: no cover
    assert scope.cancelled_caught
    assert tracker.running == 0
    assert tracker.finished == set()
