"""`Registry`: a declarative set of functions, independent of any connection.

Declare functions once (`@registry.function`), serve them on any number of workers
(`anyiii.connect(..., registry=registry)` or `worker.serve(registry)`, again after every
reconnect), and call them from anywhere through their handles. The default function id is
`"<registry name>::<qualified name>"`, with `<locals>.` left out of the qualified name
(`"billing::charge"`, `"billing::Invoices.total"`).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar, overload

import msgspec

from .._worker import Worker
from .batch import Batch
from .functions import AsyncFunction
from .index import remember
from .primitive import Input, Output, PrimitiveFunction
from .status import RetryPolicy

__all__ = [
    "Registry",
    "default_registry",
    "function",
    "set_default_registry",
]

P = ParamSpec("P")
T = TypeVar("T")
H = TypeVar("H", bound=AsyncFunction[Any, Any])


def _default_id(registry_name: str, implementation: Callable[..., Any]) -> str:
    qualified = implementation.__qualname__.replace("<locals>.", "")
    return f"{registry_name}::{qualified}"


class Registry:
    """A named, declarative set of functions (see the module docstring).

    `namespace` is where its functions are registered and called (default: the serving
    worker's namespace for serving, the engine's default namespace for calls). `retry` is
    the default retry policy of calls to its functions (None: no retries).
    """

    def __init__(
        self, name: str, *, namespace: str | None = None, retry: RetryPolicy | None = None
    ) -> None:
        if not name or "::" in name:
            raise ValueError(f"a registry name must be non-empty without '::', not {name!r}")
        self.name = name
        self.namespace = namespace
        self.retry = retry
        """The retry policy of calls to functions declared without one of their own."""
        self._functions: dict[str, AsyncFunction[Any, Any]] = {}
        self._served: dict[str, Callable[[Any], Any]] = {}
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()
        remember(self)

    def __repr__(self) -> str:
        return f"Registry({self.name!r})"

    @property
    def functions(self) -> Mapping[str, AsyncFunction[Any, Any]]:
        """Every function of the registry by id (served and remote), read-only."""
        return MappingProxyType(self._functions)

    # --- declaring ------------------------------------------------------------------------

    @overload
    def function(self, implementation: Callable[P, Awaitable[T]], /) -> AsyncFunction[P, T]: ...

    @overload
    def function(self, implementation: Callable[P, T], /) -> AsyncFunction[P, T]: ...

    @overload
    def function(
        self,
        *,
        id: str | None = None,
        description: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> _Decorator: ...

    def function(
        self,
        implementation: Callable[..., Any] | None = None,
        *,
        id: str | None = None,
        description: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Declare a function served by this registry: bare (`@registry.function`) or with
        options (`@registry.function(id=..., description=..., retry=...)`). Returns its
        handle. `retry` overrides the registry's retry policy for calls to it.

        Plain `def` functions run in a worker thread when served, like plain handlers.
        """
        if implementation is None:
            return _Decorator(self, id, description, retry)
        return self._declare(implementation, id, description, retry)

    def _declare(
        self,
        implementation: Callable[..., Any],
        id: str | None,
        description: str | None,
        retry: RetryPolicy | None = None,
    ) -> AsyncFunction[Any, Any]:
        return self._add(
            AsyncFunction(
                self,
                id or _default_id(self.name, implementation),
                implementation,
                description=description or (implementation.__doc__ or "").strip() or None,
                retry=retry or self.retry,
            )
        )

    def remote(self, *, id: str) -> _RemoteDecorator:
        """Declare a function served elsewhere from a typed stub, for typed calls:

            @registry.remote(id="billing::charge")
            async def charge(order: Order) -> Receipt: ...

        The stub's body never runs and the function is never served from here.
        """
        return _RemoteDecorator(self, id)

    @overload
    def primitive_function(
        self, implementation: Callable[[Input], Awaitable[Output]], /
    ) -> PrimitiveFunction: ...

    @overload
    def primitive_function(
        self, *, id: str | None = None
    ) -> Callable[[Callable[[Input], Awaitable[Output]]], PrimitiveFunction]: ...

    def primitive_function(
        self,
        implementation: Callable[[Input], Awaitable[Output]] | None = None,
        *,
        id: str | None = None,
    ) -> Any:
        """Declare a function on raw payloads: it gets an `Input` (the payload as
        `msgspec.Raw`, undecoded, and the invocation's ids, metadata and trace) and returns
        an `Output` (`Output.value`, `Output.raw` or `Output.error`)."""

        def declare(implementation: Callable[[Input], Awaitable[Output]]) -> PrimitiveFunction:
            function_id = id or _default_id(self.name, implementation)
            return self._add(PrimitiveFunction(self, function_id, implementation))

        return declare if implementation is None else declare(implementation)

    def _add(self, handle: H) -> H:
        if handle.name in self._functions:
            raise ValueError(f"the registry {self.name!r} already has a function {handle.name!r}")
        self._functions[handle.name] = handle
        if not handle.remote:
            served = handle.handler()
            self._served[handle.name] = served
            for worker in list(self._workers):
                self._register(worker, handle, served)
        return handle

    def batch(self) -> Batch:
        """A new `Batch` of calls (sent through the worker current when dispatched)."""
        return Batch()

    # --- serving --------------------------------------------------------------------------

    def serve_on(self, worker: Worker) -> None:
        """Register every served function on `worker` (the worker replays them after every
        reconnect); functions declared later are registered on it too."""
        self._workers.add(worker)
        for function_id, served in self._served.items():
            self._register(worker, self._functions[function_id], served)

    def _register(
        self, worker: Worker, handle: AsyncFunction[Any, Any], served: Callable[[Any], Any]
    ) -> None:
        kinds = handle.signature.types
        request_format = _schema(kinds[0]) if len(kinds) == 1 else None
        response_format = _schema(handle.signature.result_type)
        worker.register_function(
            handle.name,
            served,
            description=handle.description,
            request_format=request_format,
            response_format=response_format,
        )

    def close(self) -> None:
        """Stop serving this registry's functions on every worker serving it."""
        for worker in list(self._workers):
            for function_id in self._served:
                worker.unregister_function(function_id)
        self._workers = weakref.WeakSet()


