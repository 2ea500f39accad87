"""How a Python call becomes an iii call: binding arguments, the `Call` value, the caller.

A function's payload follows its signature, so that the official SDKs can call it with
plain JSON: a function of one parameter takes that value as its payload; a function of
several takes a JSON object keyed by parameter name; a function of none takes null.
"""

from __future__ import annotations

import inspect
import typing
import uuid
from collections.abc import Callable
from typing import Any, Literal, NewType

import msgspec

from .._errors import NoWorker
from .._protocol.codes import CALLER_WORKER_ID_KEY
from .._worker import require_worker

__all__ = [
    "Call",
    "DispatchID",
    "NoWorker",
    "Signature",
    "require_worker",
]

DispatchID = NewType("DispatchID", str)
"""The id of a dispatched (fire-and-forget) call: a UUID made by the caller, also sent in
the call's metadata as `dispatch_id`, because the engine gives void calls no id."""


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """A deferred call: what to call, with which payload, and how.

    `action` is None (wait for the result), `"void"` (fire and forget) or `"enqueue"`
    (onto the queue named by `queue`). Accepted by `worker.trigger_async` (through
    `call.request()`), `Batch.add_call` and `Client.dispatch`.
    """

    function_id: str
    payload: Any = None
    namespace: str | None = None
    action: Literal["void", "enqueue"] | None = None
    queue: str | None = None

    def request(self, **extra: Any) -> dict[str, Any]:
        """The call as a `trigger_async` request."""
        action: Any = None
        if self.action == "void":
            action = {"type": "void"}
        elif self.action == "enqueue":
            action = {"type": "enqueue", "queue": self.queue}
        return {
            "function_id": self.function_id,
            "payload": self.payload,
            "namespace": self.namespace,
            "action": action,
            **extra,
        }

    def dispatch_request(self) -> tuple[DispatchID, dict[str, Any]]:
        """A fresh dispatch id and the call sent as fire-and-forget (the void action),
        with the id in its metadata (`dispatch_id`)."""
        dispatch_id = DispatchID(str(uuid.uuid4()))
        void = msgspec.structs.replace(self, action="void")
        return dispatch_id, void.request(metadata={"dispatch_id": dispatch_id})


class Signature:
    """A function's parameters and result type, read once, and the binding rule above."""

    __slots__ = ("names", "result_type", "signature", "types")

    def __init__(self, function: Callable[..., Any]) -> None:
        self.signature = inspect.signature(function)
        try:
            hints = typing.get_type_hints(function)
        except (NameError, TypeError):
            hints = {}
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        parameters = [p for p in self.signature.parameters.values() if p.kind not in kinds]
        self.names = [p.name for p in parameters]
        self.types = [hints.get(name, Any) for name in self.names]
        self.result_type: Any = hints.get("return", Any)

    def payload(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The payload for a call with these arguments (TypeError if they do not fit)."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if not self.names:
            return None
        if len(self.names) == 1:
            return bound.arguments[self.names[0]]
        return {name: bound.arguments[name] for name in self.names}

    def arguments(self, payload: Any) -> tuple[list[Any], dict[str, Any]]:
        """The arguments a served function gets for `payload`, converted to their types."""
        if not self.names:
            return [], {}
        if len(self.names) == 1:
            if isinstance(payload, dict) and self.types[0] not in _PLAIN:
                # The engine adds the caller's id to object payloads (spec §15.8).
                payload = {k: v for k, v in payload.items() if k != CALLER_WORKER_ID_KEY}
            return [_convert(payload, self.types[0])], {}
        if not isinstance(payload, dict):
            raise TypeError(
                f"expected a JSON object with the parameters {self.names}, not {payload!r}"
            )
        kwargs: dict[str, Any] = {}
        for name, kind in zip(self.names, self.types, strict=True):
            if name in payload:
                kwargs[name] = _convert(payload[name], kind)
            elif self.signature.parameters[name].default is inspect.Parameter.empty:
                raise TypeError(f"the payload has no value for the parameter {name!r}")
        return [], kwargs

    def result(self, value: Any) -> Any:
        """A call's decoded result converted to the function's result type."""
        return _convert(value, self.result_type)


_PLAIN = (Any, object, inspect.Parameter.empty, None, type(None))


def _convert(value: Any, kind: Any) -> Any:
    if kind in _PLAIN:
        return value
    return msgspec.convert(value, kind, strict=False)
