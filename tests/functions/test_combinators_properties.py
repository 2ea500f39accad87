"""Hypothesis properties of `gather`, `any` and `race`: each checked against a model of which
awaitable finishes when.

A drawn `Plan` gives every child a distinct duration and a success or a failure; the model
says which child decides the call (the first failure for `gather`, the first success for
`any`, the first finisher for `race`) and what the call returns or raises. On trio's
virtual clock (`autojump`) the finishing order is the drawn one, exactly; on asyncio's
real clock the order the children really finished in is read (see `run_plan`). The
children are `combinator_support.Tracker`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from combinator_support import Boom, Combinator, Tracker, indices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiii._functions.combinators import AnyError, any, gather, race

# --- properties --------------------------------------------------------------------------------

PROPERTIES = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@dataclass(frozen=True)
class Plan:
    """Child i sleeps `units[i]` (all distinct, so the finishing order is unambiguous), then
    returns `i * 10` or, when `fails[i]`, raises Boom(i)."""

    units: tuple[int, ...]
    fails: tuple[bool, ...]

    @property
    def by_finish(self) -> list[int]:
        return sorted(range(len(self.units)), key=lambda i: self.units[i])


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    size = draw(st.integers(min_value=1, max_value=8))
    units = draw(st.permutations(range(1, size + 1)))
    fails = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return Plan(tuple(units), tuple(fails))


async def run_plan(
    combinator: Combinator,
    plan: Plan,
    decide: Callable[[Plan, list[int]], int | None],
    backend: str,
) -> tuple[Any, BaseException | None, int | None]:
    """Run the plan's children under `combinator`; return its result or exception and the
    child the model says decides the call (None: every child must finish).

    The model reads the finishing order. On trio's virtual clock that is the drawn order,
    exactly. On asyncio's real clock a loaded machine can stall past a deadline, so the
    order observed is taken (it must still be the drawn one when nothing stalled), and a
    child due at almost the same moment as the decider may finish instead of being
    cancelled. Checks: no child left running, each finished or was cancelled, every child
    up to the decider finished, none after it finished first.
    """
    tracker = Tracker()
    pairs = enumerate(zip(plan.units, plan.fails, strict=True))
    children = [tracker.child(i, units, fail) for i, (units, fail) in pairs]
    result: Any = None
    error: BaseException | None = None
    with anyio.fail_after(10):
        try:
            result = await combinator(*children)
        except Exception as caught:
            error = caught
    tracker.settled(len(plan.units))
    if backend == "trio":
        order = plan.by_finish
        assert tracker.order == order[: len(tracker.order)]
    else:
        order = tracker.order + [i for i in plan.by_finish if i not in tracker.finished]
    decider = decide(plan, order)
    cut = len(order) if decider is None else order.index(decider) + 1
    assert set(order[:cut]) <= tracker.finished
    later = set(order[cut:])
    assert tracker.cancelled <= later
    if backend == "trio":
        assert tracker.cancelled == later
    return result, error, decider


def first_failure(plan: Plan, order: list[int]) -> int | None:
    """The earliest-finishing child that fails, if any."""
    return next((i for i in order if plan.fails[i]), None)


def first_success(plan: Plan, order: list[int]) -> int | None:
    """The earliest-finishing child that succeeds, if any."""
    return next((i for i in order if not plan.fails[i]), None)


def first_finisher(plan: Plan, order: list[int]) -> int:
    """The earliest-finishing child."""
    return order[0]


@pytest.mark.autojump
@PROPERTIES
@given(plan=plans())
async def test_gather_matches_the_model(plan: Plan, anyio_backend_name: str) -> None:
    result, error, failure = await run_plan(gather, plan, first_failure, anyio_backend_name)
    if failure is not None:
        assert isinstance(error, Boom)
        assert error.index == failure
    else:
        assert error is None
        assert result == [i * 10 for i in range(len(plan.units))]


@pytest.mark.autojump
@PROPERTIES
@given(plan=plans())
async def test_any_matches_the_model(plan: Plan, anyio_backend_name: str) -> None:
    result, error, success = await run_plan(any, plan, first_success, anyio_backend_name)
    if success is not None:
        assert error is None
        assert result == success * 10
    else:
        assert isinstance(error, AnyError)
        assert indices(error) == list(range(len(plan.units)))


@pytest.mark.autojump
@PROPERTIES
@given(plan=plans())
async def test_race_matches_the_model(plan: Plan, anyio_backend_name: str) -> None:
    result, error, first = await run_plan(race, plan, first_finisher, anyio_backend_name)
    assert first is not None
    if plan.fails[first]:
        assert isinstance(error, Boom)
        assert error.index == first
    else:
        assert error is None
        assert result == first * 10
