"""`ChannelReader`: the reading end of a data channel, as an anyio byte stream (spec §12).

The engine forwards a channel's items in the order they were written: binary frames are
data, text frames are messages; then it closes the socket (1000, or no status code from
the Rust engine) once the writer has ended the stream, or with an error code when the
stream failed.

The one rule for reading both kinds: every item is handed out once, in order.

* `receive_item()` / `items()` hand out both kinds in arrival order: `bytes` for data,
  `str` for a message.
* The byte-stream view (`receive()`, `async for chunk in reader`, `read_all()`) hands out
  data only. A message it passes on the way is kept, in order, for `take_messages()`. At
  most `max_messages` are kept: a data read that meets one more raises
  `ChannelMessagesFull` *before* taking it, so nothing is lost, and reading goes on once
  `take_messages()` has made room. (`read_all()` keeps every message: it keeps every
  byte anyway.)

Memory stays bounded: the socket is read only when the reader wants the next item, so a
slow reader holds back the engine and, through the engine's bounded buffer, the writer.
What is in memory at once is one read from the socket (64 KiB), one partial item, and the
kept messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from enum import Enum
from typing import NoReturn

import anyio
import anyio.abc
import anyio.lowlevel

from .._errors import AnyiiiError, ConnectionClosed
from .._protocol.frames import StreamChannelRef
from .._transport import BinaryMessage
from .._transport.websocket import WebSocketTransport
from .channel_plane import ChannelEnd, ChannelError, ChannelPlane

__all__ = ["ChannelMessagesFull", "ChannelReader"]

_ENDED_CLEANLY = (1000, 1005)
"""Close codes that end a stream: normal closure, and none at all (the Rust engine)."""


class ChannelMessagesFull(AnyiiiError):
    """A data read met a message while `max_messages` earlier ones were waiting in
    `ChannelReader.take_messages()`. Nothing was lost: the message stays next in line, and
    the read works again once the kept messages are taken (or read with `items()`)."""


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    ENDED = "ended"
    FAILED = "failed"
    CLOSED = "closed"


class ChannelReader(ChannelEnd, anyio.abc.ByteReceiveStream):
    """The reading end of a data channel: an anyio byte stream of its data, plus its
    messages (docs/channels.md).

    Every item is handed out once, in order: `receive_item()` / `items()` give data
    (`bytes`) and messages (`str`) as they came; the byte-stream view (`receive()`,
    `async for`, `read_all()`) gives data only and keeps the messages it passes for
    `take_messages()` (at most `max_messages`; one more raises `ChannelMessagesFull`
    before it is taken).

    The worker makes readers (do not construct one): from a ref found in a handler's
    payload, or by `worker.create_channel()`. A reader connects on first use, not before,
    so one that is only passed on (put in a call's payload) never connects here. Use it
    as an async context manager, or call `aclose()`: closing before the end tells the
    engine the reader is gone (the writer's next send then fails).
    """

    _direction = "read"

    def __init__(
        self, ref: StreamChannelRef, plane: ChannelPlane, *, max_messages: int = 256
    ) -> None:
        super().__init__(ref, plane)
        self.max_messages = max_messages
        """How many messages data reads keep for `take_messages()` (see the module)."""
        self._state = _State.NEW
        self._transport: WebSocketTransport | None = None
        self._failure: ChannelError | None = None
        self._rest: memoryview | None = None  # the part of a data item not yet handed out
        self._held: str | None = None  # a message that found the kept ones full: next in line
        self._messages: deque[str] = deque()
        self._guard = anyio.ResourceGuard("reading from")

    # --- what it is ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once it opened its socket (whether or not the stream has ended since)."""
        return self._state is not _State.NEW or self._transport is not None

    def __repr__(self) -> str:
        return f"ChannelReader({self.channel_id!r}, {self._state.value})"

    # --- reading --------------------------------------------------------------------------------

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next data, at most `max_bytes` of it; raises `anyio.EndOfStream` after the
        last. Messages on the way are kept for `take_messages()`."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        with self._guard:
            while True:
                if self._rest is not None:
                    return self._take_rest(max_bytes)
                self._keep_held()
                item = await self._next_item()
                if type(item) is str:
                    self._keep(item, bounded=True)
                    continue
                assert isinstance(item, bytes)
                if len(item) <= max_bytes:
                    return item
                self._rest = memoryview(item)

    async def receive_item(self) -> bytes | str:
        """The next item, data (`bytes`) or a message (`str`), in arrival order; raises
        `anyio.EndOfStream` after the last."""
        with self._guard:
            if self._rest is not None:
                return self._take_rest(len(self._rest))
            if self._held is not None:
                held, self._held = self._held, None
                return held
            return await self._next_item()

    async def items(self) -> AsyncIterator[bytes | str]:
        """Every item left, data (`bytes`) and messages (`str`), in arrival order."""
        while True:
            try:
                item = await self.receive_item()
            except anyio.EndOfStream:
                return
            yield item

    async def read_all(self, *, limit: int | None = None) -> bytes:
        """All the data left, joined; messages on the way are kept for `take_messages()`
        (all of them). Raises `ChannelError` if the data passes `limit` bytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                with self._guard:
                    if self._rest is not None:
                        chunk = self._take_rest(len(self._rest))
                    else:
                        self._keep_held(bounded=False)
                        item = await self._next_item()
                        if type(item) is str:
                            self._keep(item, bounded=False)
                            continue
                        assert isinstance(item, bytes)
                        chunk = item
            except anyio.EndOfStream:
                return b"".join(chunks)
            size += len(chunk)
            if limit is not None and size > limit:
                raise ChannelError(
                    f"channel {self.channel_id} holds more than {limit} bytes",
                    channel_id=self.channel_id,
                )
            chunks.append(chunk)

    def take_messages(self) -> list[str]:
        """The messages data reads passed (in order), removed from the reader."""
        taken = list(self._messages)
        self._messages.clear()
        return taken

    # --- closing --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Release the socket. Before the end of the stream, this tells the engine the
        reader is gone (the writer's sends then fail); later reads raise
        `anyio.ClosedResourceError`."""
        state, self._state = self._state, _State.CLOSED
        transport, self._transport = self._transport, None
        self._rest = None
        if transport is None:
            await anyio.lowlevel.checkpoint()
            return
        if state is not _State.ENDED:
            transport.abort("the reader closed before the end of the stream")
        await transport.aclose()

    # --- inside -------------------------------------------------------------------------------

    def _take_rest(self, most: int) -> bytes:
        rest = self._rest
        assert rest is not None
        chunk = bytes(rest[:most])
        self._rest = rest[most:] if len(rest) > most else None
        return chunk

    def _keep_held(self, *, bounded: bool = True) -> None:
        if self._held is not None:
            self._keep(self._held, bounded=bounded)
            self._held = None

    def _keep(self, message: str, *, bounded: bool) -> None:
        """Keep a message a data read passed, or hold it as next in line when full."""
        if bounded and len(self._messages) >= self.max_messages:
            self._held = message
            raise ChannelMessagesFull(
                f"a data read of channel {self.channel_id} met a message while "
                f"{len(self._messages)} kept messages wait: take them with take_messages(), "
                "or read with items()"
            )
        self._messages.append(message)

    async def _next_item(self) -> bytes | str:
        """The next non-empty item from the socket, opening it first if needed."""
        transport = self._transport
        if transport is None:
            transport = await self._open()
        while True:
            try:
                message = await transport.receive()
            except ConnectionClosed as closed:
                await self._ended(transport, closed)
            if type(message) is BinaryMessage:
                if message:  # an empty data item carries nothing (anyio never hands out b"")
                    return bytes(message)
                continue
            return message.decode(errors="replace")

    async def _open(self) -> WebSocketTransport:
        self._usable()
        try:
            transport = await self._plane.connect(self._ref)
        except ChannelError as exc:
            self._fail(exc)
            raise
        except BaseException:
            # Cancelled mid-handshake: the engine may already have handed this end out.
            self._fail(
                ChannelError(
                    f"opening the reader of channel {self.channel_id} was cancelled; its "
                    "end may be taken, so it is not opened again",
                    channel_id=self.channel_id,
                )
            )
            raise
        if self._state is _State.CLOSED:  # closed by another task meanwhile
            await transport.aclose()
            raise anyio.ClosedResourceError
        self._transport, self._state = transport, _State.OPEN
        return transport

    def _usable(self) -> None:
        """Raise what a read must raise when the reader is no longer open."""
        state = self._state
        if state is _State.CLOSED:
            raise anyio.ClosedResourceError
        if state is _State.ENDED:
            raise anyio.EndOfStream
        if state is _State.FAILED:
            assert self._failure is not None
            raise ChannelError(str(self._failure), channel_id=self.channel_id) from self._failure

    def _fail(self, failure: ChannelError) -> None:
        if self._state is not _State.CLOSED:
            self._state, self._failure = _State.FAILED, failure

    async def _ended(self, transport: WebSocketTransport, closed: ConnectionClosed) -> NoReturn:
        """The socket closed: the end of the stream, or its failure. Always raises."""
        if self._state is _State.CLOSED:
            raise anyio.ClosedResourceError from None
        self._transport = None
        if closed.code in _ENDED_CLEANLY:
            self._state = _State.ENDED
            await transport.aclose()
            raise anyio.EndOfStream from None
        why = closed.reason or "the connection was lost"
        failure = ChannelError(
            f"channel {self.channel_id} failed: {why} (close code {closed.code})",
            channel_id=self.channel_id,
            code=closed.code,
        )
        self._fail(failure)
        transport.abort(why)
        await transport.aclose()
        raise failure from None
