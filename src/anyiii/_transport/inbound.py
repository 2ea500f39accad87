"""What a WebSocket transport holds for messages still arriving, and the checks on them.

What keeps a peer from turning a few bytes on the wire into a lot of memory or CPU on our
side, and from passing on text that is not text (docs/limits.md, "WebSocket messages and
memory" and "Content checks"):

* `Reassembly` joins a fragmented message into one `bytearray`, so memory stays the size
  of the payload however it is cut (a list of one-byte `bytes` cost ~56 bytes each), and
  counts fragments under `SMALL_FRAGMENT` bytes: past `SMALL_FRAGMENT_ALLOWANCE` of them
  in one message the sender is refused, since each costs a full frame parse;
* `is_valid_text` tells whether a text message is UTF-8, as RFC 6455 §8.1 requires.

(What all connections together may hold is `budget.SharedBudget`'s job.) The refusals are
close codes and reasons from here, so they are written once.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "INVALID_TEXT",
    "SMALL_FRAGMENT",
    "SMALL_FRAGMENT_ALLOWANCE",
    "TOO_MANY_FRAGMENTS",
    "Reassembly",
    "is_valid_text",
]

SMALL_FRAGMENT: Final = 1024
"""Fragments shorter than this (bytes; the last of a message excepted) count as small."""
SMALL_FRAGMENT_ALLOWANCE: Final = 1024
"""Small fragments one message may have before its sender is refused. Real clients send
whole messages or 1 MiB fragments (the official SDK); a stream of tiny fragments is only
good for making the receiver parse a frame header per byte."""

TOO_MANY_FRAGMENTS: Final = (
    1008,
    f"message cut into more than {SMALL_FRAGMENT_ALLOWANCE} fragments under {SMALL_FRAGMENT} bytes",
)
"""The close for a message of too many small fragments (policy violation)."""
INVALID_TEXT: Final = (1007, "text message is not valid UTF-8")
"""The close for a text message that is not UTF-8 (RFC 6455 §7.4.1: invalid payload)."""


def is_valid_text(data: bytes) -> bool:
    """Whether `data` is UTF-8. ASCII (nearly every JSON message) is checked without
    decoding, which costs a scan instead of building a string."""
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class Reassembly:
    """The fragments of the message being received, joined as they come."""

    __slots__ = ("binary", "data", "small")

    def __init__(self) -> None:
        self.data = bytearray()
        self.binary = False
        """Whether the message being joined is binary."""
        self.small = 0
        """Small fragments so far in this message (see `SMALL_FRAGMENT`)."""

    def start(self, payload: bytes, *, binary: bool) -> bool:
        """Begin a message with its first fragment; False if it is refused already."""
        self.data = bytearray(payload)
        self.binary = binary
        self.small = 0
        return self._count(payload)

    def add(self, payload: bytes) -> bool:
        """Append a middle fragment; False once the message has too many small ones."""
        self.data += payload
        return self._count(payload)

    def finish(self, payload: bytes) -> bytes:
        """Append the last fragment and hand back the whole payload, leaving none held."""
        data, self.data = self.data, bytearray()
        data += payload
        return bytes(data)

    def clear(self) -> None:
        """Drop whatever is held (the connection is over)."""
        self.data = bytearray()

    def _count(self, payload: bytes) -> bool:
        if len(payload) < SMALL_FRAGMENT:
            self.small += 1
        return self.small <= SMALL_FRAGMENT_ALLOWANCE
