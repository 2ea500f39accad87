"""Async clients of the engine's services: `State`, `Streams`, `PubSub`, `Queues`.

Each client calls through the worker it was given or, without one, the worker current
where the call is made (inside `async with anyiii.connect()` or a handler), like function
handles do. Values come back as plain JSON values, or converted to the `type=` given
(msgspec Structs, dataclasses, …). Change feeds and subscriptions are `Feed`s: async
iterators used in `async with`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast, overload

from .._worker import CallingWorker, Worker, require_worker
from . import requests as rq
from .events import StateEvent, StreamEvent
from .feeds import DEFAULT_FEED_BUFFER, Feed
from .requests import Change, ServiceRequest, UpdateResult, convert
from .update_ops import Op

__all__ = ["PubSub", "Queues", "State", "Streams"]

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class _Client:
    def __init__(self, worker: CallingWorker | None = None) -> None:
        self._given = worker

    @property
    def worker(self) -> CallingWorker:
        """The worker calls go through (the given one, else the current one)."""
        return self._given if self._given is not None else require_worker()

    async def _run(self, request: ServiceRequest[R]) -> R:
        return request.read(await self.worker.trigger_async(request.to_trigger_request()))

    def _feed_worker(self) -> Worker:
        # At run time the current worker is always an `anyiii.Worker`; feeds need its
        # registration methods, which the narrow calling protocol does not name.
        return cast(Worker, self.worker)

    def _feed(
        self, trigger_type: str, config: dict[str, Any], read: Callable[[Any], T], buffer: int
    ) -> Feed[T]:
        worker = self._feed_worker()
        return Feed(worker, trigger_type, config, read, buffer=buffer)


def _config(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class State(_Client):
    """The engine's key-value state (spec §10.3): values by (scope, key)."""

    @overload
    async def get(self, scope: str, key: str) -> Any: ...
    @overload
    async def get(self, scope: str, key: str, *, type: type[T]) -> T | None: ...
    async def get(self, scope: str, key: str, *, type: type[Any] | None = None) -> Any:
        """The value, or None when there is none."""
        return await self._run(rq.state_get(scope, key, type))

    async def set(
        self, scope: str, key: str, value: Any, *, type: type[T] | None = None
    ) -> Change[T]:
        """Store `value`; answers the old and the new value once the engine committed it."""
        return await self._run(rq.state_set(scope, key, value, type))

    async def update(
        self, scope: str, key: str, ops: Sequence[Op], *, type: type[T] | None = None
    ) -> UpdateResult[T]:
        """Apply `anyiii.ops` operations in order, atomically; failed ones are reported in
        `errors` and the others still apply."""
        return await self._run(rq.state_update(scope, key, ops, type))

    async def delete(self, scope: str, key: str, *, type: type[T] | None = None) -> T | None:
        """Remove the value; answers what it was (None if there was none)."""
        return await self._run(rq.state_delete(scope, key, type))

    async def list(self, scope: str, *, type: type[T] | None = None) -> builtins.list[T]:
        """Every value of a scope, in key order."""
        return await self._run(rq.state_list(scope, type))

    async def list_groups(self) -> builtins.list[str]:
        """Every scope that holds a value, sorted."""
        return await self._run(rq.state_list_groups())

    def changes(
        self,
        scope: str | None = None,
        key: str | None = None,
        *,
        type: type[T] | None = None,
        buffer: int = DEFAULT_FEED_BUFFER,
    ) -> Feed[StateEvent[T]]:
        """A change feed: `async with state.changes("orders") as feed: async for event in
        feed:` gets a `StateEvent` per change of the scope (and key) given, or of all."""
        kind = StateEvent[type] if type is not None else StateEvent  # type: ignore[valid-type]
        return self._feed(
            "state", _config(scope=scope, key=key), lambda p: convert(p, kind), buffer
        )


