"""The children the combinator tests run: `Tracker` (what each child did), `Later` (an
awaitable that is not a coroutine), `Boom` (a failure tagged with its child's index), and
the clock they share.

Every duration is in `UNIT`s counted from a start taken before the call plus a
`HEAD_START`: on trio's virtual clock (tests marked `autojump`) the units are exact; on
asyncio's real clock the timers still fire in deadline order, so the finishing order is
the order of the units even when the tasks start a little apart.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

import anyio

Combinator = Callable[..., Coroutine[Any, Any, Any]]

#: One unit of a drawn or written duration, in seconds (virtual on trio under autojump).
UNIT = 0.005
#: Every duration counts from a start taken before the call, plus this head start, so on
#: asyncio's real clock the finishing order is the order of the units even when the tasks
#: start a little apart: the timers fire in deadline order.
HEAD_START = 0.05


def deadline(units: float) -> float:
    """When something lasting `units`, starting now, is due."""
    return anyio.current_time() + HEAD_START + units * UNIT


class Boom(Exception):
    """A failure tagged with the index of the awaitable that raised it."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def indices(group: BaseExceptionGroup[BaseException]) -> list[int]:
    """The indices of the Booms in `group`, in its order (any other exception fails)."""
    found = []
    for error in group.exceptions:
        assert isinstance(error, Boom), error
        found.append(error.index)
    return found


@dataclass
class Tracker:
    """What each child did: started, finished (value or failure), cancelled; and how many
    are running right now (counted down in `finally`)."""

    started: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    cancelled: set[int] = field(default_factory=set)
    running: int = 0
    order: list[int] = field(default_factory=list)  # completion order of finished children
    start: float = field(default_factory=lambda: deadline(0))  # when a 0-unit child is due

    async def child(self, index: int, units: float | None, fail: bool = False) -> int:
        """Sleep `units` (forever when None), then return `index * 10` or raise Boom(index)."""
        self.started.add(index)
        self.running += 1
        try:
            if units is None:
                await anyio.sleep_forever()
            else:
                await anyio.sleep_until(self.start + units * UNIT)
        except anyio.get_cancelled_exc_class():
            self.cancelled.add(index)
            raise
        finally:
            self.running -= 1
        self.finished.add(index)
        self.order.append(index)
        if fail:
            raise Boom(index)
        return index * 10

    def settled(self, count: int) -> None:
        """Nothing still running; every child finished or was cancelled, never both."""
        assert self.running == 0
        assert self.started == set(range(count))
        assert self.finished | self.cancelled == set(range(count))
        assert not self.finished & self.cancelled


class Later:
    """An awaitable that is not a coroutine: it delegates to one made when awaited."""

    def __init__(self, value: int, units: float = 1, fail: bool = False) -> None:
        self.value, self.due, self.fail = value, deadline(units), fail

    async def _run(self) -> int:
        await anyio.sleep_until(self.due)
        if self.fail:
            raise Boom(self.value)
        return self.value

    def __await__(self) -> Generator[Any, None, int]:
        return self._run().__await__()
