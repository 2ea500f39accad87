"""`anyiii.get_context()`: what the running handler is serving, from anywhere inside it.

The worker sets a context variable around each handler run. Context variables follow the
handler into everything it starts: child tasks (anyio copies the context when it spawns)
and worker threads (`anyio.to_thread.run_sync` runs the function in a copy), so helpers
deep inside a handler need no extra parameters. Outside a handler `get_context()` raises
`NoInvocationContext`.

The trace fields are the W3C `traceparent` and `baggage` the invocation arrived with;
calls the handler makes carry the same trace on (a new span id under the same trace id,
and the same baggage), so a request can be followed across workers.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, MutableMapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, Final, Protocol

from msgspec import Raw

from .._errors import AnyiiiError, NoWorker
from .._protocol.frames import decode_value

__all__ = [
    "CallingWorker",
    "Context",
    "NoInvocationContext",
    "TraceContext",
    "current_worker",
    "enter_context",
    "enter_worker_block",
    "get_context",
    "leave_context",
    "leave_worker_block",
    "outgoing_trace",
    "require_worker",
    "trace_context_of",
]

_TRACEPARENT: Final = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE: Final = "0" * 32
_INVALID_SPAN: Final = "0" * 16

handler_logger = logging.getLogger("anyiii.handler")


class CallingWorker(Protocol):
    """The worker running a handler, as the handler sees it through `Context.worker`.

    It is the `anyiii.Worker` itself; this names what a handler typically uses of it
    (calls and identity), so this module does not depend on the worker's class.
    """

    @property
    def name(self) -> str: ...

    @property
    def worker_id(self) -> str | None: ...

    async def trigger_async(self, request: Any) -> Any: ...

    async def trigger_void_batch(self, requests: Sequence[Any]) -> None: ...

    def trigger(self, request: Any) -> Any: ...


class NoInvocationContext(AnyiiiError, RuntimeError):
    """`get_context()` was called outside a function handler."""


class TraceContext:
    """The W3C trace context of an invocation: `traceparent` and `baggage` as received.

    `trace_id`, `span_id` and `sampled` are read from `traceparent`; they are None when it
    is absent or malformed (a bad header never fails the invocation).
    """

    __slots__ = ("baggage", "sampled", "span_id", "trace_id", "traceparent")

    def __init__(self, traceparent: str | None, baggage: str | None) -> None:
        self.traceparent = traceparent
        self.baggage = baggage
        self.trace_id: str | None = None
        self.span_id: str | None = None
        self.sampled: bool | None = None
        match = _TRACEPARENT.match(traceparent.strip().lower()) if traceparent else None
        if match is not None:
            version, trace_id, span_id, flags = match.groups()
            if version != "ff" and trace_id != _INVALID_TRACE and span_id != _INVALID_SPAN:
                self.trace_id, self.span_id = trace_id, span_id
                self.sampled = bool(int(flags, 16) & 1)

    def child_traceparent(self) -> str | None:
        """A traceparent for a call made under this context: same trace, a new span id."""
        if self.trace_id is None:
            return None
        flags = "01" if self.sampled else "00"
        return f"00-{self.trace_id}-{secrets.token_hex(8)}-{flags}"

    def __repr__(self) -> str:
        return f"TraceContext(traceparent={self.traceparent!r}, baggage={self.baggage!r})"


_NO_TRACE: Final = TraceContext(None, None)
"""No trace headers. Shared: nothing changes a TraceContext after it is made."""


def trace_context_of(traceparent: str | None, baggage: str | None) -> TraceContext:
    """The trace context for these headers; one shared instance when both are absent (the
    common case without tracing: nothing to parse, nothing to allocate per invocation)."""
    if traceparent is None and baggage is None:
        return _NO_TRACE
    return TraceContext(traceparent, baggage)


class _InvocationLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the invocation's ids to every record, keeping any `extra` the caller passes."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class Context:
    """What a handler is serving: see `anyiii.get_context()`.

    `function_id`, `invocation_id` (None for a fire-and-forget call), `metadata` (the
    caller's or the trigger's, decoded), `trace` (a `TraceContext`), `worker` (the
    `anyiii.Worker` running the handler) and `logger` (a `logging` logger adapter whose
    records carry `function_id`, `invocation_id`, `trace_id` and `span_id` attributes).
    """

    __slots__ = (
        "_logger",
        "_metadata",
        "_raw_metadata",
        "function_id",
        "invocation_id",
        "trace",
        "worker",
    )

    def __init__(
        self,
        worker: CallingWorker,
        function_id: str,
        invocation_id: str | None,
        metadata: Raw | None,
        trace: TraceContext,
    ) -> None:
        self.worker = worker
        self.function_id = function_id
        self.invocation_id = invocation_id
        self.trace = trace
        self._raw_metadata = metadata
        self._metadata: Any = _UNDECODED
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def metadata(self) -> Any:
        """The invocation's metadata as plain Python values (None when there was none)."""
        if self._metadata is _UNDECODED:
            raw = self._raw_metadata
            self._metadata = decode_value(raw) if raw is not None else None
        return self._metadata

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger (`anyiii.handler`) whose records carry this invocation's ids."""
        if self._logger is None:
            self._logger = _InvocationLogger(
                handler_logger,
                {
                    "function_id": self.function_id,
                    "invocation_id": self.invocation_id,
                    "trace_id": self.trace.trace_id,
                    "span_id": self.trace.span_id,
                },
            )
        return self._logger

    def __repr__(self) -> str:
        return f"Context(function_id={self.function_id!r}, invocation_id={self.invocation_id!r})"


