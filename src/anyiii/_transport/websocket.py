"""The default transport: websockets' Sans-I/O protocol driven over anyio byte streams.

websockets' `ClientProtocol`/`ServerProtocol` do the framing, the handshake, masking (in
C), ping answers and the closing handshake state; this module only moves bytes between
them and an anyio stream, so the same code runs on asyncio and trio. It was the fastest
portable stack measured (transport-measurements.md §2-§3), combined with the group-commit
writes of `common.TransportBase`.

Settings that matter for the iii protocol:

* compression (permessage-deflate) is never offered nor accepted: it costs more CPU than
  it saves on small JSON frames (transport-measurements.md §4);
* incoming messages are capped at `TransportLimits.max_message_size` (64 MiB by default,
  the Rust engine's limit);
  a bigger one fails the connection with close code 1009;
* memory for messages still arriving is bounded (`inbound`): fragments are joined as they
  come, a message of too many tiny fragments is refused (1008), and a server's
  connections may share a `SharedBudget` for it (the offender is closed with 1009);
* a text message that is not UTF-8 is refused (1007), never handed up;
* outgoing messages above 16 MiB (the Rust engine's frame limit) are sent as 1 MiB
  fragments, like the official SDK;
* pings from the peer are answered (websockets queues the pong as it parses the ping;
  the transport flushes it); the client pings every `ping_interval` and fails the
  connection with 1011 when a pong is late. We never send unsolicited pongs: httpx-ws
  0.9 crashes on them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import (
    Mapping,
)
from contextlib import suppress

import anyio
import anyio.abc
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, Side, State
from websockets.protocol import Protocol as SansIOProtocol
from websockets.server import ServerProtocol

from anyiii._transport.base import BinaryMessage, TransportLimits
from anyiii._transport.budget import SharedBudget
from anyiii._transport.frame_reader import Handoff, IncomingFrames, apply_mask
from anyiii._transport.inbound import (
    INVALID_TEXT,
    TOO_MANY_FRAGMENTS,
    Reassembly,
    is_valid_text,
)
from anyiii._transport.pinging import PingingTransport
from anyiii._transport.wire import FRAGMENT_ABOVE, FRAGMENT_SIZE, RECEIVE_SIZE, format_address

__all__ = ["LINK_ERRORS", "WebSocketTransport"]


LINK_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class MaskSource:
    """Masking keys for a client's frames (RFC 6455 §5.3), drawn from the OS's random
    source a block at a time instead of one system call per frame.

    The keys stay unpredictable (they are `os.urandom` bytes); only the number of calls
    changes. Each transport has its own source, so no two threads share one.
    """

    __slots__ = ("_at", "_block")

    BLOCK = 1024
    """Bytes drawn per refill: 256 keys."""

    def __init__(self) -> None:
        self._block = b""
        self._at = 0

    def next_key(self) -> bytes:
        """Four fresh random bytes."""
        at = self._at
        if at + 4 > len(self._block):
            self._block, at = os.urandom(self.BLOCK), 0
        self._at = at + 4
        return self._block[at : at + 4]


def _text_frame(payload: bytes, masks: MaskSource | None) -> bytes:
    """One final, uncompressed text frame (RFC 6455 §5.2), built directly; binary for a
    `BinaryMessage`.

    This is what websockets' `send_text` produces for an open connection without
    extensions, at a fraction of its cost: a routed call crosses four frames, and the
    generic path was a large share of the engine's CPU per call. Clients mask their frames
    (§5.3); servers do not. Everything else (fragments, control frames, closing) still goes
    through the websockets protocol object.
    """
    length = len(payload)
    mask_bit = 0 if masks is None else 0x80
    first = 0x82 if type(payload) is BinaryMessage else 0x81
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    if masks is None:
        return header + payload
    mask = masks.next_key()
    return header + mask + apply_mask(payload, mask)


class WebSocketTransport(PingingTransport):
    """A `Transport` over one WebSocket connection whose handshake is done.

    Build one with `open_websocket` / `connect_websocket` (client) or receive one in a
    `serve_websockets` handler (server).
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        protocol: ClientProtocol | ServerProtocol,
        *,
        early_data: bytes = b"",
        path: str = "/",
        request_headers: Mapping[str, str] | None = None,
        limits: TransportLimits | None = None,
    ) -> None:
        super().__init__(
            path=path,
            request_headers={} if request_headers is None else request_headers,
            limits=limits or TransportLimits(),
        )
        self._stream = stream
        self._protocol: SansIOProtocol = protocol
        self._reassembly = Reassembly()
        self._budget = self._limits.unfinished_budget
        self._held = 0
        """Bytes of unfinished messages counted against `_budget` for this connection."""
        self._masks = MaskSource() if protocol.side is Side.CLIENT else None
        self._incoming = IncomingFrames(
            masked=protocol.side is Side.SERVER, max_size=self._limits.max_message_size
        )
        self._stream_done = False  # EOF was read, or the stream is closed
        self._aborted = False
        # Read now: a closed socket no longer knows its peer.
        address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
        self._remote_address = format_address(address)
        self._peer_host = str(address[0]) if isinstance(address, tuple) and address else None
        if self._budget is not None:
            self._budget.join(self)
        # Frames that arrived in the same read as the handshake (websockets saw only the
        # handshake itself, so its parser holds no part of them).
        if early_data:
            self._take_frames(early_data)
            # What websockets answers them with (a pong, the echo of a close) waits in the
            # send queue: the first write takes it, and a closing handshake writes it
            # before waiting for the peer (who may be waiting for that very echo).
            self._enqueue(self._protocol.data_to_send())

    # -- framing --------------------------------------------------------------------------

    def send_nowait(self, message: bytes) -> None:
        if not self._queue_small(message, self._max_queue):
            super().send_nowait(message)

    def offer(self, message: bytes) -> bool:
        return self._queue_small(message, self._high_water) or super().offer(message)

    def _queue_small(self, message: bytes, limit: int) -> bool:
        """Queue the common case, one small message on an open link with the queue staying
        at or under `limit`, without the generic path's list of chunks, and return True;
        anything else (closed, fragmented, over the limit) returns False and takes the
        generic path, which also raises its errors."""
        if (
            self._close_code is None
            and len(message) <= FRAGMENT_ABOVE
            and self._queued + len(message) <= limit
            and self._protocol.state is State.OPEN
        ):
            frame = _text_frame(message, self._masks)
            self._queue.append(frame)
            self._queued += len(frame)
            budget = self._queue_budget
            if budget is not None:
                budget.used += len(frame)
                if budget.used > budget.total:
                    self._over_queue_budget(budget)
            self._wake_writer()
            return True
        return False

    def _frame_message(self, message: bytes) -> list[bytes]:
        protocol = self._protocol
        if protocol.state is State.OPEN and len(message) <= FRAGMENT_ABOVE:
            return [_text_frame(message, self._masks)]
        try:
            send_first = (
                protocol.send_binary if type(message) is BinaryMessage else protocol.send_text
            )
            if len(message) <= FRAGMENT_ABOVE:
                send_first(message)
            else:
                view = memoryview(message)
                send_first(view[:FRAGMENT_SIZE], fin=False)
                for start in range(FRAGMENT_SIZE, len(view), FRAGMENT_SIZE):
                    end = start + FRAGMENT_SIZE
                    protocol.send_continuation(view[start:end], fin=end >= len(view))
        except InvalidState:
            # The protocol saw the close before we recorded it; it is closed either way.
            self._record_close(*self._protocol_close_info())
            raise self._closed_error() from None
        return protocol.data_to_send()

    def _frame_ping(self, payload: bytes) -> list[bytes]:
        self._protocol.send_ping(payload)
        return self._protocol.data_to_send()

    def _fail_frames(self, code: int, reason: str) -> list[bytes]:
        self._protocol.fail(code, reason)
        return self._protocol.data_to_send()

    def abort(self, reason: str = "aborted") -> None:
        """Give up on the link at once, without a closing handshake; never blocks.

        For a link with a single user that must stop now (a channel writer whose send was
        cancelled while TCP held its write back): the link is marked broken (close code
        1006), so the shielded write in progress, if any, is stopped where it is and its
        task drops the stream; the peer sees the connection fail, never a frame cut short
        and taken as whole. Every later call raises `ConnectionClosed`; `aclose` still
        releases the stream if no write did.
        """
        self._break(1006, reason)

    # -- the wire -------------------------------------------------------------------------

    async def _write(self, batch: list[bytes]) -> None:
        if len(batch) == 1 and batch[0]:
            await self._stream.send(batch[0])
            return
        # An empty chunk is websockets' SEND_EOF: half-close after what precedes it.
        pending: list[bytes] = []
        for chunk in batch:
            if chunk:
                pending.append(chunk)
                continue
            if pending:
                await self._stream.send(b"".join(pending))
                pending = []
            await self._send_eof()
        if pending:
            await self._stream.send(b"".join(pending))

    async def _send_eof(self) -> None:
        try:
            await self._stream.send_eof()
        except NotImplementedError:
            # TLS cannot half-close; closing is the only way to say "no more data".
            await self._abort()

    async def _read_more(self) -> None:
        protocol = self._protocol
        if self._stream_done:
            self._record_close(*self._protocol_close_info())
            return
        try:
            data = await self._stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            self._stream_done = True
            protocol.receive_data(self._incoming.leftover())
            protocol.receive_eof()
        except LINK_ERRORS as exc:
            self._stream_done = True
            self._break(1006, f"connection lost: {exc!r}")
            return
        else:
            self._take_frames(data)
            if self._budget is not None:
                self._claim_budget(self._budget)
        self._handle_events(protocol.events_received())
        # Pongs, the echo of the peer's close, or EOF after the closing handshake.
        replies = protocol.data_to_send()
        if replies and not self._broken:
            with suppress(Exception):  # a failed write breaks the link; receive() reports it
                await self._submit(replies)

    def _take_frames(self, data: bytes) -> None:
        """Whole messages go straight to the queue; other frames, in order, to websockets
        (which may close the connection, so the next frames wait until it has)."""
        protocol, incoming, messages = self._protocol, self._incoming, self._messages
        while True:
            for item in incoming.feed(data, open_=protocol.state is State.OPEN):
                if type(item) is Handoff:
                    protocol.receive_data(item)
                    self._handle_events(protocol.events_received())
                else:  # a whole message, text or binary
                    messages.append(item)
            if not incoming.more:
                return
            data = b""

    def _handle_events(self, events: list[Event]) -> None:
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            data = frame.data if type(frame.data) is bytes else bytes(frame.data)
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                binary = opcode is Opcode.BINARY
                if not frame.fin:
                    if not self._reassembly.start(data, binary=binary):
                        self._refuse(*TOO_MANY_FRAGMENTS)
                        break
                    continue
            elif opcode is Opcode.CONT:
                if not frame.fin:
                    if not self._reassembly.add(data):
                        self._refuse(*TOO_MANY_FRAGMENTS)
                        break
                    continue
                binary = self._reassembly.binary
                data = self._reassembly.finish(data)
            else:
                if opcode is Opcode.PONG:
                    self._on_pong(data)
                continue
            if binary:
                self._messages.append(BinaryMessage(data))
            elif is_valid_text(data):
                self._messages.append(data)
            else:
                self._refuse(*INVALID_TEXT)
                break
        if self._protocol.state is not State.OPEN and self._close_code is None:
            self._record_close(*self._protocol_close_info())

    def _claim_budget(self, budget: SharedBudget) -> None:
        """Count what this connection holds of unfinished messages against the shared
        budget; if its growth passes it, the offender gives way (maybe this one)."""
        grown = self._incoming.buffered + len(self._reassembly.data) - self._held
        if not grown:
            return
        budget.used += grown
        self._held += grown
        if grown > 0 and budget.used > budget.total and not budget.relieve(self):
            self._refuse(1009, budget.reason)

    @property
    def peer_host(self) -> str | None:
        return self._peer_host

    def share_of(self, budget: SharedBudget) -> int:
        if budget is self._budget:
            return self._held
        return super().share_of(budget)

    def give_way(self, budget: SharedBudget) -> None:
        if budget is self._budget:
            # The close frame waits in websockets' output; the reader, woken below, sends it.
            self._refuse(1009, budget.reason)
            self._interrupt_read()
        else:
            super().give_way(budget)

    def _interrupt_read(self) -> None:
        # Shutting down only the receiving side ends a pending read with end-of-stream on
        # both backends while writes still work, so the reader can send the close frame.
        sock = self._stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RD)

    def _refuse(self, code: int, reason: str) -> None:
        """Fail the connection for what the peer sent: our close frame (queued for the
        reader's flush) says why, and nothing held for unfinished messages is kept."""
        if self._protocol.state is State.OPEN:
            self._protocol.fail(code, reason)
        self._record_close(code, reason)
        self._release()

    def _release(self) -> None:
        """Drop the buffers of unfinished messages and give their bytes back."""
        self._incoming.discard()
        self._reassembly.clear()
        if self._budget is not None:
            self._budget.used -= self._held
        self._held = 0

    def _protocol_close_info(self) -> tuple[int, str]:
        """The close that ended the link: whichever side's close frame came first."""
        protocol = self._protocol
        received, sent = protocol.close_rcvd, protocol.close_sent
        if received is not None and (sent is None or protocol.close_rcvd_then_sent):
            return received.code, received.reason
        if sent is not None:
            return sent.code, sent.reason
        cause = protocol.parser_exc
        return 1006, "connection lost" if cause is None else str(cause)

    async def _close_handshake(self, code: int, reason: str) -> None:
        protocol = self._protocol
        if not self._broken and protocol.state is State.OPEN:
            protocol.send_close(code, reason)
            self._record_close(code, reason)
            await self._submit(protocol.data_to_send())
        else:
            await self._drain()  # an echo still queued (a close that came with the handshake)
        # Read until the peer's close frame and its end of stream, as RFC 6455 §7 asks.
        while not self._finished_reading():
            await self._read_turn()
        await self._drain()  # our echo or EOF may still be queued behind another write

    def _finished_reading(self) -> bool:
        protocol = self._protocol
        if self._stream_done or self._broken or protocol.state is State.CLOSED:
            return True
        # Once both close frames have crossed, the server hangs up first (RFC 6455 §7.1.1)
        # instead of waiting for a client that may not be reading any more.
        return (
            protocol.side is Side.SERVER
            and protocol.close_sent is not None
            and protocol.close_rcvd is not None
        )

    async def _abort(self) -> None:
        if not self._aborted:
            self._aborted = True
            self._stream_done = True
            self._release()
            if self._budget is not None:
                self._budget.leave(self)
            await anyio.aclose_forcefully(self._stream)

    @property
    def remote_address(self) -> str | None:
        return self._remote_address


# -- client -------------------------------------------------------------------------------
