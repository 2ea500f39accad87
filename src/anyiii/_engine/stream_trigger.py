"""The stream service's trigger types and the messages it announces changes with.

Every stream change (a write, a delete, a `stream::send`) is one message in the shape the
real engine uses both for its `stream` trigger payloads and its subscriber socket
(`StreamWrapperMessage` in `engine/src/workers/stream/structs.rs`), with camelCase keys:

    {"type": "stream", "timestamp": <ms>, "streamName", "groupId", "id",
     "event": {"type": "create" | "update" | "delete", "data": ...}
            | {"type": "event", "event": {"type": <label>, "data": ...}}}

The `stream` trigger type's bindings take `{stream_name?, group_id?, item_id?,
condition_function_id?}`; an absent or empty field matches any. (The real engine indexes
bindings by `stream_name` and fails on a binding without one; here such a binding hears
every stream, which is what anyiii's typed `Streams.changes()` asks for when it is given no
stream.) `stream:join` and `stream:leave`
bindings take no config: they are called when a subscriber joins or leaves (see
`stream_socket.py`).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from .._protocol.frames import to_raw
from .deliveries import ConfiguredBindings, delivery
from .service import Invoke

__all__ = [
    "JOIN_TRIGGER",
    "LEAVE_TRIGGER",
    "STREAM_TRIGGER",
    "StreamTrigger",
    "stream_message",
]

STREAM_TRIGGER: Final = "stream"
JOIN_TRIGGER: Final = "stream:join"
LEAVE_TRIGGER: Final = "stream:leave"


def stream_message(
    timestamp: int, stream: str, group: str, item: str | None, event: dict[str, Any]
) -> dict[str, Any]:
    """One announcement of a stream change, as the real engine words it."""
    return {
        "type": STREAM_TRIGGER,
        "timestamp": timestamp,
        "streamName": stream,
        "groupId": group,
        "id": item,
        "event": event,
    }


class _Config(msgspec.Struct):
    stream_name: str | None = None
    group_id: str | None = None
    item_id: str | None = None
    condition_function_id: str | None = None


class StreamTrigger(ConfiguredBindings[_Config]):
    """The in-engine provider of the `stream` trigger type."""

    description = "Fires when a stream item is created, updated or deleted, or an event is sent"

    def __init__(self) -> None:
        super().__init__(_Config, "stream")

    def fires(self, message: dict[str, Any]) -> list[Invoke]:
        """The calls that announce `message` to the bindings it matches."""
        out: list[Invoke] = []
        payload: Any = None
        for binding, config in self.bound():
            if config.stream_name and config.stream_name != message["streamName"]:
                continue
            if config.group_id and config.group_id != message["groupId"]:
                continue
            if config.item_id and config.item_id != (message["id"] or ""):
                continue
            if payload is None:
                payload = to_raw(message)
            out.append(delivery(binding, payload, config.condition_function_id))
        return out
