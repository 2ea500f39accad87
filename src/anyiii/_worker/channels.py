"""Data channels in the worker (spec §12): refs in payloads, and `create_channel`.

A channel is a one-way stream of bytes and messages from a writer to a reader, through the
engine. `engine::channels::create` makes one and answers two refs,
`{"channel_id", "access_key", "direction"}`, one per end. Refs travel inside ordinary
payloads; the worker that receives one gets a live end instead:

* incoming: `channel_resolver(plane)` turns every object of exactly that shape, anywhere in
  a handler's decoded payload, into a `ChannelReader` (direction `read`) or a
  `ChannelWriter` (direction `write`), bound to the worker's engine. The ends are lazy:
  nothing connects until one is used.
* outgoing: a reader or writer put into a call's payload, or a handler's result, is sent
  as its ref (the value encoder knows `ChannelEndpoint`), so an end can be handed on.

`create_channel` is what `Worker.create_channel` does: it calls the built-in and wraps the
two refs in a `Channel`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from msgspec import Raw

from .._protocol.codes import CALLER_WORKER_ID_KEY, CHANNELS_CREATE
from .._protocol.frames import StreamChannelRef, as_channel_ref
from .channel_plane import ChannelError, ChannelPlane
from .channel_reader import ChannelReader
from .channel_writer import ChannelWriter

__all__ = ["Channel", "RefResolver", "channel_resolver", "create_channel", "resolve_refs"]

RefResolver = Callable[[Raw, Any], Any]
"""`resolve(raw, value)`: `value` (decoded from `raw`) with its channel refs made live."""

_REF_MARK: Final = re.compile(rb'"access_key"')
"""Every ref has this key. Looked for in the raw bytes first (no copy, C speed), so payloads
without refs, nearly all of them, are never walked. (A key spelled with JSON escapes would
slip past; no engine or SDK writes one.)"""


@dataclass(frozen=True, slots=True)
class Channel:
    """A new data channel: what `worker.create_channel()` returns.

    Keep one end and hand the other on (put it in a call's payload, where it travels as
    its ref), or use both ends in this worker. `writer_ref` / `reader_ref` are the refs
    themselves, as the official SDKs' `Channel` has them.
    """

    writer: ChannelWriter
    reader: ChannelReader

    @property
    def writer_ref(self) -> StreamChannelRef:
        """The writer's ref (direction `write`)."""
        return self.writer.ref

    @property
    def reader_ref(self) -> StreamChannelRef:
        """The reader's ref (direction `read`)."""
        return self.reader.ref


def endpoint(ref: StreamChannelRef, plane: ChannelPlane) -> ChannelReader | ChannelWriter:
    """The live end `ref` names."""
    if ref.direction == "read":
        return ChannelReader(ref, plane)
    return ChannelWriter(ref, plane)


def resolve_refs(value: Any, plane: ChannelPlane) -> Any:
    """`value` (decoded JSON) with every channel ref in it replaced by its live end.

    Containers are changed in place (a handler's payload is decoded afresh for each
    invocation). Iterative, so nesting as deep as the decoder allows cannot overflow the
    stack.
    """
    ref = as_channel_ref(_without_caller(value))
    if ref is not None:
        return endpoint(ref, plane)
    pending: list[Any] = [value] if type(value) in (dict, list) else []
    while pending:
        container = pending.pop()
        entries = container.items() if type(container) is dict else enumerate(container)
        for key, child in entries:
            kind = type(child)
            if kind is dict:
                ref = as_channel_ref(child)
                if ref is not None:
                    container[key] = endpoint(ref, plane)  # a value, never a key: safe
                    continue
                pending.append(child)
            elif kind is list:
                pending.append(child)
    return value


def _without_caller(value: Any) -> Any:
    """A payload that is a ref itself, less the `_caller_worker_id` the engine adds to every
    object payload of a worker's call (spec §15.8): without this, an end passed as the
    whole payload would arrive as a plain dict."""
    if type(value) is dict and len(value) == 4 and CALLER_WORKER_ID_KEY in value:
        return {key: item for key, item in value.items() if key != CALLER_WORKER_ID_KEY}
    return value


def channel_resolver(plane: ChannelPlane) -> RefResolver:
    """The resolver handlers' payloads go through on this worker."""

    def resolve(raw: Raw, value: Any) -> Any:
        if _REF_MARK.search(raw) is None:
            return value
        return resolve_refs(value, plane)

    return resolve


class _Caller(Protocol):
    async def trigger_async(self, request: Any) -> Any: ...


async def create_channel(
    caller: _Caller, plane: ChannelPlane, buffer_size: int | None = None
) -> Channel:
    """Ask the engine for a new channel (`engine::channels::create`) and return its ends.

    `buffer_size` is how many items the engine holds between the two ends (its default
    64, at most 1024); the writer waits while that many are unread. Raises ValueError for
    a size that is not a positive int, `InvocationError` if the engine refuses, and
    `ChannelError` if its answer is not two refs of one channel.
    """
    if buffer_size is not None and (type(buffer_size) is not int or buffer_size < 1):
        raise ValueError(f"buffer_size must be a positive int, not {buffer_size!r}")
    payload = {} if buffer_size is None else {"buffer_size": buffer_size}
    answer = await caller.trigger_async({"function_id": CHANNELS_CREATE, "payload": payload})
    writer = as_channel_ref(answer.get("writer")) if isinstance(answer, dict) else None
    reader = as_channel_ref(answer.get("reader")) if isinstance(answer, dict) else None
    if (
        writer is None
        or reader is None
        or writer.direction != "write"
        or reader.direction != "read"
        or writer.channel_id != reader.channel_id
    ):
        # (The answer itself is not quoted: it holds the channel's access key.)
        raise ChannelError(
            f"{CHANNELS_CREATE} did not answer a writer and a reader ref of one channel",
            channel_id=writer.channel_id if writer is not None else "",
        )
    return Channel(ChannelWriter(writer, plane), ChannelReader(reader, plane))
