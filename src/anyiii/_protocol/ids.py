"""Invocation ids that are valid UUID text but cost a fraction of `str(uuid4())`.

The Rust engine parses `invocation_id` as a UUID, so ids must look like one. Only
uniqueness matters, not unpredictability: each generator draws a random 80-bit prefix once
(version 4 and variant bits set, so the text is a well-formed v4 UUID) and appends a 48-bit
counter, which takes one string concatenation per id instead of 16 random bytes and a
UUID object.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Final

__all__ = ["InvocationIds", "is_uuid", "random_uuid"]

_COUNTER_MASK: Final = (1 << 48) - 1
_UUID_TEXT: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class InvocationIds:
    """Callable source of unique UUID-shaped ids: `ids = InvocationIds(); ids()`."""

    __slots__ = ("_next", "_prefix")

    def __init__(self) -> None:
        bits = secrets.randbits(80)
        time_low = bits >> 48
        time_mid = (bits >> 32) & 0xFFFF
        time_hi = 0x4000 | ((bits >> 20) & 0x0FFF)
        clock_seq = 0x8000 | ((bits >> 6) & 0x3FFF)
        self._prefix = f"{time_low:08x}-{time_mid:04x}-{time_hi:04x}-{clock_seq:04x}-"
        self._next = secrets.randbits(48)

    def __call__(self) -> str:
        value = self._next
        self._next = (value + 1) & _COUNTER_MASK
        return f"{self._prefix}{value:012x}"


def random_uuid() -> str:
    """A random UUID v4 as text, for ids that must not be guessable (worker ids, tokens)."""
    return str(uuid.uuid4())


def is_uuid(text: str) -> bool:
    """True if `text` is UUID text the Rust engine would accept (hyphenated, 36 chars)."""
    return _UUID_TEXT.fullmatch(text) is not None
