"""Who listens to which stream on the subscriber socket, and handing them messages (sans-IO).

Each subscriber connection registers a `Sink`: a bounded queue owned by the socket layer
(`stream_socket.py`). Publishing never waits: a message is offered to each sink whose
connection has a matching subscription, and a sink that refuses it (its queue is full: the
browser stopped reading) loses its connection here at once, so one slow subscriber can
neither block the engine nor make it hold an ever-growing backlog.

A subscription matches a message of its stream and group when it names no item, or the
message's item (as in the real engine's `SocketStreamConnection::handle_stream_message`,
a connection gets a message once per matching subscription).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

__all__ = ["Sink", "StreamHub", "Subscription"]


class Subscription(msgspec.Struct, frozen=True):
    """One `join` of a subscriber (the `data` of its message, with camelCase keys)."""

    subscription_id: str = msgspec.field(name="subscriptionId")
    stream_name: str = msgspec.field(name="streamName")
    group_id: str = msgspec.field(name="groupId")
    id: str | None = None

    def matches(self, message: dict[str, Any]) -> bool:
        """Whether `message` (a stream announcement) is for this subscription."""
        return (
            self.stream_name == message["streamName"]
            and self.group_id == message["groupId"]
            and (self.id is None or self.id == message["id"])
        )


class Sink(Protocol):
    """Where a subscriber's messages are queued (by the socket layer)."""

    def offer(self, message: bytes) -> bool:
        """Queue `message` without waiting; False when the subscriber cannot keep up
        (the sink then closes its connection; the hub forgets it)."""
        ...


@dataclass(slots=True)
class _Connection:
    sink: Sink
    subscriptions: dict[str, Subscription] = field(default_factory=dict)


class StreamHub:
    """The subscriber connections and their subscriptions (see the module docstring)."""

    def __init__(self) -> None:
        self._connections: dict[int, _Connection] = {}
        self._next = 1

    def connect(self, sink: Sink) -> int:
        """A new subscriber connection; returns its id."""
        conn = self._next
        self._next += 1
        self._connections[conn] = _Connection(sink)
        return conn

    def disconnect(self, conn: int) -> list[Subscription]:
        """Forget a connection; returns the subscriptions it still had."""
        connection = self._connections.pop(conn, None)
        return [] if connection is None else list(connection.subscriptions.values())

    def join(self, conn: int, subscription: Subscription) -> bool:
        """Add a subscription (replacing one of the same id); False if the connection is
        gone."""
        connection = self._connections.get(conn)
        if connection is None:
            return False
        connection.subscriptions[subscription.subscription_id] = subscription
        return True

    def leave(self, conn: int, subscription_id: str) -> None:
        """Remove a subscription (unknown ids are ignored)."""
        connection = self._connections.get(conn)
        if connection is not None:
            connection.subscriptions.pop(subscription_id, None)

    def send(self, conn: int, message: dict[str, Any]) -> bool:
        """Queue one message for one connection (a join's `sync`); False if it is gone."""
        connection = self._connections.get(conn)
        if connection is None:
            return False
        if not connection.sink.offer(msgspec.json.encode(message)):
            del self._connections[conn]
            return False
        return True

    def publish(self, message: dict[str, Any]) -> None:
        """Offer `message` to every matching subscription; drop connections that are full."""
        data: bytes | None = None
        for conn, connection in list(self._connections.items()):
            for subscription in list(connection.subscriptions.values()):
                if not subscription.matches(message):
                    continue
                if data is None:
                    data = msgspec.json.encode(message)
                if not connection.sink.offer(data):
                    del self._connections[conn]
                    break

    def subscriptions(self, conn: int) -> list[Subscription]:
        """A connection's current subscriptions."""
        connection = self._connections.get(conn)
        return [] if connection is None else list(connection.subscriptions.values())

    def __len__(self) -> int:
        """How many subscriber connections are registered."""
        return len(self._connections)
