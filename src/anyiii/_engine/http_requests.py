"""What the REST listener reads: its limits, and a request turned into the request object
of spec §10.1 (the handler's `data`).

Kept apart from `http.py`, which moves the bytes; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import h11
import msgspec
from msgspec import Raw

from .._protocol.codes import HTTP_TRIGGER
from .._protocol.frames import NULL, StreamChannelRef, to_raw
from .http_replies import JSON

__all__ = [
    "WRITE_PIECE",
    "BodyTooDeep",
    "HttpLimits",
    "has_both_framings",
    "header",
    "once",
    "parse_body",
    "request_object",
]

WRITE_PIECE: Final = 64 * 1024
"""The most bytes of a response sent under one `write_timeout`: a large body goes out in
pieces, so a slow client that keeps reading is never cut off, one that stops is."""


class HttpLimits(msgspec.Struct, frozen=True):
    """Bounds that keep one client from hurting the listener (docs/limits.md).

    `max_body` (bytes; 413 beyond it), `request_timeout` (seconds until the handler's answer
    becomes a 504), `header_timeout` (seconds to receive a request head), `idle_timeout`
    (seconds a kept-alive connection may wait for its next request before it is closed:
    5, as common servers do, so idle clients do not hold connections), `write_timeout`
    (seconds one piece of a response, at most `WRITE_PIECE` bytes, may take to send: a
    client that stops reading is disconnected after it), `max_head` (bytes of a request
    head; 431 beyond it).
    """

    max_body: int = 16 * 2**20
    request_timeout: float = 30.0
    header_timeout: float = 10.0
    idle_timeout: float = 5.0
    max_head: int = 64 * 1024
    write_timeout: float = 30.0


class BodyTooDeep(ValueError):
    """A JSON request body nests deeper than the decoder follows (Python's recursion
    limit): answered 400, as a malformed request, rather than crashing the connection."""


def parse_body(request: h11.Request, body: bytes) -> Raw:
    """The request object's `body`: the JSON body, re-encoded, when the content type says
    JSON; null otherwise or when it does not parse (spec §10.1). Raises `BodyTooDeep`."""
    if JSON not in header(request, b"content-type") or not body:
        return NULL
    try:
        # Encoded here, so the request object around it never nests deeper than this.
        return to_raw(msgspec.json.decode(body))
    except msgspec.DecodeError:
        return NULL
    except RecursionError:  # msgspec follows nesting up to Python's recursion limit
        raise BodyTooDeep("the JSON body nests too deeply") from None


def has_both_framings(request: h11.Request) -> bool:
    """Whether the request gives both Content-Length and Transfer-Encoding: h11 follows
    Transfer-Encoding, and RFC 9112 §6.3 requires closing the connection after the answer
    (a sign of request smuggling)."""
    names = {name for name, _ in request.headers}
    return b"content-length" in names and b"transfer-encoding" in names


def request_object(
    request: h11.Request,
    body: Raw,
    pattern: str,
    params: dict[str, str],
    *,
    channels: tuple[StreamChannelRef, StreamChannelRef],
) -> Raw:
    """The request object of §10.1; `channels` are the `request_body` reader's and the
    `response` writer's refs; `body` is `parse_body`'s."""
    target = urlsplit(request.target.decode("latin-1"))
    headers: dict[str, str] = {}
    for name, value in request.headers:
        try:
            headers[name.decode("latin-1").lower()] = value.decode("utf-8")
        except UnicodeDecodeError:
            headers[name.decode("latin-1").lower()] = ""
    method = request.method.decode("ascii")  # a route's: HTTP_METHODS, upper case
    return to_raw(
        {
            "query_params": dict(parse_qsl(target.query, keep_blank_values=True)),
            "path_params": params,
            "headers": headers,
            "path": pattern,
            "method": method,
            "body": body,
            "trigger": {"type": HTTP_TRIGGER, "path": pattern, "method": method},
            "request_body": channels[0],
            "response": channels[1],
        }
    )


def header(request: h11.Request, name: bytes) -> str:
    """A request header's value (the last one given), as text; "" if absent."""
    value = b""
    for key, given in request.headers:
        if key == name:
            value = given
    return value.decode("latin-1").lower()


def once(body: bytes) -> Callable[[], Awaitable[bytes | None]]:
    """A body already read whole, handed out once (nothing for an empty body)."""
    chunks = [body] if body else []

    async def next_chunk() -> bytes | None:
        return chunks.pop() if chunks else None

    return next_chunk
