"""The engine's durable writes: changes go to storage in order, answers follow commits.

The router answers a state write with a `Persist` action: the changes, and the answers to
send once they are durable. `WritePipeline` queues them and one task writes whatever has
queued up as one transaction (group commit, so a burst costs one disk sync), then carries
out the answers of that batch. A connection's reader waits while more than `high_water`
writes are queued, so a worker writing faster than the disk slows down instead of growing
the queue without bound. (A reader checks once per read, whose messages it hands to the
router together, so each connection can overshoot by at most one read: `receive_burst`
messages.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio

from .actions import Action, Persist
from .storage import Storage

__all__ = ["WritePipeline"]

HIGH_WATER = 4096
"""Queued writes above which readers wait for the pipeline to catch up."""


class WritePipeline:
    """Queue of `Persist` actions written by `run()` (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        perform: Callable[[list[Action]], None],
        *,
        high_water: int = HIGH_WATER,
    ) -> None:
        self._storage = storage
        self._perform = perform
        self._high_water = high_water
        self._queue: deque[Persist] = deque()
        self._queued = anyio.Event()
        self._drained = anyio.Event()
        self._drained.set()

    def submit(self, persist: Persist) -> None:
        """Queue a write (never blocks; see `wait_for_room`)."""
        self._queue.append(persist)
        self._queued.set()
        if self._drained.is_set():
            self._drained = anyio.Event()

    async def wait_for_room(self) -> None:
        """Wait while the queue is over its high-water mark."""
        while len(self._queue) > self._high_water:
            await self._drained.wait()

    async def flush(self) -> None:
        """Wait until everything queued so far is written and answered."""
        await self._drained.wait()

    async def run(self) -> None:
        """Write queued changes in batches, in order, for as long as the engine runs."""
        while True:
            await self._queued.wait()
            self._queued = anyio.Event()
            await self._write_all()

    async def _write_all(self) -> None:
        while self._queue:
            batch = list(self._queue)
            self._queue.clear()
            # Shielded: a batch half-written when the engine stops would leave callers
            # unanswered although their changes may be on disk.
            with anyio.CancelScope(shield=True):
                await self._storage.write(change for p in batch for change in p.changes)
            for persist in batch:
                self._perform(persist.then)
        self._drained.set()