_UNDECODED: Final = object()

_current: ContextVar[Context | None] = ContextVar("anyiii_invocation", default=None)


def get_context() -> Context:
    """The context of the handler this code runs in (also in its tasks and threads).

    Raises `NoInvocationContext` outside a handler.
    """
    context = _current.get()
    if context is None:
        raise NoInvocationContext(
            "get_context() is only available while a function handler runs "
            "(in the handler, or in tasks and threads it started)"
        )
    return context


enter_context: Final[Callable[[Context], Token[Context | None]]] = _current.set
"""Make a context current for the handler about to run; returns the token to leave it.
(The context variable's own method: every invocation enters and leaves one.)"""

leave_context: Final[Callable[[Token[Context | None]], None]] = _current.reset
"""Undo `enter_context` with its token."""


_block_worker: ContextVar[CallingWorker | None] = ContextVar("anyiii_block_worker", default=None)


def enter_worker_block(worker: CallingWorker) -> Token[CallingWorker | None]:
    """Make `worker` the one calls use in this `async with anyiii.connect()` block."""
    return _block_worker.set(worker)


def leave_worker_block(token: Token[CallingWorker | None]) -> None:
    """Undo `enter_worker_block` (the block ends)."""
    _block_worker.reset(token)


def current_worker() -> CallingWorker | None:
    """The worker a call made here goes through: inside a handler, the worker running it;
    else the innermost `async with anyiii.connect()` (or `Client`) block around this code;
    else None. Tasks and threads started here inherit it, as context variables do."""
    context = _current.get()
    if context is not None:
        return context.worker
    return _block_worker.get()


def require_worker() -> CallingWorker:
    """`current_worker()`, or a `NoWorker` that says how to get one."""
    worker = current_worker()
    if worker is None:
        raise NoWorker(
            "there is no iii connection here to call through: make the call inside "
            "`async with anyiii.connect(...)` or `async with anyiii.Client(...)`, or inside "
            "a function a worker is serving, or pass the worker explicitly"
        )
    return worker


def outgoing_trace() -> tuple[str | None, str | None]:
    """The traceparent and baggage a call made here should carry (None, None outside a
    handler, or when the inbound invocation had no valid trace)."""
    context = _current.get()
    if context is None:
        return None, None
    return context.trace.child_traceparent(), context.trace.baggage
