"""Custom stream storage: `IStream` and `worker.create_stream(name, impl)` (spec §10.4).

The real engine keeps stream items (`stream::get`, `stream::set`, ... on a stream name,
group id and item id) in its own store, but a worker may take over the storage of one
stream by registering the functions `stream::get(<name>)`, `stream::set(<name>)`,
`stream::delete(<name>)`, `stream::list(<name>)` and `stream::list_groups(<name>)`; the
engine then calls those for that stream. `create_stream` registers the five for an
`IStream` implementation (as the official SDK does, `update` is left to the engine).
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from .handlers import is_async_callable

__all__ = [
    "IStream",
    "StreamDeleteInput",
    "StreamDeleteResult",
    "StreamGetInput",
    "StreamHandle",
    "StreamListGroupsInput",
    "StreamListInput",
    "StreamSetInput",
    "StreamSetResult",
    "register_stream",
]


class _Registration(Protocol):
    """A registered function, as a stream handle needs it."""

    @property
    def id(self) -> str: ...

    async def unregister(self) -> None: ...


class FunctionRegistrar(Protocol):
    """What `register_stream` needs from a worker: registering one function."""

    def register_function(
        self,
        function_id: str,
        handler: Callable[..., Any],
        *,
        description: str | None = None,
        request_format: Any = None,
    ) -> _Registration: ...


TData = TypeVar("TData")

OPERATIONS = ("get", "set", "delete", "list", "list_groups")


class _ItemAddress(msgspec.Struct, frozen=True, kw_only=True):
    """Where one item lives: stream, group, item."""

    stream_name: str
    group_id: str
    item_id: str


class StreamGetInput(_ItemAddress, frozen=True, kw_only=True):
    """`stream::get` input: one item (`stream_name`, `group_id`, `item_id`)."""


class StreamSetInput(_ItemAddress, frozen=True, kw_only=True):
    """`stream::set` input: one item (`stream_name`, `group_id`, `item_id`) and its new
    value, `data`."""

    data: Any


class StreamDeleteInput(_ItemAddress, frozen=True, kw_only=True):
    """`stream::delete` input: one item (`stream_name`, `group_id`, `item_id`)."""


class StreamListInput(msgspec.Struct, frozen=True, kw_only=True):
    """`stream::list` input: every item of one group."""

    stream_name: str
    group_id: str


class StreamListGroupsInput(msgspec.Struct, frozen=True, kw_only=True):
    """`stream::list_groups` input: the groups of one stream."""

    stream_name: str


class StreamSetResult(msgspec.Struct, Generic[TData], frozen=True, kw_only=True):
    """What `set` returns: the value before (None if the item is new) and after."""

    old_value: TData | None = None
    new_value: TData


class StreamDeleteResult(msgspec.Struct, frozen=True, kw_only=True):
    """What `delete` returns: the value the item had (None if it did not exist)."""

    old_value: Any = None


class IStream(ABC, Generic[TData]):
    """Storage for one stream. Methods may be async or plain (plain ones run in a worker
    thread, like plain function handlers, so they never block the event loop)."""

    @abstractmethod
    async def get(self, input: StreamGetInput) -> TData | None:
        """The item's value, or None."""

    @abstractmethod
    async def set(self, input: StreamSetInput) -> StreamSetResult[TData] | None:
        """Store `input.data` as the item's value."""

    @abstractmethod
    async def delete(self, input: StreamDeleteInput) -> StreamDeleteResult:
        """Remove the item."""

    @abstractmethod
    async def list(self, input: StreamListInput) -> builtins.list[TData]:
        """Every item value of the group."""

    @abstractmethod
    async def list_groups(self, input: StreamListGroupsInput) -> builtins.list[str]:
        """The group ids of the stream."""


class StreamHandle:
    """The functions registered for one stream: `await handle.unregister()` removes them."""

    def __init__(self, name: str, functions: list[_Registration]) -> None:
        self.name = name
        self.function_ids = [handle.id for handle in functions]
        self._functions = functions

    async def unregister(self) -> None:
        """Stop serving the stream's functions."""
        for handle in self._functions:
            await handle.unregister()

    def __repr__(self) -> str:
        return f"StreamHandle({self.name!r})"


_INPUTS: dict[str, type[msgspec.Struct]] = {
    "get": StreamGetInput,
    "set": StreamSetInput,
    "delete": StreamDeleteInput,
    "list": StreamListInput,
    "list_groups": StreamListGroupsInput,
}


def _operation(impl: Any, name: str, operation: str) -> Any:
    method = getattr(impl, operation, None)
    if not callable(method):
        raise TypeError(f"a stream implementation needs a {operation}(input) method")
    input_type = _INPUTS[operation]

    def request_of(data: Any) -> Any:
        request = msgspec.convert(data, input_type, strict=False)
        if request.stream_name != name:  # type: ignore[attr-defined]
            raise ValueError(
                f"stream::{operation}({name}) was called for stream {request.stream_name!r}"  # type: ignore[attr-defined]
            )
        return request

    async def async_handler(data: Any) -> Any:
        return await method(request_of(data))

    def plain_handler(data: Any) -> Any:
        return method(request_of(data))

    # The handler is async exactly when the method is, so the worker's one rule for plain
    # callables (a worker thread under the limiter) applies to plain stream methods too.
    handler: Callable[[Any], Any] = async_handler if is_async_callable(method) else plain_handler
    handler.__name__ = f"stream_{operation}"
    return handler


def register_stream(worker: FunctionRegistrar, name: str, impl: Any) -> StreamHandle:
    """Register `stream::<operation>(<name>)` for each operation of `impl`."""
    if not isinstance(name, str) or not name.strip() or "(" in name or ")" in name:
        raise ValueError(f"a stream name must be a non-empty name without parentheses: {name!r}")
    handlers = {operation: _operation(impl, name, operation) for operation in OPERATIONS}
    functions = [
        worker.register_function(
            f"stream::{operation}({name})",
            handler,
            description=f"{operation} for the stream {name!r} (custom storage)",
            request_format=msgspec.json.schema(_INPUTS[operation]),
        )
        for operation, handler in handlers.items()
    ]
    return StreamHandle(name, functions)
