"""What the three transports share: close bookkeeping, group-commit writes, receiving.

`TransportBase` implements the whole `Transport` contract except the wire itself, with
the bounds of the `TransportLimits` it is given. A concrete transport supplies seven hooks:

* `_frame_message(message)` turns one message into the chunks to write (frames already
  serialized, so the order of the chunks in the queue *is* the order on the wire);
* `_frame_ping(payload)` does the same for a keepalive ping;
* `_fail_frames(code, reason)` returns the chunks that fail the connection (a close frame),
  or none when that is no longer possible;
* `_write(batch)` writes a batch of chunks; any exception means the link is broken;
* `_read_more()` reads from the peer once, appending whole messages to `_messages` and
  calling `_record_close` when the link ends (it must not raise for link failures);
* `_close_handshake(code, reason)` does the polite part of closing;
* `_abort()` drops the link at once (idempotent, never blocks).

Why group commit: anyio's `send` costs a loop iteration or more per call, so writing each
frame separately caps throughput at one frame per wake-up. Instead the task that finds no
write in progress becomes the *flusher*: it writes its chunks, then whatever other tasks
queued meanwhile as one joined write, until the queue is empty. Queuing tasks never await
(unless the queue is over its high-water mark), and `send` needs neither a lock nor a
writer task. transport-measurements.md measured 3-4.25x the concurrent throughput of the
same stack writing frame by frame. Only `send_nowait`, which never writes, relies on a
writer task: its owner runs `run_writer`, which becomes the flusher whenever something is
queued and nobody is writing it (a `send` meanwhile flushes the queue as well).

Why the write is shielded and bounded: a frame cancelled half-way corrupts the stream for
every task sharing the connection (trio's `send_all` contract, h11's `send_failed`). The
flusher also owns chunks of other tasks that have already returned. So the flusher's
writes run in a shielded scope whose deadline is `write_timeout`; on timeout or error the
transport is marked broken, closed, and everything after raises `ConnectionClosed`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from types import TracebackType
from typing import NoReturn, Self

import anyio

from anyiii._errors import ConnectionClosed
from anyiii._transport.base import SendQueueFull, TransportLimits
from anyiii._transport.budget import SharedBudget
from anyiii._transport.wire import check_close_code, clip_reason, exit_close_code

__all__ = ["TransportBase", "logger"]

logger = logging.getLogger("anyiii.transport")


class TransportBase:
    """Shared implementation of the `Transport` contract; subclasses provide the wire."""

    def __init__(
        self,
        *,
        path: str,
        request_headers: Mapping[str, str],
        limits: TransportLimits,
    ) -> None:
        self._path = path
        self._request_headers = request_headers
        self._limits = limits
        self._close_timeout = limits.close_timeout
        self._write_timeout = limits.write_timeout
        self._high_water = limits.queue_high_water
        self._max_queue = limits.max_queue_bytes
        self._receive_burst = limits.receive_burst

        self._close_code: int | None = None
        self._close_reason: str | None = None
        # The link itself is unusable: no more writes, queued chunks are dropped.
        self._broken = False

        self._messages: deque[bytes] = deque()
        # Only one task at a time reads from the link; others wait for what it finds.
        # (A flag and an event: an uncontended anyio.Lock costs more than the read.)
        self._reading = False
        self._read_done: anyio.Event | None = None

        self._queue: list[bytes] = []
        self._queued = 0
        self._writing = 0  # bytes of queued chunks taken for the write under way
        # Shared with the server's other connections: queued and written bytes count in it.
        self._queue_budget = limits.queue_budget
        if self._queue_budget is not None:
            self._queue_budget.join(self)
        self._flushing = False
        self._write_scope: anyio.CancelScope | None = None
        self._drained: anyio.Event | None = None  # backpressure waiters
        self._idle: anyio.Event | None = None  # waiters for the flusher to finish
        self._wakeup: anyio.Event | None = None  # run_writer waiting for send_nowait
        self._served_in_a_row = 0

        self._close_started = False
        self._close_done: anyio.Event | None = None
        self._close_deadline = math.inf  # set by `aclose`: no write outlasts the close timeout

    # -- hooks ----------------------------------------------------------------------------

    def _frame_message(self, message: bytes) -> list[bytes]:
        raise NotImplementedError

    def _frame_ping(self, payload: bytes) -> list[bytes]:
        raise NotImplementedError

    def _fail_frames(self, code: int, reason: str) -> list[bytes]:
        """Chunks that fail the connection with `code` (a close frame), if still possible."""
        raise NotImplementedError

    async def _write(self, batch: list[bytes]) -> None:
        raise NotImplementedError

    async def _read_more(self) -> None:
        raise NotImplementedError

    async def _close_handshake(self, code: int, reason: str) -> None:
        raise NotImplementedError

    async def _abort(self) -> None:
        raise NotImplementedError

    # -- properties -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._close_code is not None

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    @property
    def path(self) -> str:
        return self._path

    @property
    def request_headers(self) -> Mapping[str, str]:
        return self._request_headers

    @property
    def remote_address(self) -> str | None:
        return None

    # -- close bookkeeping ----------------------------------------------------------------

    def _record_close(self, code: int, reason: str) -> None:
        """Remember what ended the link; the first event to end it wins."""
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason
            self._wake_waiters()

    def _break(self, code: int, reason: str) -> None:
        """Mark the link unusable: drop queued chunks and stop any write in progress."""
        self._record_close(code, reason)
        if not self._broken:
            self._broken = True
            self._drop_queue()
            if self._queue_budget is not None:
                self._queue_budget.leave(self)  # nothing is queued from now on
            if self._write_scope is not None:
                self._write_scope.cancel()
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None:
            drained.set()
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.set()

    def _closed_error(self) -> ConnectionClosed:
        # A fresh exception per call: re-raising one instance would pile up tracebacks.
        return ConnectionClosed(
            1006 if self._close_code is None else self._close_code, self._close_reason or ""
        )

    # -- the server's shared budgets (`budget.SharedBudget`) ------------------------------

    @property
    def peer_host(self) -> str | None:
        """The peer's address without its port, if the link has one."""
        return None

    def share_of(self, budget: SharedBudget) -> int:
        """Bytes this connection holds of what `budget` counts: here, queued or being
        written (a transport that reads into buffers adds its own budget)."""
        return self._queued + self._writing if budget is self._queue_budget else 0

    def give_way(self, budget: SharedBudget) -> None:
        """Chosen as the offender of the server's queue budget: drop everything queued or
        being written, end the connection (1008) and wake whoever reads it."""
        self._break(1008, budget.reason)
        self._written()
        self._interrupt_read()

    def _interrupt_read(self) -> None:
        """Make a read waiting on the peer return now (from outside the task reading), so
        the connection's owner sees it closed even if the peer stays silent."""

    # -- sending --------------------------------------------------------------------------

    async def send(self, message: bytes, *, deadline: float = math.inf) -> None:
        if self._close_code is not None:
            raise self._closed_error()
        await self._submit(self._frame_message(message), deadline)

    def send_nowait(self, message: bytes) -> None:
        if self._close_code is not None:
            raise self._closed_error()
        if self._queued + len(message) > self._max_queue:
            self._give_up_sending(SendQueueFull(self._queued + len(message), self._max_queue))
        self._enqueue(self._frame_message(message))
        self._wake_writer()

    def offer(self, message: bytes) -> bool:
        if self._close_code is not None:
            raise self._closed_error()
        if self._queued + len(message) > self._high_water:
            return False
        self._enqueue(self._frame_message(message))
        self._wake_writer()
        return True

    def _wake_writer(self) -> None:
        """`run_writer` has something to write, unless a flush under way takes it."""
        if not self._flushing:
            wakeup, self._wakeup = self._wakeup, None
            if wakeup is not None:
                wakeup.set()

    async def run_writer(self) -> None:
        while not self._broken:
            if self._queue and not self._flushing:
                try:
                    await self._flush([])
                except ConnectionClosed:
                    return
                continue
            if self._close_code is not None:
                return
            wakeup = self._wakeup = anyio.Event()
            await wakeup.wait()

    async def _submit(self, chunks: list[bytes], deadline: float = math.inf) -> None:
        """Write `chunks` now (becoming the flusher) or queue them behind the flusher; a
        wait for room that outlasts `deadline` raises TimeoutError (the chunks stay queued)."""
        if not self._flushing:
            await self._flush(chunks, coalesce=True)
            return
        self._enqueue(chunks)
        while self._queued > self._high_water:
            if self._broken:
                raise self._closed_error()
            drained = self._drained
            if drained is None:
                drained = self._drained = anyio.Event()
            if deadline == math.inf:
                await drained.wait()
                continue
            with anyio.CancelScope(deadline=deadline) as scope:
                await drained.wait()
            if scope.cancelled_caught:
                raise TimeoutError("the send queue did not drain before the deadline")

    def _enqueue(self, chunks: list[bytes]) -> None:
        """Queue `chunks` for the writer, counting them against the queue budget; if that
        makes this connection the one to give way, drop its queue and raise SendQueueFull."""
        added = 0
        for chunk in chunks:
            added += len(chunk)
        self._queue += chunks
        self._queued += added
        budget = self._queue_budget
        if budget is not None:
            budget.used += added
            if budget.used > budget.total:
                self._over_queue_budget(budget)

    def _over_queue_budget(self, budget: SharedBudget) -> None:
        """The queue budget is past its total: relieve it, and if this connection is the
        offender, give up sending (SendQueueFull)."""
        if not budget.relieve(self):
            self._give_up_sending(
                SendQueueFull(self._queued + self._writing, budget.total, budget.reason)
            )

    def _give_up_sending(self, exc: SendQueueFull) -> NoReturn:
        """Stop sending to a peer that does not keep up: drop what is queued, take nothing
        more, raise `exc`. A write already on the wire may finish, so that closing
        (`aclose(1008, ...)`) can still tell the peer why instead of cutting a frame in half."""
        self._drop_queue()
        self._record_close(exc.code, exc.reason)
        raise exc

    def _drop_queue(self) -> None:
        """Forget the queued chunks (the link is over for sending)."""
        budget = self._queue_budget
        if budget is not None:
            budget.used -= self._queued
        self._queue = []
        self._queued = 0

    def _written(self) -> None:
        """The chunks taken for the write under way are written (or given up)."""
        budget = self._queue_budget
        if budget is not None:
            budget.used -= self._writing
        self._writing = 0

    def _take_queue(self) -> list[bytes]:
        self._writing += self._queued
        batch, self._queue, self._queued = self._queue, [], 0
        drained, self._drained = self._drained, None
        if drained is not None:
            drained.set()
        return batch

    async def _flush(self, chunks: list[bytes], *, coalesce: bool = False) -> None:
        """Write `chunks` after anything queued, then keep writing until the queue is empty.

        `coalesce`: a sender's own flush first yields once (shielded), so that the messages
        of every task made ready in the same turn of the event loop (a burst of answers
        wakes many callers, each sending its next call) leave in this write instead of the
        first sender's message alone and the rest in a second write. Fewer, larger writes
        mean fewer reads for the peer: the engine's CPU per routed call depends on it.
        Callers check that the link is not broken first.
        """
        if coalesce:
            self._enqueue(chunks)
        self._flushing = True
        failure: BaseException | None = None
        if coalesce:
            batch: list[bytes] | None = None
        else:
            batch = self._take_queue() + chunks if self._queue else chunks
        write_timeout, closing_by = self._write_timeout, self._close_deadline
        deadline = min(anyio.current_time() + write_timeout, closing_by)
        try:
            with anyio.CancelScope(shield=True, deadline=deadline) as scope:
                self._write_scope = scope
                if batch is None:
                    await anyio.lowlevel.checkpoint()  # the others of this turn queue theirs
                    batch = self._take_queue()
                while True:
                    try:
                        await self._write(batch)
                    except Exception as exc:
                        failure = exc
                        break
                    self._written()
                    if not self._queue or self._broken:
                        break
                    batch = self._take_queue()
                    scope.deadline = min(anyio.current_time() + write_timeout, closing_by)
        finally:
            self._written()
            self._write_scope = None
            self._flushing = False
            idle, self._idle = self._idle, None
            if idle is not None:
                idle.set()
        if scope.cancelled_caught and failure is None and not self._broken:
            failure = TimeoutError(f"write did not finish within {self._write_timeout} s")
        if failure is not None:
            self._break(1006, f"write failed: {failure!r}")
        if self._broken:
            with anyio.CancelScope(shield=True):
                await self._abort()
            raise self._closed_error() from failure

    async def _wait_idle(self) -> None:
        """Wait until no write is in progress."""
        while self._flushing:
            idle = self._idle
            if idle is None:
                idle = self._idle = anyio.Event()
            await idle.wait()

    async def _drain(self) -> None:
        """Write everything queued so far (used before a close frame and by `aclose`)."""
        await self._wait_idle()
        if self._queue and not self._broken:
            await self._flush([])

    # -- receiving ------------------------------------------------------------------------

    async def receive(self) -> bytes:
        return (await self._take(1))[0]

    async def receive_some(self) -> list[bytes]:
        return await self._take(self._receive_burst)

    async def _take(self, most: int) -> list[bytes]:
        """Up to `most` received messages (at least one), reading when none are buffered.

        After `receive_burst` messages handed out in a row it yields once first, so the
        writer flushes what they produced before the reader goes on (a read does not always
        yield either, so the count spans reads and calls).
        """
        while True:
            messages = self._messages
            if messages:
                room = self._receive_burst - self._served_in_a_row
                if room <= 0:
                    self._served_in_a_row = 0
                    await anyio.lowlevel.checkpoint()
                    continue
                if room > most:
                    room = most
                if len(messages) <= room:
                    batch = list(messages)
                    messages.clear()
                else:
                    batch = [messages.popleft() for _ in range(room)]
                self._served_in_a_row += len(batch)
                return batch
            if self._close_code is not None:
                raise self._closed_error()
            await self._read_turn()

    async def _read_turn(self) -> None:
        """Read from the link once, or wait until the task that is reading has done so."""
        if self._reading:
            done = self._read_done
            if done is None:
                done = self._read_done = anyio.Event()
            await done.wait()
            return
        self._reading = True
        try:
            await self._read_more()
        finally:
            self._reading = False
            done, self._read_done = self._read_done, None
            if done is not None:
                done.set()

    # -- closing --------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        check_close_code(code)
        reason = clip_reason(reason)
        if self._close_started:
            # Another call is closing (or has closed): wait for it, as boundedly as it runs.
            done = self._close_done
            if done is not None:
                with anyio.move_on_after(self._close_timeout, shield=True):
                    await done.wait()
            return
        self._close_started = True
        done = self._close_done = anyio.Event()
        # A shielded write of the handshake (a close frame behind a peer that stopped
        # reading) would otherwise wait out `write_timeout`, not the close timeout.
        self._close_deadline = anyio.current_time() + self._close_timeout
        try:
            # If the link fails while closing, dropping it (below) is all that is left to do.
            with anyio.move_on_after(self._close_timeout, shield=True), suppress(ConnectionClosed):
                await self._close_handshake(code, reason)
        finally:
            self._record_close(code, reason)
            self._break(self._close_code or code, self._close_reason or reason)
            with anyio.CancelScope(shield=True):
                await self._abort()
            self._messages.clear()
            done.set()

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection from our side (keepalive timeout): tell the peer, then drop."""
        usable = not self._broken and self._close_code is None
        chunks = self._fail_frames(code, reason) if usable else []
        self._record_close(code, reason)
        with anyio.move_on_after(self._close_timeout, shield=True), suppress(ConnectionClosed):
            if chunks:
                await self._submit(chunks)
            await self._wait_idle()
        self._break(code, reason)
        with anyio.CancelScope(shield=True):
            await self._abort()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(*exit_close_code(exc))
