"""The `stream` service as the engine runs it (spec §10.4): the `stream::*` functions, the
`stream`, `stream:join` and `stream:leave` trigger types, the `stream_items` table, and
the hub the subscriber socket delivers from.

Inputs and outputs follow the real engine (`engine/src/workers/stream/stream.rs`):

* `stream::set {stream_name, group_id, item_id, data}` → `{old_value, new_value}`
* `stream::get {stream_name, group_id, item_id}` → the value or null
* `stream::delete {…}` → `{old_value}`
* `stream::update {…, ops}` → `{old_value, new_value, errors?}`
* `stream::list {stream_name, group_id}` → the group's values
* `stream::list_groups {stream_name}` → the group ids
* `stream::list_all {}` → `{stream: [{id, groups}], count}`
* `stream::send {stream_name, group_id, id?, type, data}` → null

**Custom streams.** When a function `stream::<op>(<stream_name>)` is registered (the SDKs'
`create_stream`), `get`, `set`, `delete`, `update`, `list` and `list_groups` of that stream
go to it instead of the store. Reads answer what it answers. Writes are announced from
what it answers, as the real engine does: a `set`/`update` whose `old_value` is non-null
is an `update`, otherwise a `create`; a `delete` with a non-null `old_value` is a
`delete`. `list_all` and `send` never go to a worker.

Every write and `send` is announced (after its commit) to the `stream` trigger bindings it
matches and to subscribers (`stream_hub.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE, DESERIALIZATION_ERROR, INVALID_ARGUMENTS
from .._protocol.frames import ErrorBody, decode_value, to_raw
from .providers import Subscribers
from .service import (
    BaseService,
    Effect,
    Forward,
    Notify,
    Reply,
    ServiceContext,
    ServiceFunction,
)
from .service_config import adapter_note
from .stream_hub import StreamHub
from .stream_trigger import (
    JOIN_TRIGGER,
    LEAVE_TRIGGER,
    STREAM_TRIGGER,
    StreamTrigger,
    stream_message,
)
from .streams import STREAM_ITEMS_SCHEMA, STREAM_RESTORE_QUERY, StreamChange, StreamStore
from .update_ops import UpdateOp

__all__ = ["StreamService"]

logger = logging.getLogger("anyiii.engine")

JSON_ERROR: Final = "JSON_ERROR"
"""The real engine's code for a custom stream function whose answer has the wrong shape."""

_WRITE_ERRORS: Final = {
    "set": ("STREAM_SET_ERROR", "set"),
    "delete": ("STREAM_DELETE_ERROR", "delete"),
    "update": ("STREAM_UPDATE_ERROR", "update"),
}
"""Per write: the real engine's error code when a custom stream function fails, and the
verb of its message (`Failed to set value: …`)."""

_SOCKET_KEYS: Final = frozenset({"port", "host", "auth_function"})
"""The keys of the real engine's `iii-stream` config block (`StreamModuleConfig`) about
its subscriber socket; the other one is `adapter`."""


class _Item(msgspec.Struct):
    stream_name: str
    group_id: str
    item_id: str


class _Set(_Item):
    data: Any = None


class _Update(_Item):
    ops: list[UpdateOp]


class _Group(msgspec.Struct):
    stream_name: str
    group_id: str


class _Stream(msgspec.Struct):
    stream_name: str


class _Send(msgspec.Struct):
    stream_name: str
    group_id: str
    type: str
    id: str | None = None
    data: Any = None


class _WriteResult(msgspec.Struct):
    """What a custom stream's `set`/`delete`/`update` answers (real: StreamSetResult …)."""

    old_value: Any = None
    new_value: Any = None
    errors: list[Any] = []


class _InputError(Exception):
    pass


