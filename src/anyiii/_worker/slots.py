"""`Slots`: at most N holders at once, first come first served, for invocation handlers.

What `anyio.CapacityLimiter` does for the invocation runner, without what the runner does
not need: a limiter records which task borrowed each token (two `current_task()` lookups
per invocation on asyncio) so that one task cannot borrow twice. Invocation handlers take
one slot each and give it back in `finally`, so a counter and a line of waiting events do,
at a measurable saving per invocation (docs/benchmarks.md).
"""

from __future__ import annotations

from collections import deque

import anyio
import anyio.lowlevel

__all__ = ["Slots"]


class Slots:
    """`total` slots. `take_nowait()` or `await take()`, then `give_back()` exactly once.

    A slot given back goes straight to the longest waiter, so nobody can overtake those
    already waiting. A waiter cancelled after it was handed a slot passes it on.
    """

    __slots__ = ("_free", "_waiters", "total")

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"total must be at least 1, not {total!r}")
        self.total = total
        self._free = total
        self._waiters: deque[anyio.Event] = deque()

    @property
    def in_use(self) -> int:
        """Slots taken and not given back yet."""
        return self.total - self._free

    @property
    def waiting(self) -> int:
        """Tasks waiting in `take()`."""
        return len(self._waiters)

    def take_nowait(self) -> bool:
        """Take a free slot if one is free and nobody waits for it; True if taken."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot, in turn (cancellable: a cancelled wait takes nothing)."""
        if self.take_nowait():
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:
                self.give_back()  # cancelled right after taking it: it is not held
                raise
            return
        handed = anyio.Event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():
                self.give_back()  # handed a slot as the cancellation came: pass it on
            else:
                self._waiters.remove(handed)
            raise

    def give_back(self) -> None:
        """Return a slot: to the longest waiter if there is one, else to the free ones."""
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._free += 1
