"""Outgoing calls: the request's shape (as the official SDKs take it) and the calls
waiting for their answers.

`worker.trigger_async({"function_id": ..., "payload": ..., "action": ..., "timeout_ms": ...,
"metadata": ..., "namespace": ...})` — a dict, or any object with those attributes (such as
`anyiii.TriggerRequest`). `action` is None (wait for the result), `{"type": "void"}`
(fire and forget) or `{"type": "enqueue", "queue": name}` (or the `TriggerAction` helpers).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import anyio
import msgspec

from .._concurrency import OneShot, event_maker
from .._errors import InvocationError
from .._protocol.codes import TIMEOUT
from .._protocol.frames import EnqueueAction, ErrorBody, VoidAction, decode_value

__all__ = [
    "CallRequest",
    "CallSlot",
    "PendingCalls",
    "call_outcome",
    "timed_out",
    "timeout_error",
    "TriggerAction",
    "TriggerRequest",
    "parse_request",
]


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


class CallRequest(msgspec.Struct, frozen=True):
    """A validated request. (A Struct: a frozen dataclass's `__init__` sets each field
    through `object.__setattr__`, a measurable share of every call.)"""

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


_PLAIN_REQUEST_KEYS: Final = frozenset({"function_id", "payload"})
"""A request with no other key needs no check but its function id (`parse_request`)."""


def parse_request(request: object) -> CallRequest:
    """Validate a request given as a dict or an object; raises ValueError/TypeError early,
    before anything is sent."""
    if type(request) is dict and request.keys() <= _PLAIN_REQUEST_KEYS:
        # The common shape, `{"function_id": ..., "payload": ...}`: what the general path
        # below would make of it, without its lookups of the keys that are not there.
        function_id = request.get("function_id")
        if type(function_id) is str and function_id:
            return CallRequest(function_id, request.get("payload"), None, None, None, None)
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


CallSlot = OneShot[msgspec.Raw, ErrorBody]
"""Where one outgoing call's answer lands: its result, or its error."""


def timeout_error(timeout_ms: int) -> ErrorBody:
    """The answer of a call whose `timeout_ms` passed before its result came."""
    return ErrorBody(TIMEOUT, f"invocation timed out after {timeout_ms}ms")


def timed_out(function_id: str, timeout_ms: int, invocation_id: str | None) -> InvocationError:
    """The error raised for a call whose deadline passed before it was even sent (waiting
    for a connection, or for room in the send queue)."""
    error = timeout_error(timeout_ms)
    return InvocationError(
        error.code, error.message, function_id=function_id, invocation_id=invocation_id
    )


class PendingCalls:
    """The outgoing calls of a worker that wait for an answer, by invocation id.

    A call opens its slot before its frame is sent (so no answer can arrive unclaimed) and
    closes it when it stops waiting, whether answered, timed out or cancelled. Resolving
    never blocks, so the reader task can do it; a lost connection fails every slot at once.

    Deadlines: a slot opened with a deadline is answered `timeout_error` once it passes,
    by `expire_forever()`, one task per connection. A cancel scope with a deadline around
    every call cost the caller more than anything else on its path (a timer armed and
    disarmed per call); here a call costs one heap push. The heap keeps the entries of
    answered calls until their deadline, so it is compacted whenever it holds more than
    twice the open slots (plus a little), which bounds it by the calls in flight.
    """

    __slots__ = ("_armed", "_deadlines", "_new_event", "_slots", "_wakeup")

    COMPACT_SLACK = 64
    """Stale heap entries tolerated beyond twice the open slots before compacting."""

    def __init__(self) -> None:
        self._slots: dict[str, CallSlot] = {}
        self._deadlines: list[tuple[float, str, int]] = []
        self._wakeup: anyio.Event | None = None
        self._armed = math.inf
        """When the expiry task wakes next (inf: it sleeps until told)."""
        self._new_event: Callable[[], anyio.Event] | None = None

    def __len__(self) -> int:
        return len(self._slots)

    def open(self, invocation_id: str, deadline: float = math.inf, timeout_ms: int = 0) -> CallSlot:
        """A new slot for the call `invocation_id`, answered `timeout_error(timeout_ms)` if
        nothing else answers it by `deadline` (clock seconds, `anyio.current_time()`)."""
        new_event = self._new_event
        if new_event is None:  # first call: we are inside the event loop now
            new_event = self._new_event = event_maker()
        # `OneShot()`, not `CallSlot()`: calling the subscripted alias costs a trip through
        # typing's machinery on every call.
        slot: CallSlot = OneShot(new_event())
        slots = self._slots
        slots[invocation_id] = slot
        if deadline != math.inf:
            deadlines = self._deadlines
            heapq.heappush(deadlines, (deadline, invocation_id, timeout_ms))
            if deadline < self._armed:
                self._armed = -math.inf  # told once; the task re-arms when it runs
                if self._wakeup is not None:
                    self._wakeup.set()
            elif len(deadlines) > 2 * len(slots) + self.COMPACT_SLACK:
                self._compact()
        return slot

    def close(self, invocation_id: str) -> None:
        """The call stopped waiting; a later answer finds no slot and is dropped."""
        self._slots.pop(invocation_id, None)

    def resolve(
        self, invocation_id: str, result: msgspec.Raw | None, error: ErrorBody | None
    ) -> None:
        """Deliver an answer to the call waiting for it, if it still waits."""
        slot = self._slots.get(invocation_id)
        if slot is not None:
            slot.resolve(result, error)

    def fail_all(self, error: ErrorBody) -> None:
        """Answer every waiting call with `error` (the connection carrying them is gone)."""
        for slot in self._slots.values():
            slot.resolve(None, error)
        self._deadlines.clear()

    # --- deadlines ----------------------------------------------------------------------------

    def expire(self, now: float) -> float:
        """Answer every open call whose deadline is `now` or earlier with `timeout_error`;
        returns the next deadline (inf if none)."""
        deadlines, slots = self._deadlines, self._slots
        while deadlines and deadlines[0][0] <= now:
            _, invocation_id, timeout_ms = heapq.heappop(deadlines)
            slot = slots.get(invocation_id)
            if slot is not None:
                slot.resolve(None, timeout_error(timeout_ms))
        return deadlines[0][0] if deadlines else math.inf

    async def expire_forever(self) -> None:
        """Time out calls as their deadlines pass, until cancelled (the connection's end)."""
        wakeup: anyio.Event | None = None
        try:
            while True:
                wakeup = self._wakeup = anyio.Event()
                self._armed = self.expire(anyio.current_time())
                with anyio.CancelScope(deadline=self._armed):
                    await wakeup.wait()
        finally:
            if self._wakeup is wakeup:
                self._wakeup, self._armed = None, math.inf

    def _compact(self) -> None:
        """Drop the heap entries of calls no longer waiting."""
        slots = self._slots
        self._deadlines = [entry for entry in self._deadlines if entry[1] in slots]
        heapq.heapify(self._deadlines)


def call_outcome(slot: CallSlot, function_id: str, invocation_id: str) -> Any:
    """The answered call's result as Python values, or its error raised as InvocationError."""
    if slot.error is not None:
        raise InvocationError(
            slot.error.code,
            slot.error.message,
            function_id=function_id,
            stacktrace=slot.error.stacktrace,
            invocation_id=invocation_id,
        )
    return decode_value(slot.result) if slot.result is not None else None
