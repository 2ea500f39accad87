"""Function handles: call a registered function like a Python function, from anywhere.

`AsyncFunction[P, T]` is what `@registry.function` returns. `await f(x)` calls `f` through
the engine on the worker current in the context (see `calls.require_worker`) and decodes
the result into `T`; `f.dispatch(x)` fires and forgets; `f.build_call(x)` makes a `Call`
to send later or in a batch. The same handle serves the function: a worker serving the
registry runs the wrapped Python function for every invocation, and a `Reset` raised in it
replaces the invocation with a call to another function, as a loop rather than a stack.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

import anyio
import anyio.to_thread
import msgspec

from .._errors import InvocationError
from .._worker import get_context, is_async_callable
from .calls import Call, DispatchID, Signature, require_worker
from .index import FunctionSet, lookup
from .status import (
    RetryPolicy,
    Status,
    error_code,
    status_for_error,
    status_for_output,
    status_from_code,
)

__all__ = ["AsyncFunction", "BlockingFunction", "Reset"]

logger = logging.getLogger("anyiii.functions")

P = ParamSpec("P")
T = TypeVar("T")


class Reset(Exception):
    """Raised inside a served function: finish this invocation by calling `function(*args,
    **kwargs)` instead; the original caller gets that call's result (a tail call).

    The serving worker runs the chain as a loop, so a function may reset into itself any
    number of times without growing the stack; a function with an implementation here runs
    in place, a remote one is called through the engine.
    """

    def __init__(self, function: AsyncFunction[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(f"reset to {function.name}")
        self.function = function
        self.payload = function.signature.payload(args, kwargs)


class AsyncFunction(Generic[P, T]):
    """A function of a `Registry`: call it (`await f(x)`), dispatch it, or build a call.

    `name` is its function id; `registry` the registry it belongs to; `__wrapped__` the
    plain Python function (None for a remote stub), to unit-test it without an engine.
    """

    def __init__(
        self,
        registry: FunctionSet,
        function_id: str,
        implementation: Callable[..., Any] | None,
        *,
        stub: Callable[..., Any] | None = None,
        description: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = function_id
        self.registry = registry
        self.description = description
        self.retry = retry
        """Tries a failed call again when its error is temporary (None: never)."""
        self.signature = Signature(implementation or stub or (lambda: None))
        functools.update_wrapper(self, implementation or stub or self._no_stub)
        # After update_wrapper, which would point it at a stub: None means "remote".
        self.__wrapped__ = implementation

    @staticmethod
    def _no_stub() -> None:  # pragma: no cover - only lends its name when nothing else does
        pass

    @property
    def remote(self) -> bool:
        """True for a stub of a function served elsewhere (never served from here)."""
        return self.__wrapped__ is None

    def __repr__(self) -> str:
        return f"AsyncFunction({self.name!r})"

    def __reduce__(self) -> tuple[Callable[[str, str], Any], tuple[str, str]]:
        """Pickled by reference: the registry's name and the function id."""
        return lookup, (self.registry.name, self.name)

    # --- calling --------------------------------------------------------------------------

    def build_call(self, *args: P.args, **kwargs: P.kwargs) -> Call:
        """A `Call` of this function with these arguments, to send later."""
        return self.call_with(self.signature.payload(args, kwargs))

    def call_with(self, payload: Any) -> Call:
        """A `Call` of this function with an already-bound payload."""
        return Call(function_id=self.name, payload=payload, namespace=self.registry.namespace)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the function through the engine and return its result as `T`.

        A failure raises `InvocationError` with `.status` and `.temporary` set from its
        code; with a `retry` policy, temporary failures are tried again first.
        """
        request = self.build_call(*args, **kwargs).request()
        worker = require_worker()
        attempt = 1
        while True:
            try:
                result = await worker.trigger_async(request)
            except InvocationError as exc:
                classify(exc)
                if self.retry is None or not self.retry.should_retry(exc.code, attempt):
                    raise
                await anyio.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            converted: T = self.signature.result(result)
            return converted

    async def dispatch(self, *args: P.args, **kwargs: P.kwargs) -> DispatchID:
        """Fire and forget: send the call (the void action) and return its dispatch id."""
        dispatch_id, request = self.build_call(*args, **kwargs).dispatch_request()
        await require_worker().trigger_async(request)
        return dispatch_id

    async def enqueue(self, queue: str, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Hand the call to the engine's queue `queue` (the enqueue action); returns the
        engine's receipt."""
        call = msgspec.structs.replace(
            self.build_call(*args, **kwargs), action="enqueue", queue=queue
        )
        return await require_worker().trigger_async(call.request())

    # --- serving --------------------------------------------------------------------------

    def handler(self) -> Callable[[Any], Any]:
        """The handler a worker registers to serve this function: async for an async
        implementation, plain for a plain one (which the worker then runs in a thread)."""
        implementation = self.__wrapped__
        if implementation is None:
            raise TypeError(f"{self.name} is a remote stub: it is served elsewhere")
        if is_async_callable(implementation):

            async def serve(payload: Any) -> Any:
                return await _run_chain(self, payload)

            return serve

        def serve_plain(payload: Any) -> Any:
            return _run_chain_blocking(self, payload)

        return serve_plain


