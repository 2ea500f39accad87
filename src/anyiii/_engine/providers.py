"""Trigger types the engine provides itself: `http`, and the two discovery types.

Their ids (`HTTP_TRIGGER`, `FUNCTIONS_AVAILABLE`, `WORKERS_AVAILABLE`) are in
`_protocol.codes`; the router registers these providers under them.

A provider accepts or refuses a binding synchronously (`register` returns an error body to
refuse) and forgets it on `unregister`. Bindings are `registertrigger` frames; their ids are
globally unique, so providers key everything by binding id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Protocol, TypeGuard

import msgspec

from .._protocol.codes import HTTP_TRIGGER, TRIGGER_REGISTRATION_FAILED
from .._protocol.frames import ErrorBody, RegisterTrigger, decode_value

__all__ = [
    "HTTP_METHODS",
    "HttpRoute",
    "HttpRoutes",
    "Subscribers",
    "TriggerProvider",
]

HTTP_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class TriggerProvider(Protocol):
    """An in-engine trigger type."""

    description: str

    def register(self, binding: RegisterTrigger) -> ErrorBody | None:
        """Accept a binding (None) or refuse it (the error to report)."""

    def unregister(self, binding: RegisterTrigger) -> None:
        """Forget a binding; unknown ids are ignored."""


class Subscribers:
    """A trigger type whose bindings are simply a list of subscribers to call on an event."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._bindings: dict[str, RegisterTrigger] = {}

    def register(self, binding: RegisterTrigger) -> ErrorBody | None:
        self._bindings[binding.id] = binding
        return None

    def unregister(self, binding: RegisterTrigger) -> None:
        self._bindings.pop(binding.id, None)

    def __iter__(self) -> Iterator[RegisterTrigger]:
        return iter(tuple(self._bindings.values()))

    def __len__(self) -> int:
        return len(self._bindings)


class HttpRoute(msgspec.Struct, frozen=True):
    """One bound route: `pattern` as written in `api_path` (without the leading slash),
    and the functions its binding asks to run before the handler (spec §10.1)."""

    method: str
    pattern: str
    segments: tuple[str, ...]
    binding: RegisterTrigger
    condition_function_id: str | None = None
    middleware_function_ids: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[str, ...]:
        """The pattern with parameter names erased: two routes of one shape conflict."""
        return tuple(":" if s.startswith(":") else s for s in self.segments)


def _split(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.strip("/").split("/") if segment)


def _refuse(message: str) -> ErrorBody:
    return ErrorBody(code=TRIGGER_REGISTRATION_FAILED, message=message)


def _function_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _gates(config: dict[str, object]) -> tuple[str | None, tuple[str, ...]] | ErrorBody:
    """The binding's `condition_function_id` and `middleware_function_ids` (null or absent:
    none). A malformed one refuses the binding: ignoring it would let every request through
    a guard its author believes is there. (The real engine drops what it cannot read.)"""
    condition = config.get("condition_function_id")
    if condition is not None and not _function_id(condition):
        return _refuse(f"condition_function_id must be a non-empty string, not {condition!r}")
    middleware = config.get("middleware_function_ids")
    if middleware is None:
        middleware = []
    if not isinstance(middleware, list) or not all(_function_id(m) for m in middleware):
        return _refuse(
            f"middleware_function_ids must be a list of non-empty strings, not {middleware!r}"
        )
    return condition, tuple(middleware)


class HttpRoutes:
    """The `http` trigger type's route table (spec §10.1, §16.4).

    Routes are keyed by method and shape. A later binding of the same method and pattern
    replaces the route; the same shape with different parameter names is refused; removing
    a binding removes its route only if that binding still owns it.

    `middleware` lists the engine-wide middleware function ids, run before every route's
    own (the real engine keeps them with its route table too: `iii-http`'s `middleware`).
    """

    description = "HTTP requests on the engine's REST port"

    def __init__(self, middleware: tuple[str, ...] = ()) -> None:
        self._routes: dict[tuple[str, tuple[str, ...]], HttpRoute] = {}
        self.middleware = middleware

    def register(self, binding: RegisterTrigger) -> ErrorBody | None:
        config = decode_value(binding.config)
        if not isinstance(config, dict):
            return _refuse(f"{HTTP_TRIGGER} trigger config must be an object with api_path")
        api_path = config.get("api_path")
        if not isinstance(api_path, str) or not api_path.strip():
            return _refuse(f"api_path is required for {HTTP_TRIGGER} triggers")
        method = config.get("http_method", "GET")
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            return _refuse(f"unsupported http_method {method!r}")
        gates = _gates(config)
        if isinstance(gates, ErrorBody):
            return gates
        pattern = api_path.strip().lstrip("/")
        route = HttpRoute(method.upper(), pattern, _split(pattern), binding, *gates)
        key = (route.method, route.shape)
        existing = self._routes.get(key)
        if existing is not None and existing.segments != route.segments:
            return _refuse(
                f"route {route.method} /{pattern} conflicts with /{existing.pattern} "
                "(same shape, different parameter names)"
            )
        self._routes[key] = route
        return None

    def unregister(self, binding: RegisterTrigger) -> None:
        for key, route in list(self._routes.items()):
            if route.binding.id == binding.id:
                del self._routes[key]

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The route for a request, preferring the one with the most literal segments."""
        segments = _split(path)
        best: tuple[int, HttpRoute, dict[str, str]] | None = None
        for (route_method, shape), route in self._routes.items():
            if route_method != method.upper() or len(shape) != len(segments):
                continue
            params: dict[str, str] = {}
            literal = 0
            for want, got in zip(route.segments, segments, strict=True):
                if want.startswith(":"):
                    params[want[1:]] = got
                elif want == got:
                    literal += 1
                else:
                    break
            else:
                if best is None or literal > best[0]:
                    best = (literal, route, params)
        return None if best is None else (best[1], best[2])

    def __len__(self) -> int:
        return len(self._routes)