class Streams(_Client):
    """The engine's streams (spec §10.4): items by (stream, group, item id), with change
    events for subscribers."""

    @overload
    async def get(self, stream: str, group: str, item: str) -> Any: ...
    @overload
    async def get(self, stream: str, group: str, item: str, *, type: type[T]) -> T | None: ...
    async def get(
        self, stream: str, group: str, item: str, *, type: type[Any] | None = None
    ) -> Any:
        """The item's data, or None."""
        return await self._run(rq.stream_get(stream, group, item, type))

    async def set(
        self, stream: str, group: str, item: str, data: Any, *, type: type[T] | None = None
    ) -> Change[T]:
        """Store an item; answers the old and the new data."""
        return await self._run(rq.stream_set(stream, group, item, data, type))

    async def update(
        self,
        stream: str,
        group: str,
        item: str,
        ops: Sequence[Op],
        *,
        type: type[T] | None = None,
    ) -> UpdateResult[T]:
        """Apply `anyiii.ops` operations to an item, in order."""
        return await self._run(rq.stream_update(stream, group, item, ops, type))

    async def delete(
        self, stream: str, group: str, item: str, *, type: type[T] | None = None
    ) -> T | None:
        """Remove an item; answers its old data."""
        return await self._run(rq.stream_delete(stream, group, item, type))

    async def list(
        self, stream: str, group: str, *, type: type[T] | None = None
    ) -> builtins.list[T]:
        """Every item of a group."""
        return await self._run(rq.stream_list(stream, group, type))

    async def list_groups(self, stream: str) -> builtins.list[str]:
        """The groups of a stream."""
        return await self._run(rq.stream_list_groups(stream))

    def changes(
        self,
        stream: str | None = None,
        group: str | None = None,
        item: str | None = None,
        *,
        type: type[T] | None = None,
        buffer: int = DEFAULT_FEED_BUFFER,
    ) -> Feed[StreamEvent[T]]:
        """A change feed of stream items (`StreamEvent`s), narrowed by the ids given."""
        kind = StreamEvent[type] if type is not None else StreamEvent  # type: ignore[valid-type]
        config = _config(stream_name=stream, group_id=group, item_id=item)
        return self._feed("stream", config, lambda p: convert(p, kind), buffer)


class PubSub(_Client):
    """The engine's in-memory pub/sub (spec §10.5): `publish` reaches every subscriber of
    the topic that is connected at that moment; nothing is kept."""

    async def publish(self, topic: str, data: Any) -> None:
        """Send `data` to every subscriber of `topic`."""
        await self._run(rq.publish(topic, data))

    def subscribe(
        self, topic: str, *, type: type[T] | None = None, buffer: int = DEFAULT_FEED_BUFFER
    ) -> Feed[T]:
        """The messages of `topic` as an async iterator (in `async with`)."""
        return self._feed("subscribe", {"topic": topic}, lambda p: convert(p, type), buffer)

    def subscriber(self, topic: str, *, function_id: str | None = None) -> Callable[[F], F]:
        """Decorator: serve the function as a subscriber of `topic` (its id defaults to
        `subscriber::<topic>::<qualified name>`), bound for as long as the worker runs."""
        return _binding_decorator(self, "subscribe", topic, function_id)


class Queues(_Client):
    """The engine's durable queues: calls handed to a named queue, and durable topics."""

    async def enqueue(self, queue: str, function_id: str, data: Any) -> str:
        """Hand a call of `function_id` to the named queue; the engine runs it with
        retries. Answers the message's receipt id once the message is on disk."""
        return await self._run(rq.enqueue(queue, function_id, data))

    async def publish(self, topic: str, data: Any) -> None:
        """Publish to a durable topic (`iii::durable::publish`): every function bound
        with a `durable:subscriber` trigger gets the message, at least once."""
        await self._run(rq.publish_durable(topic, data))

    def subscriber(self, topic: str, *, function_id: str | None = None) -> Callable[[F], F]:
        """Decorator: serve the function as a `durable:subscriber` of `topic`."""
        return _binding_decorator(self, "durable:subscriber", topic, function_id)


def _binding_decorator(
    client: _Client, trigger_type: str, topic: str, function_id: str | None
) -> Callable[[F], F]:
    def decorate(handler: F) -> F:
        worker = client._feed_worker()
        name = function_id or f"subscriber::{topic}::{handler.__qualname__}"
        worker.register_function(name, handler)
        worker.bind_trigger(trigger_type, name, {"topic": topic})
        return handler

    return decorate
