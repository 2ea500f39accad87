"""The one change the engine makes to a worker's call payload: `_caller_worker_id`."""

from __future__ import annotations

from typing import Final

from msgspec import Raw

from .._protocol.codes import CALLER_WORKER_ID_KEY

__all__ = ["with_caller"]

_CALLER_ENTRY_START: Final = b'"' + CALLER_WORKER_ID_KEY.encode() + b'":"'


def with_caller(data: Raw, worker_id: str) -> Raw:
    """`data` with `_caller_worker_id` added if it is a JSON object (spec §5.1).

    The key is spliced in last, so it wins over a caller-supplied one in every decoder that
    keeps the last duplicate, as the engine's own map insert does.
    """
    raw = bytes(data)
    if not raw.startswith(b"{"):
        return data
    entry = _CALLER_ENTRY_START + worker_id.encode() + b'"'
    body = raw[1:-1]
    if body.strip():
        return Raw(raw[:-1] + b"," + entry + b"}")
    return Raw(b"{" + entry + b"}")
