"""One shape for everything a worker tells its users about as it happens.

Connection states and function lists are both *latest-value* news: a consumer that lags
cares about what is true now, not about every step in between. So a subscription keeps a
small bounded buffer that drops the oldest value when full: the worker never waits for a
slow consumer, memory stays bounded, and the newest value is always the last one read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, Self, TypeVar

import anyio

__all__ = ["LatestValues"]

T = TypeVar("T")


def _nothing() -> None:
    pass


class LatestValues(Generic[T]):
    """An async iterator of values, keeping at most `size` unread ones (oldest dropped).

    Iteration ends once `close()` was called and the buffer is empty. `on_close` runs once,
    on the first `close()` (for example to unbind the engine trigger that feeds it). Used
    in `async with`, leaving the block closes it.
    """

    def __init__(
        self,
        size: int,
        initial: Iterable[T] = (),
        on_close: Callable[[], None] = _nothing,
    ) -> None:
        self._values: deque[T] = deque(initial, maxlen=size)
        self._changed = anyio.Event()
        self._closed = False
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    def push(self, value: T) -> None:
        """Offer a new value; never blocks (the oldest unread one may be dropped)."""
        self._values.append(value)
        self._changed.set()

    def close(self) -> None:
        """Stop the subscription; a waiting iteration ends after the values still buffered."""
        if not self._closed:
            self._closed = True
            self._changed.set()
            self._on_close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while not self._values:
            if self._closed:
                raise StopAsyncIteration
            self._changed = anyio.Event()
            await self._changed.wait()
        return self._values.popleft()
