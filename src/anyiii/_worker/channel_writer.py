"""`ChannelWriter`: the writing end of a data channel, as an anyio byte stream (spec §12).

Data goes out as binary frames of at most 64 KiB (as the official SDKs cut it), messages as
text frames; the engine hands both to the reader in the order they were sent. Ending the
stream (`send_eof()`, `aclose()`, leaving `async with` normally) closes the socket with a
normal closure, after which the reader gets everything sent and then its end of stream.

Sends wait while the engine does not read, which it does not while the channel's bounded
buffer is full: a writer goes no faster than its reader, and nothing piles up in memory.
Ending the stream waits the same way (the close frame queues behind the unread data).
No time limit applies to either: a slow reader is not an error; the caller's cancel scope
bounds them.

Cancellation: a send cancelled before it has written everything leaves the reader with
part of it, so the writer is *broken*: its socket is dropped at once (without a close
frame, which the engine takes as a failed stream, not a complete one) and every later
use raises `ChannelError` saying why. Leaving `async with` with an exception does the
same, so a reader never mistakes an abandoned stream for a finished one.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from types import TracebackType
from typing import Any, NoReturn

import anyio
import anyio.abc
import anyio.lowlevel

from .._errors import ConnectionClosed
from .._protocol.codes import CHANNEL_CHUNK_SIZE
from .._protocol.frames import StreamChannelRef, encode_value
from .._transport import BinaryMessage
from .._transport.websocket import WebSocketTransport
from .channel_plane import ChannelEnd, ChannelError, ChannelPlane

__all__ = ["ChannelWriter"]


class _State(Enum):
    NEW = "new"
    OPEN = "open"
    BROKEN = "broken"
    CLOSED = "closed"


class ChannelWriter(ChannelEnd, anyio.abc.ByteSendStream):
    """The writing end of a data channel: an anyio byte stream, plus messages
    (docs/channels.md).

    `send()` writes data (in frames of at most 64 KiB), `send_message()` a message;
    `send_eof()` / `aclose()` / leaving `async with` normally ends the stream. A send waits
    while the reader is behind. A send cancelled part-way, or an exception out of
    `async with`, breaks the writer and fails the stream for the reader.

    The worker makes writers (do not construct one): from a ref found in a handler's
    payload, or by `worker.create_channel()`. A writer connects on first use, not before,
    so one that is only passed on (put in a call's payload) never connects here. One send
    runs at a time; concurrent ones wait their turn, so the chunks of two sends never mix.
    """

    _direction = "write"

    def __init__(self, ref: StreamChannelRef, plane: ChannelPlane) -> None:
        super().__init__(ref, plane)
        self._state = _State.NEW
        self._transport: WebSocketTransport | None = None
        self._failure: ChannelError | None = None
        self._lock = anyio.Lock()

    # --- what it is ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once it opened (or tried to open) its socket."""
        return self._state is not _State.NEW or self._lock.locked()

    @property
    def broken(self) -> bool:
        """True once a failure or a cancelled send made it unusable."""
        return self._state is _State.BROKEN

    def __repr__(self) -> str:
        return f"ChannelWriter({self.channel_id!r}, {self._state.value})"

    # --- writing --------------------------------------------------------------------------------

    async def send(self, item: bytes) -> None:
        """Send `item` (any bytes-like object) as data, in frames of at most 64 KiB.

        Returns once all of it is written to the socket; waits while the reader is behind.
        Raises `ChannelError` if the channel failed, `anyio.ClosedResourceError` after
        the stream was ended."""
        view = memoryview(item)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        size = len(view)
        if not size:  # nothing to send, and no reason to connect
            await anyio.lowlevel.checkpoint()
            if self._state is _State.CLOSED:
                raise anyio.ClosedResourceError
            if self._state is _State.BROKEN:
                self._raise_broken()
            return
        frames = (
            BinaryMessage(view[start : start + CHANNEL_CHUNK_SIZE])
            for start in range(0, size, CHANNEL_CHUNK_SIZE)
        )
        async with self._lock:
            await self._push(await self._ready(), frames)

    async def send_message(self, message: Any) -> None:
        """Send one message (a text frame): a `str` as it is, anything else as JSON."""
        if isinstance(message, str):
            payload = message.encode()
        elif isinstance(message, bytes | bytearray | memoryview):
            raise TypeError("a message is a str or a JSON value; send bytes with send()")
        else:
            payload = encode_value(message)
        async with self._lock:
            await self._push(await self._ready(), (payload,))

    # --- ending -----------------------------------------------------------------------------------

    async def send_eof(self) -> None:
        """End the stream: the reader gets everything sent, then its end of stream.

        A writer never used connects first, so its reader sees an empty stream end. Like a
        send, it waits while the reader is behind: it returns once the engine has taken
        everything, the end included (the engine's half of the closing handshake), so
        nothing is lost when the socket goes. Cancelled, it drops the socket (the stream
        then fails). Raises `ChannelError` if the writer is broken. Idempotent."""
        async with self._lock:
            if self._state is _State.CLOSED:
                return
            try:
                transport = await self._ready()
            finally:
                if self._state is not _State.OPEN:  # broken or cancelled: nothing to end
                    self._state = _State.CLOSED
            self._state = _State.CLOSED  # the socket stays reachable for `aclose` to cut
            try:
                await self._finish(transport)
            finally:
                self._transport = None

    async def _finish(self, transport: WebSocketTransport) -> None:
        """Close with a normal closure and wait for the engine's echo, as long as the data
        ahead of the close takes to be read: the transport waits shielded (and, for a
        writer, without a time limit), so a cancellation is turned into an abort here."""
        closed = anyio.Event()

        async def close() -> None:
            await transport.aclose(1000, "")
            closed.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(close)
            try:
                await closed.wait()
            except anyio.get_cancelled_exc_class():
                transport.abort("ending the stream was cancelled")
                raise

    async def aclose(self) -> None:
        """End the stream as `send_eof()` does, or, if the writer is broken, just release
        its socket. Called while another task sends, it drops the socket at once instead
        (that send raises `anyio.ClosedResourceError`, the reader sees a failed stream)."""
        if self._state is _State.CLOSED:
            await anyio.lowlevel.checkpoint()
            return
        if self._state is _State.BROKEN or self._lock.locked():
            await self._abandon("the writer was closed while it was in use")
            return
        await self.send_eof()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """A normal exit ends the stream; an exception (cancellation too) drops the socket,
        so the reader sees a failed stream rather than a short complete one."""
        if exc_val is None:
            await self.aclose()
        else:
            await self._abandon(f"the writer's block raised {type(exc_val).__name__}")

    # --- inside -------------------------------------------------------------------------------

    async def _ready(self) -> WebSocketTransport:
        """The open socket (connecting first if the writer is new); raises if it cannot be
        used. The caller holds the lock."""
        state = self._state
        if state is _State.OPEN:
            assert self._transport is not None
            return self._transport
        if state is _State.CLOSED:
            raise anyio.ClosedResourceError
        if state is _State.BROKEN:
            self._raise_broken()
        try:
            transport = await self._plane.connect(self._ref)
        except ChannelError as exc:
            self._break(exc)
            raise
        except BaseException:
            self._break(
                ChannelError(
                    f"opening the writer of channel {self.channel_id} was cancelled; its "
                    "end may be taken, so it is not opened again",
                    channel_id=self.channel_id,
                )
            )
            raise
        if self._state is not _State.NEW:  # closed by another task meanwhile
            await transport.aclose()
            raise anyio.ClosedResourceError
        self._state, self._transport = _State.OPEN, transport
        return transport

    async def _push(self, transport: WebSocketTransport, frames: Iterable[bytes]) -> None:
        """Write `frames` in order. Meanwhile this task reads the socket, because the only
        thing the engine sends a writer is its close (an end already taken, a reader gone),
        and a send must stop at once when that comes, or when the caller is cancelled: the
        write in flight is shielded inside the transport, so only another task can cut it
        short. Anything short of all frames written breaks the writer."""
        done = finished = cancelled = False

        async def write_all(watch: anyio.CancelScope) -> None:
            nonlocal done, finished
            try:
                for frame in frames:
                    await transport.send(frame)
            except ConnectionClosed:
                pass
            else:
                done = True
            finished = True
            watch.cancel()

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(write_all, tasks.cancel_scope)
                try:
                    while True:
                        await transport.receive()  # nothing but a close is expected here
                except ConnectionClosed:
                    transport.abort("the engine closed the writer's socket")
                except anyio.get_cancelled_exc_class():
                    if not finished:  # cancelled from outside, mid-send
                        cancelled = True
                        transport.abort("a send was cancelled part-way")
                    raise
        finally:
            if not done:
                self._break(self._failure_of(transport, cancelled))
                with anyio.CancelScope(shield=True):
                    await transport.aclose()
        if not done:
            self._raise_broken()

    def _failure_of(self, transport: WebSocketTransport, cancelled: bool) -> ChannelError:
        code, reason = transport.close_code, transport.close_reason or ""
        if cancelled:
            why = "a send was cancelled part-way, so the reader may have got only part of it"
        elif code == 1006:
            why = "the connection to the engine was lost" + (f" ({reason})" if reason else "")
        else:
            why = f"the engine closed its socket (code {code}{': ' + reason if reason else ''})"
        return ChannelError(
            f"the writer of channel {self.channel_id} is broken: {why}",
            channel_id=self.channel_id,
            code=code,
        )

    def _break(self, failure: ChannelError) -> None:
        if self._state is not _State.CLOSED:
            self._state, self._failure = _State.BROKEN, failure
        self._transport = None

    def _raise_broken(self) -> NoReturn:
        if self._state is _State.CLOSED:
            raise anyio.ClosedResourceError
        failure = self._failure
        assert failure is not None
        raise ChannelError(str(failure), channel_id=self.channel_id, code=failure.code)

    async def _abandon(self, why: str) -> None:
        """Stop without ending the stream: drop the socket if there is one (also one that
        another task is sending on or ending the stream on: that task releases it)."""
        self._state = _State.CLOSED
        transport = self._transport
        if transport is None:
            await anyio.lowlevel.checkpoint()
            return
        transport.abort(why)
        if not self._lock.locked():
            self._transport = None
            await transport.aclose()
