"""Turning a user's function into something the worker can run for an invocation.

A handler may be `async def h(data)` or `async def h(data, metadata)` (or, as the official
SDK also allows, `async def h(data, *, metadata=None)`), or a plain `def`.

One rule holds for every user callable the worker runs (handlers, `IStream` methods,
`TriggerHandler` methods, discovery callbacks): `call_user` awaits an async one on the
event loop and runs a plain one in a worker thread under the worker's thread limiter, so
user code can never block the loop that carries everyone's invocations.
When the payload parameter is annotated with a msgspec Struct, a dataclass or another
msgspec-understood type, the payload is converted to it (unknown keys such as the engine's
`_caller_worker_id` are ignored) and the annotations give the function's
`request_format` / `response_format` JSON Schemas.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import msgspec
from msgspec import Raw

from .._protocol.codes import CALLER_WORKER_ID_KEY
from .._protocol.frames import ChannelEndpoint, StreamChannelRef, decode_value

__all__ = ["Handler", "HandlerFunction", "adapt_handler", "call_user", "is_async_callable"]

HandlerFunction = Callable[..., Any]

_PLAIN = (Any, object, inspect.Parameter.empty, dict, list)


def is_async_callable(function: object) -> bool:
    """True for an `async def` function or method, or an object with an async `__call__`."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 -- callable objects with async __call__
    )


async def call_user(
    function: Callable[..., Any],
    *args: Any,
    limiter: anyio.CapacityLimiter,
    is_async: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Call user code by the one rule: async on the loop, plain in a thread under `limiter`.

    A plain callable that returns an awaitable (a lambda wrapping a coroutine function, say)
    gets that awaitable awaited on the loop. `is_async` skips the inspection when the caller
    already knows (handlers are inspected once, at registration).
    """
    if is_async if is_async is not None else is_async_callable(function):
        return await function(*args, **kwargs)
    outcome = await anyio.to_thread.run_sync(
        functools.partial(function, *args, **kwargs), limiter=limiter
    )
    return await outcome if inspect.isawaitable(outcome) else outcome


@dataclass(frozen=True, slots=True)
class Handler:
    """A user function made uniform: `await handler.run(data, metadata)`."""

    function: HandlerFunction
    payload_type: Any
    wants_metadata: bool
    metadata_keyword: bool
    is_async: bool
    request_format: dict[str, Any] | None
    response_format: dict[str, Any] | None

    async def run(
        self,
        data: Raw,
        metadata: Raw | None,
        limiter: anyio.CapacityLimiter,
        refs: Callable[[Raw, Any], Any] | None = None,
    ) -> Any:
        """Decode the payload as the function asks, call it, and return what it returned.

        `refs(raw, value)` makes the channel refs in the decoded payload live (the worker's
        `channels.channel_resolver`); a handler that asked for `Raw` gets the bytes as
        they came."""
        payload_type = self.payload_type
        # Untyped handlers (the common case) take the decoded JSON as it is.
        if payload_type is Any:
            payload = decode_value(data)
            if refs is not None:
                payload = refs(data, payload)
        else:
            payload = _decode_payload(data, payload_type, refs)
        args: tuple[Any, ...] = (payload,)
        kwargs: dict[str, Any] = {}
        if self.wants_metadata:
            args += (decode_value(metadata) if metadata is not None else None,)
        elif self.metadata_keyword:
            kwargs["metadata"] = decode_value(metadata) if metadata is not None else None
        if self.is_async:  # `call_user`'s first case, without its frame: every invocation
            return await self.function(*args, **kwargs)
        return await call_user(
            self.function, *args, limiter=limiter, is_async=self.is_async, **kwargs
        )


def _decode_payload(data: Raw, payload_type: Any, refs: Callable[[Raw, Any], Any] | None) -> Any:
    if payload_type is Raw:
        return data  # the handler asked for the payload as it came, undecoded
    value = decode_value(data)
    if refs is not None:  # before converting: a Struct field may be typed ChannelReader
        value = refs(data, value)
    if payload_type in _PLAIN:
        return value
    if isinstance(value, dict) and CALLER_WORKER_ID_KEY in value:
        # The engine adds the caller's id to object payloads (spec §15.8); a typed
        # handler did not ask for it, and `dict[str, int]` would reject it.
        del value[CALLER_WORKER_ID_KEY]
    return msgspec.convert(value, payload_type, strict=False)


def _schema(annotation: Any) -> dict[str, Any] | None:
    """A JSON Schema for a typed annotation; None for untyped or plain-JSON ones."""
    if annotation in _PLAIN or annotation is None or annotation is type(None):
        return None
    try:
        return msgspec.json.schema(annotation, schema_hook=_channel_end_schema)
    except (TypeError, ValueError):
        return None


def _channel_end_schema(kind: type) -> dict[str, Any]:
    """A channel end in a typed payload (`ApiRequest.request_body`, a `ChannelReader`
    field) travels as its ref, so that is its schema."""
    if isinstance(kind, type) and issubclass(kind, ChannelEndpoint):
        _, definitions = msgspec.json.schema_components([StreamChannelRef])
        ref_schema: dict[str, Any] = definitions[StreamChannelRef.__name__]
        return ref_schema
    raise NotImplementedError(kind)


def adapt_handler(function: HandlerFunction) -> Handler:
    """Inspect a user function once, at registration, so each invocation costs nothing extra.

    Raises TypeError for a function that cannot take a payload.
    """
    signature = inspect.signature(function)
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    if not positional and not varargs:
        raise TypeError(f"{function!r} must accept the payload as its first argument")
    try:
        hints = typing.get_type_hints(function)
    except (NameError, TypeError):
        hints = {}
    payload_type = hints.get(positional[0].name, Any) if positional else Any
    returns = hints.get("return", Any)
    is_async = is_async_callable(function)
    return Handler(
        function=function,
        payload_type=payload_type,
        wants_metadata=len(positional) >= 2 or varargs,
        metadata_keyword=any(
            p.kind is p.KEYWORD_ONLY and p.name == "metadata" for p in signature.parameters.values()
        ),
        is_async=is_async,
        request_format=_schema(payload_type),
        response_format=_schema(returns),
    )
