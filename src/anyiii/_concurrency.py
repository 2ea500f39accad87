"""Small structured-concurrency helpers shared by the runtime and the embedded engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

__all__ = ["flatten", "single_errors"]


def flatten(error: BaseException) -> list[BaseException]:
    """Every leaf exception of a (possibly nested) exception group."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in flatten(inner)]
    return [error]


@contextmanager
def single_errors() -> Iterator[None]:
    """Keep task-group exception groups away from users (trio-websocket's policy).

    If a group holds exactly one error that is not a cancellation, that error is raised
    as itself; a group of cancellations only is re-raised as the first cancellation; a
    group of several real errors is raised as is, because several independent things
    really went wrong.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = flatten(group)
        cancelled = anyio.get_cancelled_exc_class()
        real: list[BaseException] = []
        for leaf in leaves:  # the same error can arrive twice, e.g. raised by two tasks
            if not isinstance(leaf, cancelled) and all(leaf is not seen for seen in real):
                real.append(leaf)
        if len(real) == 1:
            raise real[0] from None
        if not real:
            raise leaves[0] from None
        raise