def _schema(annotation: Any) -> Any:
    if annotation in (Any, object, None, type(None), dict, list, Input):
        return None
    try:
        return msgspec.json.schema(annotation)
    except (TypeError, ValueError):
        return None


class _Decorator:
    """`@registry.function(id=..., description=...)`."""

    def __init__(
        self,
        registry: Registry,
        id: str | None,
        description: str | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._registry, self._id, self._description = registry, id, description
        self._retry = retry

    @overload
    def __call__(self, implementation: Callable[P, Awaitable[T]], /) -> AsyncFunction[P, T]: ...

    @overload
    def __call__(self, implementation: Callable[P, T], /) -> AsyncFunction[P, T]: ...

    def __call__(self, implementation: Callable[..., Any], /) -> Any:
        return self._registry._declare(implementation, self._id, self._description, self._retry)


class _RemoteDecorator:
    """`@registry.remote(id=...)`."""

    def __init__(self, registry: Registry, id: str) -> None:
        self._registry, self._id = registry, id

    @overload
    def __call__(self, stub: Callable[P, Awaitable[T]], /) -> AsyncFunction[P, T]: ...

    @overload
    def __call__(self, stub: Callable[P, T], /) -> AsyncFunction[P, T]: ...

    def __call__(self, stub: Callable[..., Any], /) -> Any:
        registry = self._registry
        return registry._add(
            AsyncFunction(registry, self._id, None, stub=stub, retry=registry.retry)
        )


_default: Registry | None = None


def default_registry() -> Registry:
    """The process's default registry, made on first use: named `"default"`, in the
    namespace `$III_NAMESPACE` if set. Reading the environment never fails, so importing a
    module that uses `@anyiii.function` never does either."""
    global _default
    if _default is None:
        _default = Registry("default", namespace=os.environ.get("III_NAMESPACE") or None)
    return _default


def set_default_registry(registry: Registry) -> None:
    """Make `registry` the one `@anyiii.function` declares functions in."""
    global _default
    _default = registry


@overload
def function(implementation: Callable[P, Awaitable[T]], /) -> AsyncFunction[P, T]: ...


@overload
def function(implementation: Callable[P, T], /) -> AsyncFunction[P, T]: ...


@overload
def function(*, id: str | None = None, description: str | None = None) -> _Decorator: ...


def function(
    implementation: Callable[..., Any] | None = None,
    *,
    id: str | None = None,
    description: str | None = None,
) -> Any:
    """`@anyiii.function`: `default_registry().function`."""
    if implementation is None:
        return _Decorator(default_registry(), id, description)
    return default_registry()._declare(implementation, id, description)
