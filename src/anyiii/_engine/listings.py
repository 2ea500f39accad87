"""Listings that fit in one message: the `*::list` answers, bounded in bytes.

A listing's answer is one WebSocket message; one larger than its caller accepts gets the
caller disconnected (the SDKs refuse messages over 64 MiB by default), so each listing is
cut at a byte budget (`RegistrationLimits.max_listing_bytes`). Entries are kept in their
listed order while they fit; when some are left out the answer says `"truncated": true`
(anyiii's own field: the real engine has no limit), and a caller narrows its query
(`prefix`, `search`, `worker`) to see the rest. Each entry is encoded once, so cutting
costs what encoding the answer costs anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from msgspec import Raw

from .._protocol.frames import encode_value, to_raw

__all__ = ["bounded_answer", "bounded_array", "bounded_lists"]


def bounded_array(entries: Iterable[object], budget: int) -> tuple[Raw, int, bool]:
    """The JSON array of `entries` that fits in `budget` bytes: (array, its size, whether
    entries were left out). The first entry past the budget ends it."""
    parts: list[bytes] = []
    size = 2  # the brackets
    truncated = False
    for entry in entries:
        encoded = encode_value(entry)
        needed = len(encoded) + (1 if parts else 0)
        if size + needed > budget:
            truncated = True
            break
        parts.append(encoded)
        size += needed
    return Raw(b"[" + b",".join(parts) + b"]"), size, truncated


def bounded_answer(key: str, entries: Iterable[object], budget: int) -> Raw:
    """`{key: [entries…]}` within `budget` bytes, with `"truncated": true` if cut."""
    return bounded_lists({}, {key: entries}, budget)


def bounded_lists(
    fixed: Mapping[str, object], lists: Mapping[str, Iterable[object]], budget: int
) -> Raw:
    """An answer of `fixed` fields plus `lists`, the lists sharing what is left of
    `budget` in their order, with `"truncated": true` if any was cut."""
    answer: dict[str, object] = dict(fixed)
    left = budget - len(encode_value(answer))
    cut = False
    for key, entries in lists.items():
        array, size, truncated = bounded_array(entries, max(left, 2))
        answer[key] = array
        left -= size
        cut = cut or truncated
    if cut:
        answer["truncated"] = True
    return to_raw(answer)
