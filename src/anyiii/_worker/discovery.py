"""Being told which functions the engine serves: `worker.on_functions_available(...)`.

The engine offers the trigger type `engine::functions-available` (spec §9): a subscriber's
function is called with `{"event": "functions_changed", "functions": [FunctionSummary...]}`
whenever the set of registered functions changes (the real engine checks every 5 s, the
embedded one 50 ms after the table settles). A new subscriber hears nothing until the next
change. The list is the full, unfiltered one, `engine::*` built-ins included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .._protocol.codes import FUNCTIONS_AVAILABLE
from .subscriptions import LatestValues

__all__ = [
    "FUNCTIONS_AVAILABLE",
    "FunctionInfo",
    "FunctionsSubscription",
    "parse_functions",
]


class FunctionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One function the engine serves (the spec's `FunctionSummary`)."""

    function_id: str
    namespace: str | None = None
    worker_name: str | None = None
    description: str | None = None
    metadata: Any = None


class _Notification(msgspec.Struct, kw_only=True):
    event: str | None = None
    functions: list[FunctionInfo] = msgspec.field(default_factory=list)


def parse_functions(payload: Any) -> list[FunctionInfo]:
    """The function list of an `engine::functions-available` payload.

    Raises ValueError when the payload does not have the documented shape, so the engine's
    caller sees an error result instead of the subscriber getting garbage.
    """
    try:
        return msgspec.convert(payload, _Notification, strict=False).functions
    except msgspec.ValidationError as exc:
        raise ValueError(f"not a functions-available notification: {exc}") from None


class FunctionsSubscription(LatestValues[list[FunctionInfo]]):
    """An async iterator of function lists, one per change the engine announces.

    Each notification carries the whole list, so only the latest one matters: the buffer
    holds one list and a newer one replaces it, so a slow consumer never makes the worker
    wait and never reads a stale list after a newer one arrived. Use it as
    `async with worker.functions_available() as updates: async for functions in updates:`;
    leaving the block removes the subscription from the engine.
    """

    def __init__(self, on_close: Callable[[], None]) -> None:
        super().__init__(1, on_close=on_close)

    def close(self) -> None:
        """Stop the subscription and unbind it from the engine; a waiting iteration ends."""
        super().close()
