"""Splitting received bytes into WebSocket frames, taking the common ones ourselves.

Nearly every frame a worker or the engine receives is one whole text message: FIN set, no
extension bits, masked if (and only if) it comes from a client, well under the size limit.
For those, `IncomingFrames` reads the header, unmasks the payload with websockets' C
helper and hands back the message: a fraction of the cost of websockets' generator-based
parser, which was the largest single share of the engine's CPU per routed call.

Every other frame (control frames, fragments, anything with odd bits, a frame from the
wrong side) is handed to the websockets protocol object *whole*, byte for byte as it
arrived, so websockets still decides everything the RFC asks of them: pongs, closing,
protocol errors. Because only whole frames are handed over, websockets' own buffer is
empty between reads and the two parsers never disagree on where a frame starts. That
holds from the first frame on because the handshakes give websockets only the HTTP head
(`wire.head_end`): bytes that came in the same read go to this reader.

A text message that is not UTF-8 is handed off too (checked with `is_valid_text`, a
scan for ASCII first), so `websocket` sees it as a frame and refuses it (close 1007).

Two cases hand everything to websockets from then on (`passthrough`): a frame whose
length passes the size limit (websockets fails the connection with 1009, as before,
without this module buffering it first) and a close frame (after it, websockets decides
what, if anything, still counts).
"""

from __future__ import annotations

try:  # websockets' C helper when it was built with it, else its pure-Python twin
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - depends on how websockets was installed
    from websockets.utils import apply_mask

from anyiii._transport.base import BinaryMessage
from anyiii._transport.inbound import is_valid_text

__all__ = ["Handoff", "IncomingFrames", "apply_mask"]

_CONTINUATION, _TEXT, _CLOSE = 0x0, 0x1, 0x8
_DATA = (0x1, 0x2)
"""Text and binary opcodes."""


class Handoff(bytes):
    """The bytes of whole frames (or, in passthrough, any bytes) for websockets to parse."""

    __slots__ = ()


class IncomingFrames:
    """Frames received on one connection (see the module docstring).

    `masked`: whether frames from the peer must be masked (true on the server side).
    `max_size`: the largest message payload accepted (the transport's limit).
    """

    __slots__ = ("_buffer", "_fragmented", "_masked", "_max_size", "more", "passthrough")

    def __init__(self, *, masked: bool, max_size: int, passthrough: bool = False) -> None:
        self._masked = 0x80 if masked else 0
        self._max_size = max_size
        self._buffer = bytearray()
        self._fragmented = False
        self.passthrough = passthrough
        """Everything goes to websockets unparsed (see the module docstring)."""
        self.more = False
        """`feed` stopped after a handoff with whole frames still buffered: once websockets
        has taken the handoff (which may have closed the connection), call `feed(b"")`."""

    def feed(self, data: bytes, *, open_: bool) -> list[bytes]:
        """The messages and handoffs in `data` (after what earlier reads left), in order,
        up to and including the first handoff (see `more`).

        An item is a message (`bytes`) or a `Handoff` for websockets. `open_` is whether
        the connection is open: while it is not, every frame is handed off.
        """
        self.more = False
        if self.passthrough:
            return [Handoff(data)] if data else []
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        size = len(buffer)
        at = 0
        masked, max_size = self._masked, self._max_size
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if size - at < 4:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                head = 4
            elif length == 127:
                if size - at < 10:
                    break
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
                head = 10
            mask_bit = second & 0x80
            if mask_bit:
                head += 4
            if length > max_size:
                out.append(Handoff(buffer[at:]))
                buffer.clear()
                self.passthrough = True
                return out
            end = at + head + length
            if end > size:
                break
            opcode = first & 0x0F
            if (
                first & 0xF0 == 0x80  # FIN, no extension bits
                and opcode in _DATA
                and mask_bit == masked
                and open_
                and not self._fragmented
            ):
                if mask_bit:
                    payload = apply_mask(buffer[at + head : end], buffer[at + head - 4 : at + head])
                else:
                    payload = bytes(buffer[at + head : end])
                if opcode != _TEXT:
                    out.append(BinaryMessage(payload))
                elif payload.isascii() or is_valid_text(payload):
                    out.append(payload)
                else:  # websockets parses it again, and the transport refuses it
                    out.append(Handoff(buffer[at:end]))
                    at = end
                    self.more = size - at >= 2
                    break
            else:
                out.append(Handoff(buffer[at:end]))
                if opcode in _DATA:
                    self._fragmented = not first & 0x80
                elif opcode == _CONTINUATION and first & 0x80:
                    self._fragmented = False
                elif opcode == _CLOSE:
                    if end < size:
                        out.append(Handoff(buffer[end:]))
                    buffer.clear()
                    self.passthrough = True
                    return out
                at = end
                self.more = size - at >= 2
                break
            at = end
        del buffer[:at]
        return out

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (a partial message, for the budget)."""
        return len(self._buffer)

    def discard(self) -> None:
        """Stop parsing and drop what is held: the connection has been refused, and from
        now on everything goes to websockets, which discards it after failing."""
        self._buffer = bytearray()
        self.passthrough = True

    def leftover(self) -> Handoff:
        """What is buffered (a partial frame): for websockets, before the end of stream."""
        rest = Handoff(self._buffer)
        self._buffer.clear()
        return rest
