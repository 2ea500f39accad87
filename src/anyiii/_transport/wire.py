"""What the socket transports share about the wire: read size, fragmenting, addresses,
handshake headers, the close codes and reasons a close frame may carry, and the close
code for leaving a transport's block (`exit_close_code`).

The default transport (`websocket`) and the httpx one (`httpx_ws`) read and fragment by
the same numbers, and both report the peer as "host:port" ("[v6]:port"). The embedded
engine writes its URLs with `url_host`, so an IPv6 host is bracketed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from anyiii._errors import ConnectionClosed

__all__ = [
    "FRAGMENT_ABOVE",
    "FRAGMENT_SIZE",
    "RECEIVE_SIZE",
    "HeadersLike",
    "check_close_code",
    "clip_reason",
    "exit_close_code",
    "format_address",
    "head_end",
    "url_host",
]

HeadersLike = Mapping[str, str] | Sequence[tuple[str, str]]
"""Handshake headers: a mapping, or (name, value) pairs (which may repeat a name)."""

RECEIVE_SIZE = 65536
"""Bytes asked for per read from the network stream."""
FRAGMENT_ABOVE = 16 * 2**20
"""Messages longer than this (the Rust engine's 16 MiB frame limit) go out in fragments."""
FRAGMENT_SIZE = 2**20
"""The size of one fragment: 1 MiB in the default transport, like the official SDK; the
httpx transport counts it in characters (at most 4 MiB of UTF-8 per fragment)."""


def url_host(host: str) -> str:
    """`host` as it is written in a URL or before ":port": an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def format_address(address: object) -> str | None:
    """ "host:port" ("[v6]:port") for an IP socket address, the path for a UNIX socket,
    None for anything else (no address, or an empty one)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{url_host(str(address[0]))}:{address[1]}"
    if isinstance(address, str) and address:
        return address
    return None


def head_end(seen: bytes, data: bytes) -> int:
    """Where in `data` an HTTP head ends (just past its blank line), or -1 if not in it.

    `seen` is what came before `data` (only its last 3 bytes matter: the blank line may
    straddle two reads). The WebSocket handshakes give websockets only the head, and the
    bytes after it (frames the peer sent at once) to the transport's own frame reader, so
    the two never disagree on where a frame starts.
    """
    tail = seen[-3:]
    found = (tail + data).find(b"\r\n\r\n")
    return -1 if found < 0 else found + 4 - len(tail)


# Close codes an endpoint may put in a close frame (RFC 6455 §7.4, IANA registry);
# 1005, 1006 and 1015 are reserved for reporting and must never be sent.
_SENDABLE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def check_close_code(code: int) -> None:
    """Raise ValueError for a close code that must not appear in a close frame."""
    if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
        raise ValueError(f"{code} is not a close code an endpoint may send")


def clip_reason(reason: str) -> str:
    """Shorten `reason` to the 123 UTF-8 bytes a close frame can carry, on a char boundary."""
    raw = reason.encode()
    return reason if len(raw) <= 123 else raw[:123].decode(errors="ignore")


def exit_close_code(exc: BaseException | None) -> tuple[int, str]:
    """The close code for leaving a transport's scope with `exc` (None: a normal exit)."""
    if exc is None or isinstance(exc, ConnectionClosed):
        return 1000, ""
    if isinstance(exc, Exception):
        return 1011, "internal error"
    return 1001, "going away"  # cancellation, KeyboardInterrupt: we are leaving
