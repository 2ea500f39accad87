"""The shape of an outgoing call request, as the official SDKs take it.

`worker.trigger_async({"function_id": ..., "payload": ..., "action": ..., "timeout_ms": ...,
"metadata": ..., "namespace": ...})` — a dict, or any object with those attributes (such as
`anyiii.TriggerRequest`). `action` is None (wait for the result), `{"type": "void"}`
(fire and forget) or `{"type": "enqueue", "queue": name}` (or the `TriggerAction` helpers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from .._protocol.frames import EnqueueAction, ErrorBody, VoidAction

__all__ = ["CallRequest", "PendingCall", "TriggerAction", "TriggerRequest", "parse_request"]


class TriggerRequest(msgspec.Struct, kw_only=True):
    """A call request with the official SDK's field names."""

    function_id: str
    payload: Any = None
    action: VoidAction | EnqueueAction | None = None
    timeout_ms: int | None = None
    metadata: Any = None
    namespace: str | None = None


class TriggerAction:
    """Builders for `action`, named as in the official SDK."""

    @staticmethod
    def Void() -> VoidAction:
        """Fire and forget: no invocation id, no result."""
        return VoidAction()

    @staticmethod
    def Enqueue(*, queue: str) -> EnqueueAction:
        """Hand the call to a named queue; the result is a receipt."""
        return EnqueueAction(queue=queue)


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A validated request."""

    function_id: str
    payload: Any
    action: VoidAction | EnqueueAction | None
    timeout_ms: int | None
    metadata: Any
    namespace: str | None


def _action(value: object) -> VoidAction | EnqueueAction | None:
    if value is None or isinstance(value, VoidAction | EnqueueAction):
        return value
    kind = value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)
    if kind == "void":
        return VoidAction()
    if kind == "enqueue":
        queue = value.get("queue") if isinstance(value, Mapping) else getattr(value, "queue", None)
        if isinstance(queue, str) and queue:
            return EnqueueAction(queue=queue)
        raise ValueError("an enqueue action needs a queue name")
    raise ValueError(f"unknown action {value!r}: use None, void or enqueue")


def parse_request(request: object) -> CallRequest:
    """Validate a request given as a dict or an object; raises ValueError/TypeError early,
    before anything is sent."""
    if isinstance(request, Mapping):
        get = request.get
    else:

        def get(key: str, default: object = None) -> Any:
            return getattr(request, key, default)

    function_id = get("function_id")
    if not isinstance(function_id, str) or not function_id:
        raise ValueError("a call request needs a non-empty function_id")
    timeout_ms = get("timeout_ms", get("timeoutMs"))
    if timeout_ms is not None and (
        not isinstance(timeout_ms, int | float) or isinstance(timeout_ms, bool) or timeout_ms <= 0
    ):
        raise ValueError(f"timeout_ms must be a positive number, not {timeout_ms!r}")
    namespace = get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
        raise ValueError("namespace must be a non-blank string")
    return CallRequest(
        function_id=function_id,
        payload=get("payload"),
        action=_action(get("action")),
        timeout_ms=None if timeout_ms is None else int(timeout_ms),
        metadata=get("metadata"),
        namespace=namespace,
    )


class PendingCall:
    """The slot an outgoing call waits on: set once, by its result or by its loss."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: msgspec.Raw | None = None
        self.error: ErrorBody | None = None

    def resolve(self, result: msgspec.Raw | None, error: ErrorBody | None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()