def _parse(data: Raw, shape: type[Any]) -> Any:
    try:
        return msgspec.convert(decode_value(data), shape, strict=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _InputError(str(exc)) from None


def custom_function_id(operation: str, stream: str) -> str:
    """The id a worker registers to take over `operation` for one stream."""
    return f"stream::{operation}({stream})"


class StreamService(BaseService):
    """Streams: items in memory (and on disk with a data directory), announced to trigger
    bindings and subscribers after they are committed."""

    name = "iii-stream"
    schema = (STREAM_ITEMS_SCHEMA,)
    restore_queries = (STREAM_RESTORE_QUERY,)

    def __init__(self, context: ServiceContext, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._context = context
        self.store = StreamStore()
        self.hub = StreamHub()
        self.trigger = StreamTrigger()
        self.joins = Subscribers("Fires when a subscriber joins a stream")
        self.leaves = Subscribers("Fires when a subscriber leaves a stream")
        self.trigger_types[STREAM_TRIGGER] = self.trigger
        self.trigger_types[JOIN_TRIGGER] = self.joins
        self.trigger_types[LEAVE_TRIGGER] = self.leaves
        config = config or {}
        # `port` and `host` are `run()`'s business here; `adapter` (kv, redis, bridge) has
        # no counterpart: items live in the engine's own storage.
        adapter_note(
            self.name, {k: v for k, v in config.items() if k not in _SOCKET_KEYS}, local=("kv",)
        )
        auth = config.get("auth_function")
        self.auth_function: str | None = auth if isinstance(auth, str) and auth else None
        """Called with each subscriber's handshake; its `context` goes to join/leave."""
        for function_id, description, run in (
            ("stream::set", "Set a value in a stream", self._set),
            ("stream::get", "Get a value from a stream", self._get),
            ("stream::delete", "Delete a value from a stream", self._delete),
            ("stream::update", "Atomically update a stream value", self._update),
            ("stream::list", "List all items in a stream group", self._list),
            ("stream::list_groups", "List all groups in a stream", self._list_groups),
            ("stream::list_all", "List all streams with their groups", self._list_all),
            ("stream::send", "Send a custom event to stream subscribers", self._send),
        ):
            self.functions[function_id] = ServiceFunction(description, _guarded(run))

    def wall_clock_ms(self) -> int:
        """Milliseconds since the epoch, as stamped on announcements."""
        return self._context.wall_clock_ms()

    def restore(self, rows: Sequence[Sequence[tuple[Any, ...]]]) -> None:
        (items,) = rows
        self.store = StreamStore(
            (stream, group, item, seq, msgspec.json.decode(value))
            for stream, group, item, seq, value in items
        )

    # --- announcing ----------------------------------------------------------------------------

    def announce(
        self, stream: str, group: str, item: str | None, event: dict[str, Any]
    ) -> tuple[Effect, ...]:
        """The effects that tell trigger bindings and subscribers about one change."""
        message = stream_message(self._context.wall_clock_ms(), stream, group, item, event)
        fires = self.trigger.fires(message)
        return (*fires, Notify(lambda: self.hub.publish(message)))

    def _announce_change(self, change: StreamChange) -> tuple[Effect, ...]:
        if change.deleted:
            if not change.existed:
                return ()
            event = {"type": "delete", "data": change.old}
        else:
            event = {"type": "update" if change.existed else "create", "data": change.new}
        return self.announce(change.stream, change.group, change.item, event)

    def _custom(self, operation: str, stream: str) -> str | None:
        function_id = custom_function_id(operation, stream)
        return function_id if self._context.has_function(DEFAULT_NAMESPACE, function_id) else None

    # --- the functions -------------------------------------------------------------------------

    def _set(self, data: Raw) -> Reply:
        request: _Set = _parse(data, _Set)
        custom = self._custom("set", request.stream_name)
        if custom is not None:
            return self._custom_write("set", custom, request, _normalized(request))
        change = self.store.set(
            request.stream_name, request.group_id, request.item_id, request.data
        )
        result = to_raw({"old_value": change.old, "new_value": change.new})
        return Reply(result, changes=(change,), effects=self._announce_change(change))

    def _update(self, data: Raw) -> Reply:
        request: _Update = _parse(data, _Update)
        custom = self._custom("update", request.stream_name)
        if custom is not None:
            return self._custom_write("update", custom, request, data)
        change, errors = self.store.update(
            request.stream_name, request.group_id, request.item_id, request.ops
        )
        answer: dict[str, Any] = {"old_value": change.old, "new_value": change.new}
        if errors:
            answer["errors"] = errors
        return Reply(to_raw(answer), changes=(change,), effects=self._announce_change(change))

    def _delete(self, data: Raw) -> Reply:
        request: _Item = _parse(data, _Item)
        custom = self._custom("delete", request.stream_name)
        if custom is not None:
            return self._custom_write("delete", custom, request, _normalized(request))
        change = self.store.delete(request.stream_name, request.group_id, request.item_id)
        changes = (change,) if change.existed else ()
        effects = self._announce_change(change)
        return Reply(to_raw({"old_value": change.old}), changes=changes, effects=effects)

    def _get(self, data: Raw) -> Reply:
        request: _Item = _parse(data, _Item)
        custom = self._custom("get", request.stream_name)
        if custom is not None:
            return Reply(Forward(custom, _normalized(request)))
        return Reply(to_raw(self.store.get(request.stream_name, request.group_id, request.item_id)))

    def _list(self, data: Raw) -> Reply:
        request: _Group = _parse(data, _Group)
        custom = self._custom("list", request.stream_name)
        if custom is not None:
            return Reply(Forward(custom, _normalized(request)))
        return Reply(to_raw(self.store.items(request.stream_name, request.group_id)))

    def _list_groups(self, data: Raw) -> Reply:
        request: _Stream = _parse(data, _Stream)
        custom = self._custom("list_groups", request.stream_name)
        if custom is not None:
            return Reply(Forward(custom, _normalized(request)))
        return Reply(to_raw(self.store.groups(request.stream_name)))

    def _list_all(self, data: Raw) -> Reply:
        streams = [{"id": name, "groups": groups} for name, groups in self.store.streams().items()]
        return Reply(to_raw({"stream": streams, "count": len(streams)}))

    def _send(self, data: Raw) -> Reply:
        request: _Send = _parse(data, _Send)
        event = {"type": "event", "event": {"type": request.type, "data": request.data}}
        effects = self.announce(request.stream_name, request.group_id, request.id, event)
        return Reply(to_raw(None), effects=effects)

    def _custom_write(self, operation: str, function_id: str, request: _Item, data: Raw) -> Reply:
        """Forward a write to a worker's custom stream and announce what it answers."""
        code, verb = _WRITE_ERRORS[operation]
        stream, group, item = request.stream_name, request.group_id, request.item_id

        def then(result: Raw | None, error: ErrorBody | None) -> Reply:
            if error is not None:
                message = f"Failed to {verb} value: {error.code}: {error.message}"
                return Reply(error=ErrorBody(code, message))
            value = None if result is None else decode_value(result)
            if value is None:
                return Reply(error=ErrorBody(code, f"Failed to {verb} value: no result"))
            try:
                answer = msgspec.convert(value, _WriteResult)
            except msgspec.ValidationError as exc:
                return Reply(error=ErrorBody(JSON_ERROR, f"Failed to convert result: {exc}"))
            if operation == "delete":
                effects: tuple[Effect, ...] = ()
                if answer.old_value is not None:
                    event = {"type": "delete", "data": answer.old_value}
                    effects = self.announce(stream, group, item, event)
                return Reply(to_raw({"old_value": answer.old_value}), effects=effects)
            kind = "create" if answer.old_value is None else "update"
            effects = self.announce(stream, group, item, {"type": kind, "data": answer.new_value})
            out: dict[str, Any] = {"old_value": answer.old_value, "new_value": answer.new_value}
            if answer.errors:
                out["errors"] = answer.errors
            return Reply(to_raw(out), effects=effects)

        return Reply(Forward(function_id, data, then=then))


def _normalized(request: msgspec.Struct) -> Raw:
    """The input as the real engine forwards it to a custom stream: its known fields only
    (`update` is forwarded as sent, its operations in the caller's own words)."""
    return to_raw(msgspec.to_builtins(request))


def _guarded(run: Callable[[Raw], Reply]) -> Callable[[Raw], Reply]:
    def guarded(data: Raw) -> Reply:
        try:
            return run(data)
        except _InputError as exc:
            return Reply(error=ErrorBody(DESERIALIZATION_ERROR, str(exc)))
        except (TypeError, ValueError) as exc:  # a value JSON cannot hold, say
            return Reply(error=ErrorBody(INVALID_ARGUMENTS, str(exc)))

    return guarded
