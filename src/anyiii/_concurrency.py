"""Small structured-concurrency helpers shared by the runtime and the embedded engine."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Generic, NoReturn, TypeVar

import anyio
import anyio.lowlevel

__all__ = [
    "OneShot",
    "backend_clock",
    "event_maker",
    "flatten",
    "reraise_unwrapped",
    "single_errors",
]

R = TypeVar("R")
E = TypeVar("E")


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
            reraise_unwrapped(real[0])
        if not real:
            reraise_unwrapped(leaves[0])
        raise


def reraise_unwrapped(exc: BaseException) -> NoReturn:
    """Raise `exc`, taken out of a group, with its own `__context__` kept.

    Raising inside an `except` block would make the group the exception's context, so a
    traceback would show the task-group plumbing instead of what the user's code was
    handling when it raised.
    """
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


def event_maker() -> Callable[[], anyio.Event]:
    """A maker of `anyio.Event`s for the running event loop: call it inside the loop, then
    call what it returns for each event.

    `anyio.Event()` asks sniffio which library runs on every call, and on asyncio it builds
    the underlying `asyncio.Event` twice (the backend's `create_event` runs `__init__`, and
    the type call that returned the instance runs it again). The backend's own event class,
    taken from one event, makes the same events without either: a per-call saving on the
    paths that make an event for every call. Outside an event loop (where anyio hands out
    an adapter that binds later) it is `anyio.Event` itself.
    """
    try:
        anyio.lowlevel.current_token()
    except RuntimeError:  # no event loop here
        return anyio.Event
    return type(anyio.Event())


def backend_clock() -> Callable[[], float]:
    """The running event loop's clock, the function `anyio.current_time()` ends up calling.

    `anyio.current_time()` asks sniffio which library runs, then its backend, on every
    call; a path that reads the clock for every call (a call's deadline) takes the
    function once instead. Call it inside the event loop; the clock is the backend's own
    (trio's, mock clocks included), so its readings compare with cancel-scope deadlines.
    """
    return anyio.lowlevel.current_token().backend_class.current_time


class OneShot(Generic[R, E]):
    """A result that arrives once: a value or an error, whichever is set first.

    The worker's outgoing calls and the engine's own calls (an HTTP request waiting for its
    handler) both wait on one. Setting it never blocks and never raises, so a reader task
    can resolve it; a second `resolve` is ignored (a late answer after a loss, say).
    """

    __slots__ = ("_done", "error", "resolved", "result")

    def __init__(self, event: anyio.Event | None = None) -> None:
        """`event`: a fresh, unset event to signal with (from `event_maker()`), or None
        for a new `anyio.Event`."""
        self._done = anyio.Event() if event is None else event
        self.result: R | None = None
        self.error: E | None = None
        self.resolved = False
        """True once a result or an error is set. (A flag of its own: asking the event
        goes through anyio to the backend's event, twice on every call's path.)"""

    def resolve(self, result: R | None, error: E | None) -> None:
        """Set the outcome, unless one is already set."""
        if not self.resolved:
            self.resolved = True
            self.result, self.error = result, error
            self._done.set()

    def wait(self) -> Coroutine[Any, Any, None]:
        """Wait until the outcome is set (cancellable): `await slot.wait()`.

        It hands out the event's own wait, one coroutine frame fewer on every call's path.
        """
        return self._done.wait()
