"""What the router asks the engine's I/O layer to do.

The router is sans-IO: every call returns a list of these actions, and the engine's async
layer carries them out in order. `answer` builds the one action every routing rule ends
with sooner or later: telling whoever waits for an invocation how it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

import msgspec
from msgspec import Raw

from .._protocol.codes import INVOCATION_STOPPED
from .._protocol.frames import ErrorBody
from .http_targets import HttpRequest
from .service import Change
from .tables import INTERNAL, Tables

__all__ = [
    "STOPPED",
    "Action",
    "Callback",
    "Close",
    "Completed",
    "HttpCall",
    "Persist",
    "Send",
    "answer",
]


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


class Persist(msgspec.Struct, frozen=True):
    """Make `changes` durable, then carry out `then` (the answers that acknowledge them)."""

    changes: tuple[Change, ...]
    then: list[Action]


class Callback(msgspec.Struct, frozen=True):
    """Run a service's in-process notification (`service.Notify`) now."""

    run: Callable[[], None]


class HttpCall(msgspec.Struct, frozen=True):
    """Send the request of a call to an HTTP-invoked function; its answer goes back to the
    router's `http_answered` under `invocation_id` (`http_calls.py` does the sending)."""

    invocation_id: str
    request: HttpRequest


Action: TypeAlias = "Send | Close | Completed | Persist | Callback | HttpCall"

STOPPED: Final = ErrorBody(code=INVOCATION_STOPPED, message="Invocation stopped")
"""How an invocation ends when a connection it was part of closes, or the engine stops."""


def answer(
    tables: Tables,
    caller: int | None,
    invocation_id: str | None,
    result: Raw | None,
    error: ErrorBody | None,
    out: list[Action],
) -> None:
    """Tell whoever waits for `invocation_id` how it ended (nobody, for void calls).

    The engine's own calls end with `Completed`; a worker gets its result frame, unless it
    has gone or no longer waits (its protocol core decides that).
    """
    if caller is None or invocation_id is None:
        return
    if caller == INTERNAL:
        out.append(Completed(invocation_id, result, error))
        return
    conn = tables.connections.get(caller)
    if conn is not None and conn.core.awaits(invocation_id):
        out.append(Send(caller, conn.core.deliver_result(invocation_id, result, error=error)))
