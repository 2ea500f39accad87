"""What the router asks the engine's I/O layer to do.

The router is sans-IO: every call returns a list of these actions, and the engine's async
layer carries them out in order.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec
from msgspec import Raw

from .._protocol.frames import ErrorBody

__all__ = ["Action", "Close", "Completed", "Send"]


class Send(msgspec.Struct, frozen=True):
    """Write one message to one worker connection."""

    conn: int
    data: bytes


class Close(msgspec.Struct, frozen=True):
    """Close one worker connection (it was retired by `reattach`, or refused)."""

    conn: int
    code: int = 1000
    reason: str = ""


class Completed(msgspec.Struct, frozen=True):
    """An invocation the engine itself started (HTTP, trigger fire) has ended."""

    invocation_id: str
    result: Raw | None = None
    error: ErrorBody | None = None


Action: TypeAlias = Send | Close | Completed
