"""A worker's connection state, as users see it, and who is told when it changes."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from .subscriptions import LatestValues

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


class StateSubscription(LatestValues[ConnectionState]):
    """An async iterator of connection states, starting with the state when subscribed.

    It buffers at most `size` states; when the consumer lags, the oldest are dropped, so a
    slow consumer never makes the worker wait and always sees the latest state. Iteration
    ends when the worker is gone or `close()` is called.
    """

    def __init__(self, first: ConnectionState, size: int = 8) -> None:
        super().__init__(size, (first,))


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
        self._subscriptions = [s for s in self._subscriptions if not s.closed]
        for subscription in self._subscriptions:
            subscription.push(state)

    def close(self) -> None:
        """End every subscription (the worker is gone)."""
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
