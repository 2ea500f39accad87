"""Primitive functions: raw payloads in, raw or typed results out.

`@registry.primitive_function async def f(input: Input) -> Output` skips argument binding
and result conversion: `input.payload` is the call's payload as `msgspec.Raw` (undecoded
JSON), so a function that only forwards or inspects a payload pays for no decoding.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import Raw

from .._worker import TraceContext, get_context
from .functions import AsyncFunction

__all__ = ["Input", "Output", "OutputError", "PrimitiveFunction"]

logger = logging.getLogger("anyiii.functions")


class Input(msgspec.Struct, frozen=True, kw_only=True):
    """What a primitive function gets: the raw payload and the invocation's identity.

    The payload is exactly what arrived: an object payload from another worker carries the
    key `_caller_worker_id` the engine adds (spec §15.8).
    """

    payload: Raw
    function_id: str
    invocation_id: str | None
    metadata: Any
    trace: TraceContext

    def value(self) -> Any:
        """The payload decoded as plain JSON values."""
        return msgspec.json.decode(self.payload)


class OutputError(Exception):
    """The error an `Output.error` answers with; its status (or code) is the wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.iii_error_code = code


class Output:
    """What a primitive function returns: a value, raw JSON, or an error."""

    __slots__ = ("_error", "_result")

    def __init__(self, result: Any, error: OutputError | None = None) -> None:
        self._result = result
        self._error = error

    @classmethod
    def value(cls, value: Any) -> Output:
        """Answer with `value` (encoded as JSON by msgspec)."""
        return cls(value)

    @classmethod
    def raw(cls, payload: bytes) -> Output:
        """Answer with `payload`, which must already be JSON; sent as it is."""
        return cls(Raw(payload))

    @classmethod
    def error(cls, status: Any, message: str) -> Output:
        """Answer with an error: `status` (an `anyiii.Status` or a code string) is the wire
        error code."""
        code = status if isinstance(status, str) else getattr(status, "name", str(status))
        return cls(None, OutputError(code, message))

    def result(self) -> Any:
        """The answer: the value, or the error raised."""
        if self._error is not None:
            raise self._error
        return self._result


class PrimitiveFunction(AsyncFunction[[Input], Any]):
    """The handle of a primitive function: called like any function handle (its payload is
    the single argument), served with the payload kept raw."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signature.result_type = Any  # callers get the answer as plain JSON values

    def handler(self) -> Callable[[Any], Any]:
        """The worker handler: builds the `Input`, runs the function, unpacks its `Output`."""
        implementation = self.__wrapped__
        assert implementation is not None
        return _primitive_handler(implementation)


def _primitive_handler(
    implementation: Callable[[Input], Awaitable[Output]],
) -> Callable[[Raw], Awaitable[Any]]:
    """The worker handler serving a primitive function (the payload kept raw)."""

    async def serve(payload: Raw) -> Any:
        context = get_context()
        request = Input(
            payload=payload,
            function_id=context.function_id,
            invocation_id=context.invocation_id,
            metadata=context.metadata,
            trace=context.trace,
        )
        try:
            output = await implementation(request)
        except Exception:
            # A primitive function should answer with Output.error; one that raises is
            # answered `invocation_failed` by the worker all the same, and logged here.
            logger.exception("primitive function %s raised", context.function_id)
            raise
        if not isinstance(output, Output):
            raise TypeError(f"a primitive function must return an Output, not {output!r}")
        return output.result()

    return serve
