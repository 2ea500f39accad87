"""The service clients for blocking code: `BlockingState`, `BlockingStreams`,
`BlockingPubSub`, `BlockingQueues`.

They take a blocking worker (`anyiii.blocking.register_worker(...)`, or anything with the
official SDK's `trigger(request)`, `register_function` and `register_trigger`) and run the
same requests as the async clients (`requests.py`). Change feeds are plain iterators used
in `with`: the events are delivered to a function that runs in a worker thread and puts
them in a bounded queue, which the iterating thread reads.
"""

from __future__ import annotations

import builtins
import queue
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from . import requests as rq
from .events import StateEvent, StreamEvent
from .feeds import DEFAULT_FEED_BUFFER, binding_lookup, feed_function_id
from .requests import Change, ServiceRequest, UpdateResult, convert
from .update_ops import Op

__all__ = [
    "BlockingFeed",
    "BlockingPubSub",
    "BlockingQueues",
    "BlockingState",
    "BlockingStreams",
]

T = TypeVar("T")
R = TypeVar("R")

_END: Any = object()


class _Unregisters(Protocol):
    def unregister(self) -> None: ...


class SyncWorker(Protocol):
    """What the blocking clients need of a worker (an `anyiii.BlockingWorker`)."""

    def trigger(self, request: Any) -> Any: ...

    def register_function(self, function_id: str, handler: Callable[..., Any]) -> Any: ...

    def register_trigger(
        self, trigger: str, function_id: str | None = None, config: Any = None
    ) -> Any: ...


class BlockingFeed(Generic[T]):
    """Events of one trigger binding for the length of a `with` block, as an iterator."""

    def __init__(
        self,
        worker: SyncWorker,
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
        self._events: queue.Queue[Any] = queue.Queue(maxsize=buffer)
        self._closed = False
        self._handles: list[_Unregisters] = []
        self.function_id = feed_function_id(trigger_type)

    def _deliver(self, payload: Any) -> None:
        # Runs in a worker thread; a full queue makes the delivery wait (backpressure).
        if not self._closed:
            self._events.put(self._read(payload))

    def __enter__(self) -> Self:
        self._handles.append(self._worker.register_function(self.function_id, self._deliver))
        trigger = self._worker.register_trigger(self._trigger_type, self.function_id, self._config)
        self._handles.append(trigger)
        try:
            self._worker.trigger(binding_lookup(trigger.id))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unbind, unregister and end the iteration (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for handle in reversed(self._handles):
            handle.unregister()
        self._handles.clear()
        while True:  # make room for the end marker; undelivered events are dropped
            try:
                self._events.get_nowait()
            except queue.Empty:
                break
        self._events.put(_END)

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        item = self._events.get()
        if item is _END:
            self._events.put(_END)
            raise StopIteration
        return item  # type: ignore[no-any-return]

    def get(self, timeout: float | None = None) -> T:
        """The next event, waiting at most `timeout` seconds (`queue.Empty` after that)."""
        item = self._events.get(timeout=timeout)
        if item is _END:
            self._events.put(_END)
            raise StopIteration
        return item  # type: ignore[no-any-return]


class _BlockingClient:
    def __init__(self, worker: SyncWorker) -> None:
        self.worker = worker

    def _run(self, request: ServiceRequest[R]) -> R:
        return request.read(self.worker.trigger(request.to_trigger_request()))


def _config(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class BlockingState(_BlockingClient):
    """`anyiii.State` for blocking code."""

    def get(self, scope: str, key: str, *, type: type[T] | None = None) -> T | None:
        return self._run(rq.state_get(scope, key, type))

    def set(self, scope: str, key: str, value: Any, *, type: type[T] | None = None) -> Change[T]:
        return self._run(rq.state_set(scope, key, value, type))

    def update(
        self, scope: str, key: str, ops: Sequence[Op], *, type: type[T] | None = None
    ) -> UpdateResult[T]:
        return self._run(rq.state_update(scope, key, ops, type))

    def delete(self, scope: str, key: str, *, type: type[T] | None = None) -> T | None:
        return self._run(rq.state_delete(scope, key, type))

    def list(self, scope: str, *, type: type[T] | None = None) -> builtins.list[T]:
        return self._run(rq.state_list(scope, type))

    def list_groups(self) -> builtins.list[str]:
        return self._run(rq.state_list_groups())

    def changes(
        self,
        scope: str | None = None,
        key: str | None = None,
        *,
        type: type[T] | None = None,
        buffer: int = DEFAULT_FEED_BUFFER,
    ) -> BlockingFeed[StateEvent[T]]:
        kind = StateEvent[type] if type is not None else StateEvent  # type: ignore[valid-type]
        config = _config(scope=scope, key=key)
        return BlockingFeed(self.worker, "state", config, lambda p: convert(p, kind), buffer=buffer)


class BlockingStreams(_BlockingClient):
    """`anyiii.Streams` for blocking code."""

    def get(self, stream: str, group: str, item: str, *, type: type[T] | None = None) -> T | None:
        return self._run(rq.stream_get(stream, group, item, type))

    def set(
        self, stream: str, group: str, item: str, data: Any, *, type: type[T] | None = None
    ) -> Change[T]:
        return self._run(rq.stream_set(stream, group, item, data, type))

    def update(
        self,
        stream: str,
        group: str,
        item: str,
        ops: Sequence[Op],
        *,
        type: type[T] | None = None,
    ) -> UpdateResult[T]:
        return self._run(rq.stream_update(stream, group, item, ops, type))

    def delete(
        self, stream: str, group: str, item: str, *, type: type[T] | None = None
    ) -> T | None:
        return self._run(rq.stream_delete(stream, group, item, type))

    def list(self, stream: str, group: str, *, type: type[T] | None = None) -> builtins.list[T]:
        return self._run(rq.stream_list(stream, group, type))

    def list_groups(self, stream: str) -> builtins.list[str]:
        return self._run(rq.stream_list_groups(stream))

    def changes(
        self,
        stream: str | None = None,
        group: str | None = None,
        item: str | None = None,
        *,
        type: type[T] | None = None,
        buffer: int = DEFAULT_FEED_BUFFER,
    ) -> BlockingFeed[StreamEvent[T]]:
        kind = StreamEvent[type] if type is not None else StreamEvent  # type: ignore[valid-type]
        config = _config(stream_name=stream, group_id=group, item_id=item)
        return BlockingFeed(
            self.worker, "stream", config, lambda p: convert(p, kind), buffer=buffer
        )


class BlockingPubSub(_BlockingClient):
    """`anyiii.PubSub` for blocking code."""

    def publish(self, topic: str, data: Any) -> None:
        self._run(rq.publish(topic, data))

    def subscribe(
        self, topic: str, *, type: type[T] | None = None, buffer: int = DEFAULT_FEED_BUFFER
    ) -> BlockingFeed[T]:
        read: Callable[[Any], T] = lambda p: convert(p, type)  # noqa: E731
        return BlockingFeed(self.worker, "subscribe", {"topic": topic}, read, buffer=buffer)


class BlockingQueues(_BlockingClient):
    """`anyiii.Queues` for blocking code."""

    def enqueue(self, queue: str, function_id: str, data: Any) -> str:
        return self._run(rq.enqueue(queue, function_id, data))

    def publish(self, topic: str, data: Any) -> None:
        self._run(rq.publish_durable(topic, data))
