"""The events change feeds deliver, as the engine's trigger payloads have them.

`StateEvent` is the `state` trigger's payload (spec §10.3); `StreamEvent` the `stream`
trigger's, whose keys the real engine writes in camelCase (§10.4), read here into
snake_case attributes.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec

__all__ = ["StateEvent", "StreamEvent", "StreamEventBody"]

T = TypeVar("T")


class StateEvent(msgspec.Struct, Generic[T], frozen=True):
    """One change of a state value: created, updated or deleted (`new_value` None)."""

    event_type: Literal["state:created", "state:updated", "state:deleted"]
    scope: str
    key: str
    old_value: T | None = None
    new_value: T | None = None
    type: str = "state"

    @property
    def deleted(self) -> bool:
        """True for a deletion."""
        return self.event_type == "state:deleted"


class StreamEventBody(msgspec.Struct, Generic[T], frozen=True):
    """What happened to the item: `create`, `update` or `delete`, and its data."""

    type: str
    data: T | None = None


class StreamEvent(msgspec.Struct, Generic[T], frozen=True, rename="camel"):
    """One change of a stream item (`streamName`, `groupId`, `id` on the wire)."""

    stream_name: str
    group_id: str
    id: str | None = None
    event: StreamEventBody[T] | None = None
    timestamp: int | None = None
    type: str = "stream"

    @property
    def kind(self) -> str | None:
        """`create`, `update` or `delete`."""
        return self.event.type if self.event is not None else None

    @property
    def data(self) -> Any:
        """The item's data carried by the event."""
        return self.event.data if self.event is not None else None
