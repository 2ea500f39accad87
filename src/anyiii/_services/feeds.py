"""Trigger events as an async iterator: the change feeds and topic subscriptions.

A `Feed` registers a private function on the worker and binds a trigger of the given type
to it; each event the engine delivers is converted and put in a bounded buffer the
consumer iterates. When the buffer is full the delivering invocation waits, so a slow
consumer slows the deliveries down (through the worker's invocation limits) instead of
growing memory or losing events. Entering the block returns once the engine has the
binding (a lookup of it on the same connection, which the engine answers after it
processed the binding), so an event caused from elsewhere right after cannot slip past
the feed. Leaving the `async with` block unbinds the trigger,
unregisters the function and ends the iteration; events that arrive after that are
dropped (the engine sees them answered).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["DEFAULT_FEED_BUFFER", "Feed", "FeedWorker", "binding_lookup", "feed_function_id"]

T = TypeVar("T")

DEFAULT_FEED_BUFFER = 256
"""Events a feed holds for a consumer that has not read them yet."""


def feed_function_id(trigger_type: str) -> str:
    """A fresh id for the private function a feed's events are delivered to."""
    return f"anyiii::feed::{trigger_type}::{uuid.uuid4().hex[:12]}"


def binding_lookup(trigger_id: str) -> dict[str, Any]:
    """The call that confirms the engine has a binding (`engine::registered-triggers::info`,
    in the real engine too): answered only after the binding, sent before it, was handled."""
    return {
        "function_id": "engine::registered-triggers::info",
        "payload": {"id": trigger_id},
        "namespace": "default",
    }


class _Unregisters(Protocol):
    async def unregister(self) -> None: ...


class FeedWorker(Protocol):
    """What a feed needs of the worker (an `anyiii.Worker`)."""

    def register_function(
        self, function_id: str, handler: Callable[[Any], Any], *, metadata: Any = None
    ) -> _Unregisters: ...

    async def register_trigger(
        self, trigger_type: str, function_id: str, config: Any = None
    ) -> _Bound: ...

    async def trigger_async(self, request: Any) -> Any: ...


class _Bound(_Unregisters, Protocol):
    id: str


class Feed(Generic[T]):
    """Events of one trigger binding, for the length of an `async with` block."""

    def __init__(
        self,
        worker: FeedWorker,
        trigger_type: str,
        config: dict[str, Any],
        read: Callable[[Any], T],
        *,
        buffer: int = DEFAULT_FEED_BUFFER,
    ) -> None:
        self._worker = worker
        self._trigger_type = trigger_type
        self._config = config
        self._read = read
        self._send: MemoryObjectSendStream[T]
        self._receive: MemoryObjectReceiveStream[T]
        self._send, self._receive = anyio.create_memory_object_stream[T](buffer)
        self._function: _Unregisters | None = None
        self._trigger: _Unregisters | None = None
        self.function_id = feed_function_id(trigger_type)
        """The private function the events are delivered to."""

    async def _deliver(self, payload: Any) -> None:
        event = self._read(payload)
        # A closed feed drops a late event: there is nobody left to read it.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            await self._send.send(event)

    async def __aenter__(self) -> Self:
        self._function = self._worker.register_function(
            self.function_id, self._deliver, metadata={"internal": True}
        )
        trigger = await self._worker.register_trigger(
            self._trigger_type, self.function_id, self._config
        )
        self._trigger = trigger
        try:
            await self._worker.trigger_async(binding_lookup(trigger.id))
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unbind, unregister and end the iteration (idempotent)."""
        trigger, function = self._trigger, self._function
        self._trigger = self._function = None
        self._send.close()
        with anyio.CancelScope(shield=True):
            if trigger is not None:
                await trigger.unregister()
            if function is not None:
                await function.unregister()
        self._receive.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None
