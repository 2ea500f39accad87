"""Structured combinators over awaitables: `gather`, `any` and `race`.

Each combinator runs its arguments (coroutines, or any other awaitables) as tasks in one
anyio task group, so no task outlives the call: once a combinator has its answer it cancels
the tasks still running and *waits for them to finish* before it returns or raises. That is
the difference from the Dispatch SDK's versions of these, which let the losers of `any` and
`race` keep running and do not cancel the siblings when one awaitable of `all` fails: work
nobody waits for anymore, errors nobody sees, and resources held past the call.

The rules:

* `gather` (exported as `anyiii.all` too) returns every result, in argument order; the first
  failure cancels the rest and is raised as itself.
* `any` returns the first success and cancels the rest; when every awaitable fails it raises
  `AnyError`, an `ExceptionGroup` holding every failure in argument order.
* `race` is decided by the first awaitable to finish, success or failure: its result is
  returned or its exception raised as itself; the rest are cancelled.

Cancellation is never swallowed: cancelling the caller cancels every task and re-raises the
cancellation. An exception that is not an `Exception` (`KeyboardInterrupt`, `SystemExit`)
is not an outcome either: it propagates as it would from a task group, unwrapped when it is
the only one. A coroutine argument that never got to run (its task was cancelled before its
first step) is closed, so Python does not warn that it was never awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

import anyio

from anyiii._concurrency import single_errors

__all__ = ["AnyError", "any", "gather", "race"]

T = TypeVar("T")


class AnyError(ExceptionGroup[Exception]):
    """Every awaitable given to `any` failed; `exceptions` holds the failures in argument order.

    It is an `ExceptionGroup`, so `except* SomeError` and `split`/`subgroup` work on it, and
    the groups those derive are `AnyError`s too.
    """

    def derive(self, excs: Sequence[Exception]) -> AnyError:  # type: ignore[override]
        """A group of the same kind and message holding `excs` (used by `split`/`subgroup`)."""
        return AnyError(self.message, excs)


class _Outcome(Generic[T]):
    """How one awaitable finished: a value, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: T | None, error: Exception | None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> T:
        """The value, or raise the exception as itself."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # no error: the value is a T


#: Called with (argument index, outcome) as each awaitable finishes, in completion order;
#: returning True cancels the awaitables still running.
_Settle = Callable[[int, _Outcome[T]], bool]


async def _supervise(name: str, aws: Sequence[Awaitable[T]], settle: _Settle[T]) -> None:
    """Run every awaitable as a task in one task group, reporting each outcome to `settle`.

    The tasks are named `anyiii.<name>[<index>]`. Returns once every task has finished or
    been cancelled; coroutines whose task never started are closed.
    """
    started = [False] * len(aws)
    try:
        with single_errors():
            async with anyio.create_task_group() as group:

                async def run(index: int, aw: Awaitable[T]) -> None:
                    started[index] = True
                    try:
                        value = await aw
                    except Exception as error:
                        outcome: _Outcome[T] = _Outcome(None, error)
                    else:
                        outcome = _Outcome(value, None)
                    if settle(index, outcome):
                        group.cancel_scope.cancel()

                for index, aw in enumerate(aws):
                    group.start_soon(run, index, aw, name=f"anyiii.{name}[{index}]")
    finally:
        for was_started, aw in zip(started, aws, strict=True):
            if not was_started and isinstance(aw, Coroutine):
                aw.close()


async def gather(*aws: Awaitable[T]) -> list[T]:
    """Await every argument concurrently and return their results in argument order.

    The first awaitable to fail (in completion order) decides: the others are cancelled and
    awaited, then that exception is raised as itself, not wrapped in an exception group.
    Failures that land after it, while the others are being cancelled, are dropped. With no
    arguments the result is `[]`. Cancelling the caller cancels every awaitable.
    """
    if not aws:
        return []
    values: list[Any] = [None] * len(aws)
    failure: list[Exception] = []

    def settle(index: int, outcome: _Outcome[T]) -> bool:
        if outcome.error is None:
            values[index] = outcome.value
            return False
        if not failure:
            failure.append(outcome.error)
        return True

    await _supervise("gather", aws, settle)
    if failure:
        raise failure[0]
    return values


async def any(*aws: Awaitable[T]) -> T:
    """Await the arguments concurrently and return the first success; cancel the rest.

    Failures are collected while no awaitable has succeeded; when every awaitable fails,
    `AnyError` is raised holding every exception in argument order. Raises `ValueError`
    when called with no arguments. Cancelling the caller cancels every awaitable.
    """
    if not aws:
        raise ValueError("any() needs at least one awaitable")
    failures: list[Exception | None] = [None] * len(aws)
    winner: list[_Outcome[T]] = []

    def settle(index: int, outcome: _Outcome[T]) -> bool:
        if winner:
            return True
        if outcome.error is not None:
            failures[index] = outcome.error
            return False
        winner.append(outcome)
        return True

    await _supervise("any", aws, settle)
    if winner:
        return winner[0].unwrap()
    errors = [error for error in failures if error is not None]
    raise AnyError(f"all {len(errors)} awaitables failed", errors)


async def race(*aws: Awaitable[T]) -> T:
    """Await the arguments concurrently; the first to finish, success or failure, decides.

    The others are cancelled and awaited; then the first finisher's result is returned or
    its exception raised as itself. Raises `ValueError` when called with no arguments.
    Cancelling the caller cancels every awaitable.
    """
    if not aws:
        raise ValueError("race() needs at least one awaitable")
    first: list[_Outcome[T]] = []

    def settle(index: int, outcome: _Outcome[T]) -> bool:
        if not first:
            first.append(outcome)
        return True

    await _supervise("race", aws, settle)
    return first[0].unwrap()