def classify(error: InvocationError) -> None:
    """Set `error.status` and `error.temporary` from its code."""
    status = status_from_code(error.code)
    error.status = status
    error.temporary = status is not None and status.temporary


class StatusError(Exception):
    """A served function's outcome classified as a failure: its status name is the code."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.iii_error_code = error_code(status)


def _classified(exc: Exception) -> Exception:
    """`exc` marked with the wire code of its status, if it has one (see `status.py`)."""
    status = status_for_error(exc)
    if status is None:
        return exc
    try:
        exc.iii_error_code = error_code(status)  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__
        return StatusError(status, str(exc) or type(exc).__name__)
    return exc


def _checked_output(result: Any) -> Any:
    """`result`, unless its registered output type says it is a failure."""
    status = status_for_output(result)
    if status is not Status.OK:
        raise StatusError(status, f"the function's result has status {status.name}")
    return result


async def _run_chain(first: AsyncFunction[Any, Any], payload: Any) -> Any:
    """Run `first` on `payload`, following every `Reset` in a loop (no stack growth)."""
    target = first
    while True:
        implementation = target.__wrapped__
        if implementation is None:  # a remote function: the engine runs the rest
            return await get_context().worker.trigger_async(target.call_with(payload).request())
        args, kwargs = target.signature.arguments(payload)
        try:
            if is_async_callable(implementation):
                return _checked_output(await implementation(*args, **kwargs))
            return _checked_output(
                await anyio.to_thread.run_sync(functools.partial(implementation, *args, **kwargs))
            )
        except Reset as reset:
            target, payload = reset.function, reset.payload
        except Exception as exc:
            raise _classified(exc) from None


def _run_chain_blocking(first: AsyncFunction[Any, Any], payload: Any) -> Any:
    """`_run_chain` for a plain function, in the worker thread it runs in: plain targets
    run in place, async or remote ones through the engine (the worker's blocking call)."""
    target = first
    while True:
        implementation = target.__wrapped__
        if implementation is None or is_async_callable(implementation):
            return get_context().worker.trigger(target.call_with(payload).request())
        args, kwargs = target.signature.arguments(payload)
        try:
            return _checked_output(implementation(*args, **kwargs))
        except Reset as reset:
            target, payload = reset.function, reset.payload
        except Exception as exc:
            raise _classified(exc) from None


class BlockingCaller(Protocol):
    """Anything with a blocking `trigger(request)`: an `anyiii.BlockingWorker` (from
    `anyiii.register_worker`), or a `Worker` used from a thread."""

    def trigger(self, request: Any) -> Any: ...


class BlockingFunction(Generic[P, T]):
    """An `AsyncFunction` made blocking, for plain scripts and threads.

    Calls go through `worker` when given (for a plain script, the `BlockingWorker` of
    `anyiii.register_worker(...)`, whose loop runs in its own thread), else through the
    worker current where the call is made (a handler's worker thread, or a thread started
    inside `anyiii.connect()`). On an event loop's own thread it raises instead of blocking
    the loop it would wait for.
    """

    def __init__(self, function: AsyncFunction[P, T], worker: BlockingCaller | None = None):
        self.function = function
        self.name = function.name
        self._worker = worker

    def _caller(self) -> BlockingCaller:
        return self._worker if self._worker is not None else require_worker()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call and wait for the result."""
        result = self._caller().trigger(self.function.build_call(*args, **kwargs).request())
        converted: T = self.function.signature.result(result)
        return converted

    def dispatch(self, *args: P.args, **kwargs: P.kwargs) -> DispatchID:
        """Fire and forget; returns the dispatch id."""
        dispatch_id, request = self.function.build_call(*args, **kwargs).dispatch_request()
        self._caller().trigger(request)
        return dispatch_id

    def build_call(self, *args: P.args, **kwargs: P.kwargs) -> Call:
        """A `Call` of the function with these arguments."""
        return self.function.build_call(*args, **kwargs)
