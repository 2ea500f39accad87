"""`WritePipeline`: a reader waits while more than `high_water` durable writes are queued,
and goes on once the pipeline has written them; answers follow their commits, in order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import anyio

from anyiii._engine.actions import Action, Callback, Persist
from anyiii._engine.service import Change
from anyiii._engine.storage import Rows
from anyiii._engine.writes import WritePipeline


class GatedStorage:
    """Storage whose writes wait until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.batches = 0

    async def load(self, queries: Sequence[str]) -> Rows:
        return []

    async def write(self, changes: Iterable[Change]) -> None:
        list(changes)
        await self.gate.wait()
        self.batches += 1

    async def aclose(self) -> None:
        pass


async def test_a_reader_waits_above_the_high_water_mark_until_the_writes_are_done() -> None:
    storage = GatedStorage()
    answered: list[int] = []

    def perform(actions: list[Action]) -> None:
        for action in actions:
            assert isinstance(action, Callback)
            action.run()

    pipeline = WritePipeline(storage, perform, high_water=2)
    room = anyio.Event()

    async def reader() -> None:
        await pipeline.wait_for_room()
        room.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            for n in range(3):  # one over the mark
                then: list[Action] = [Callback(lambda n=n: answered.append(n))]
                pipeline.submit(Persist(changes=(), then=then))
            tasks.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            waited, answered_early = not room.is_set(), list(answered)
            storage.gate.set()  # before any assertion: the pipeline's write is shielded
            await room.wait()
            await pipeline.flush()
            tasks.cancel_scope.cancel()
    assert waited  # over the mark: the reader waited
    assert answered_early == []  # nothing is answered before its commit
    assert answered == [0, 1, 2]
    assert storage.batches == 1  # the three queued writes went as one batch


async def test_at_the_mark_a_reader_does_not_wait() -> None:
    storage = GatedStorage()
    pipeline = WritePipeline(storage, lambda actions: None, high_water=2)
    for _ in range(2):
        pipeline.submit(Persist(changes=(), then=[]))
    with anyio.fail_after(5):
        await pipeline.wait_for_room()  # returns at once: two queued is not over the mark
