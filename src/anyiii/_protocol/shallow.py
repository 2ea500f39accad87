"""Reading a frame's top-level string fields without decoding what is nested in it.

A frame nested deeper than the JSON decoder goes (it stops at Python's recursion limit,
about 1,000 levels less the stack in use: `RecursionError`) is malformed, but a call must
still be answered `malformed_frame` rather than left waiting (spec §7). Decoding it,
even into a struct that ignores every other field, recurses just the same, so this scans
it with two regular expressions instead: strings are skipped whole (a bracket inside one
is not nesting), brackets are counted, and only the members at depth 1 are read.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from .._errors import RemoteProtocolError

__all__ = ["MAX_TOKENS", "too_deep", "top_level_strings"]

MAX_TOKENS: Final = 100_000
"""Tokens (strings and runs of brackets) scanned at most: what a diagnosis may cost."""

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN: Final = re.compile(_STRING + rb"|[\[{]+|[\]}]+", re.DOTALL)
_STRING_MEMBER: Final = re.compile(rb"\s*:\s*(" + _STRING + rb")", re.DOTALL)
"""After a string at depth 1: the rest of a member whose value is a string."""


def top_level_strings(data: bytes | str, names: frozenset[str]) -> dict[str, str]:
    """The string members of the top-level object in `data` whose names are in `names`
    (the first of each), as far as `MAX_TOKENS` tokens go; members of any other kind, and
    everything nested, are passed over."""
    raw = data.encode() if isinstance(data, str) else data
    found: dict[str, str] = {}
    depth, pos = 0, 0
    for _ in range(MAX_TOKENS):
        token = _TOKEN.search(raw, pos)
        if token is None:
            break
        pos = token.end()
        text = token.group()
        if text[:1] == b'"':
            member = _STRING_MEMBER.match(raw, pos) if depth == 1 else None
            if member is not None:
                pos = member.end()
                name = _string(text)
                if name in names and name not in found:
                    value = _string(member.group(1))
                    if value is not None:
                        found[name] = value
            continue
        depth += len(text) if text[:1] in b"[{" else -len(text)
        if depth <= 0:
            break  # the top-level value is over
    return found


def too_deep(data: bytes | str, exc: RecursionError, known: frozenset[str]) -> RemoteProtocolError:
    """The error for a frame the decoder gave up on for its depth: it names the frame's
    type and the invocation, function or id it names at top level, when its `type` is one
    of `known`, so that the party waiting on it is answered."""
    fields = top_level_strings(data, _ENVELOPE)
    frame_type = fields.get("type")
    if frame_type not in known:
        return RemoteProtocolError(f"not a protocol frame: {exc!r}")
    return RemoteProtocolError(
        f"malformed {frame_type!r} frame: nested too deeply to decode ({exc})",
        frame_type=frame_type,
        invocation_id=fields.get("invocation_id"),
        function_id=fields.get("function_id"),
        frame_id=fields.get("id"),
    )


_ENVELOPE: Final = frozenset({"type", "invocation_id", "function_id", "id"})


def _string(token: bytes) -> str | None:
    try:
        return msgspec.json.decode(token, type=str)
    except msgspec.DecodeError:
        return None
