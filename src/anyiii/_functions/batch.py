"""`Batch`: several fire-and-forget calls sent together, in one transport write."""

from __future__ import annotations

from typing import Any, ParamSpec, Self

from .._worker import CallingWorker
from .calls import Call, DispatchID, require_worker
from .functions import AsyncFunction

__all__ = ["Batch"]

P = ParamSpec("P")


class Batch:
    """Calls collected with `add` / `add_call` and sent by `await batch.dispatch()`.

    Every call is sent as fire-and-forget (the void action) with its own dispatch id; all of
    them are queued before the first is written, so they leave in one write. The batch is
    cleared only once they were handed to the connection, so a failed dispatch can be
    retried as it is.
    """

    def __init__(self, worker: CallingWorker | None = None) -> None:
        self._worker = worker
        self.calls: list[Call] = []

    def add(self, function: AsyncFunction[P, Any], *args: P.args, **kwargs: P.kwargs) -> Self:
        """Add a call of `function` with these arguments (checked against its signature)."""
        self.calls.append(function.build_call(*args, **kwargs))
        return self

    def add_call(self, call: Call) -> Self:
        """Add a call built earlier (`f.build_call(...)`)."""
        self.calls.append(call)
        return self

    def clear(self) -> None:
        """Drop every call added so far."""
        self.calls.clear()

    async def dispatch(self) -> list[DispatchID]:
        """Send every call; returns their dispatch ids in the order they were added."""
        worker = self._worker or require_worker()
        pairs = [call.dispatch_request() for call in self.calls]
        await worker.trigger_void_batch([request for _, request in pairs])
        self.calls.clear()
        return [dispatch_id for dispatch_id, _ in pairs]
