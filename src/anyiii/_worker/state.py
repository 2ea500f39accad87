"""A worker's connection state, as users see it, and who is told when it changes."""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable

import anyio

__all__ = ["ConnectionState", "StateBroadcaster", "StateCallback", "StateSubscription"]

logger = logging.getLogger("anyiii.worker")


class ConnectionState(enum.StrEnum):
    """The names the official SDKs use for a worker's connection state.

    A `str` enum, so `state == "connected"` holds as it does with the official SDK's
    plain strings.
    """

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


StateCallback = Callable[[ConnectionState], object]


class StateSubscription:
    """An async iterator of connection states, starting with the state when subscribed.

    It buffers at most `size` states; when the consumer lags, the oldest are dropped, so a
    slow consumer never makes the worker wait and always sees the latest state. Iteration
    ends when the worker is gone or `close()` is called.
    """

    def __init__(self, first: ConnectionState, size: int = 8) -> None:
        self._queue: deque[ConnectionState] = deque([first], maxlen=size)
        self._changed = anyio.Event()
        self._closed = False

    def _push(self, state: ConnectionState) -> None:
        self._queue.append(state)
        self._changed.set()

    def close(self) -> None:
        """Stop the subscription; a waiting iteration ends."""
        self._closed = True
        self._changed.set()

    def __aiter__(self) -> StateSubscription:
        return self

    async def __anext__(self) -> ConnectionState:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._changed = anyio.Event()
            await self._changed.wait()
        return self._queue.popleft()


class StateBroadcaster:
    """Holds the current state and tells callbacks and subscriptions when it changes."""

    def __init__(self) -> None:
        self.state = ConnectionState.DISCONNECTED
        self._callbacks: list[StateCallback] = []
        self._subscriptions: list[StateSubscription] = []

    def add_callback(self, callback: StateCallback) -> Callable[[], None]:
        """Call `callback(state)` on every change; returns a function that stops it."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def subscribe(self) -> StateSubscription:
        """A new subscription, starting with the current state."""
        subscription = StateSubscription(self.state)
        self._subscriptions.append(subscription)
        return subscription

    def set(self, state: ConnectionState) -> None:
        if state is self.state:
            return
        self.state = state
        for callback in list(self._callbacks):
            try:
                callback(state)
            except Exception:  # a user callback must not break the connection
                logger.exception("connection state callback %r failed", callback)
        self._subscriptions = [s for s in self._subscriptions if not s._closed]
        for subscription in self._subscriptions:
            subscription._push(state)

    def close(self) -> None:
        """End every subscription (the worker is gone)."""
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
