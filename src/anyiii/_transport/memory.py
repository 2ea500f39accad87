"""Two transports joined back to back by anyio memory object streams, for socket-free tests.

The pair keeps the whole `Transport` contract (group-commit writes, backpressure,
`send_nowait`/`run_writer`, message cap, close codes), so the worker runtime and the
embedded engine can be tested against each other without a socket. There are no control
frames, so there is no keepalive; a close is a shared record of the code and reason plus
closed streams.
"""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from anyiii._transport.base import Transport, TransportLimits
from anyiii._transport.common import TransportBase

__all__ = ["MemoryTransport", "memory_transport_pair"]


class _Link:
    """What both ends know about how the pair was closed: the first close wins."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.reason = ""

    def record(self, code: int, reason: str) -> None:
        if self.code is None:
            self.code, self.reason = code, reason


class MemoryTransport(TransportBase):
    """One end of `memory_transport_pair`."""

    def __init__(
        self,
        send_stream: MemoryObjectSendStream[bytes],
        receive_stream: MemoryObjectReceiveStream[bytes],
        link: _Link,
        *,
        limits: TransportLimits,
    ) -> None:
        super().__init__(path="/", request_headers={}, limits=limits)
        self._send_stream = send_stream
        self._receive_stream = receive_stream
        self._link = link
        self._max_message_size = limits.max_message_size

    def _frame_message(self, message: bytes) -> list[bytes]:
        return [message]

    def _frame_ping(self, payload: bytes) -> list[bytes]:
        raise NotImplementedError("memory transports have no keepalive")

    def _fail_frames(self, code: int, reason: str) -> list[bytes]:
        self._link.record(code, reason)
        return []

    def _record_close(self, code: int, reason: str) -> None:
        self._link.record(code, reason)
        super()._record_close(code, reason)

    def _peer_closed(self) -> None:
        code = self._link.code
        self._break(1006 if code is None else code, self._link.reason)

    async def _write(self, batch: list[bytes]) -> None:
        send_stream = self._send_stream
        for message in batch:
            try:
                try:
                    send_stream.send_nowait(message)
                except anyio.WouldBlock:
                    await send_stream.send(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._peer_closed()
                raise

    async def _read_more(self) -> None:
        try:
            message = await self._receive_stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._peer_closed()
            return
        if len(message) > self._max_message_size:
            # What a WebSocket peer does with an oversized message: fail with 1009.
            self._break(1009, f"message of {len(message)} bytes exceeds {self._max_message_size}")
            await self._abort()
            return
        self._messages.append(message)

    async def _close_handshake(self, code: int, reason: str) -> None:
        # Messages sent before the close must still reach the peer, as on a socket.
        self._record_close(code, reason)
        await self._drain()

    async def _abort(self) -> None:
        # Closing our receiving end fails the peer's sends; closing our sending end ends
        # the peer's receive once it has read what is buffered.
        self._send_stream.close()
        self._receive_stream.close()


def memory_transport_pair(
    max_buffer: int = 1024,
    *,
    limits: TransportLimits | None = None,
) -> tuple[Transport, Transport]:
    """Two connected transports; each direction buffers up to `max_buffer` messages.

    Both ends enforce `limits` (None: the defaults); a message above its
    `max_message_size` fails the pair with 1009, as on a socket.

    Both must be closed (`aclose` or `async with`); anyio warns about memory streams that
    are garbage-collected open. Closing one makes the other's `receive` raise
    `ConnectionClosed` with the same code and reason, once it has read what was sent
    before the close.
    """
    a_to_b_send, a_to_b_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    b_to_a_send, b_to_a_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    link = _Link()
    chosen = limits or TransportLimits()

    def end(
        send_stream: MemoryObjectSendStream[bytes], receive_stream: MemoryObjectReceiveStream[bytes]
    ) -> MemoryTransport:
        return MemoryTransport(send_stream, receive_stream, link, limits=chosen)

    return end(a_to_b_send, b_to_a_receive), end(b_to_a_send, a_to_b_receive)
