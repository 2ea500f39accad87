"""What runs between matching an `http` route and calling its handler (spec §10.1, §7.3).

In the real engine's order (`engine/src/workers/rest_api/views.rs`):

1. the engine-wide middleware (`iii-http`'s `middleware`, in ascending `priority`),
2. the route's `condition_function_id`,
3. the route's `middleware_function_ids`, in the order listed,

then the handler. Every one of them is called in the route's namespace, without metadata.

A middleware is called with `{"phase": "preHandler", "request": {path_params,
query_params, headers, method}, "context": {}}` (no body; `context` is always empty: the
real engine does not carry anything from one middleware to the next). It answers
`{"action": "continue"}` to go on or `{"action": "respond", "response": {status_code,
body, headers}}` to answer the request at once: nothing after it runs. Like the real engine,
any other answer (no result, a non-object, an unknown action) is logged and taken as
`continue`. A middleware that fails answers 500 with its own code and message; one that
does not answer within the request timeout, 504 `MIDDLEWARE_TIMEOUT`.

The condition is called with the request object minus its `request_body` / `response`
channel references; only a literal `false` skips the handler (422 `CONDITION_NOT_MET`,
`"skipped": true`). A failing condition answers 500 with its code and message; one that
does not answer within the request timeout, 504 `TIMEOUT` (the real engine has no deadline
of its own for it: its whole-request timeout answers an empty 504 instead).

`before_handler` returns what to answer instead of calling the handler, as a result shaped
like a handler's (mapped by the listener's `map_response`), or None to call the handler.
"""

from __future__ import annotations

import logging
import reprlib
import secrets
from collections.abc import Awaitable
from typing import Any, Final, Protocol

import anyio
import msgspec
from msgspec import Raw

from .._protocol.codes import (
    CONDITION_NOT_MET,
    DEFAULT_NAMESPACE,
    MIDDLEWARE_TIMEOUT,
    PRE_HANDLER,
    TIMEOUT,
)
from .._protocol.frames import ErrorBody, decode_value, to_raw
from .hosting import is_literal_false
from .providers import HttpRoute, HttpRoutes

__all__ = ["Invoker", "before_handler"]

logger = logging.getLogger("anyiii.engine.http")

_CHANNEL_REFS: Final = ("request_body", "response")
"""Keys of the request object the condition is not given (they belong to the handler)."""
_REQUEST_KEYS: Final = ("path_params", "query_params", "headers", "method")
"""What of the request a middleware sees."""
_EMPTY: Final = Raw(b"{}")


class Invoker(Protocol):
    """What the checks need of the engine: the REST listener's `Invoker` is one."""

    @property
    def http_routes(self) -> HttpRoutes: ...

    def invoke(
        self, function_id: str, data: Raw, *, metadata: Raw | None, namespace: str
    ) -> Awaitable[tuple[Raw | None, ErrorBody | None]]:
        """Call a function and wait for its result or error (cancellable)."""
        ...


def _error(
    status: int, code: str, message: str, *, error_id: bool = False, skipped: bool = False
) -> Raw:
    """The engine's own HTTP error (§7.3), as a handler-shaped result. Like the real engine,
    only a failed function's 500 carries an `error_id`, not the 422 nor the 504s."""
    error: dict[str, str] = {"code": code, "message": message}
    if error_id:
        error["error_id"] = secrets.token_hex(8)
    body: dict[str, Any] = {"error": error}
    if skipped:
        body["skipped"] = True
    return to_raw({"status_code": status, "body": body})


async def before_handler(
    invoker: Invoker, route: HttpRoute, request: Raw, per_call: float
) -> Raw | None:
    """Run the route's middleware and condition (see the module docstring); each call may
    take `per_call` seconds. Returns the response to send instead of the handler's, or None."""
    if not (
        invoker.http_routes.middleware
        or route.condition_function_id
        or route.middleware_function_ids
    ):
        return None  # the common case costs nothing
    namespace = route.binding.namespace or DEFAULT_NAMESPACE
    # Top-level fields only: the body stays undecoded JSON, copied as is to the condition.
    fields = msgspec.json.decode(request, type=dict[str, Raw])
    for function_id in invoker.http_routes.middleware:
        answer = await _middleware(invoker, function_id, fields, namespace, per_call)
        if answer is not None:
            return answer
    if route.condition_function_id is not None:
        answer = await _condition(invoker, route.condition_function_id, fields, namespace, per_call)
        if answer is not None:
            return answer
    for function_id in route.middleware_function_ids:
        answer = await _middleware(invoker, function_id, fields, namespace, per_call)
        if answer is not None:
            return answer
    return None


async def _middleware(
    invoker: Invoker, function_id: str, request: dict[str, Raw], namespace: str, per_call: float
) -> Raw | None:
    """Call one middleware: None to go on, or the response to send."""
    data = {
        "phase": PRE_HANDLER,
        "request": {key: request.get(key, _EMPTY) for key in _REQUEST_KEYS},
        "context": {},
    }
    with anyio.move_on_after(per_call) as scope:
        result, error = await invoker.invoke(
            function_id, to_raw(data), metadata=None, namespace=namespace
        )
    if scope.cancelled_caught:
        logger.warning("middleware %s did not answer within %s s", function_id, per_call)
        message = f"middleware {function_id} did not answer within {per_call:g} s"
        return _error(504, MIDDLEWARE_TIMEOUT, message)
    if error is not None:
        logger.warning("middleware %s failed (%s: %s)", function_id, error.code, error.message)
        return _error(500, error.code, error.message, error_id=True)
    answer = decode_value(result) if result is not None else None
    action = answer.get("action") if isinstance(answer, dict) else None
    if action == "continue":
        return None
    if action == "respond":
        assert isinstance(answer, dict)
        response = answer.get("response")
        response = dict(response) if isinstance(response, dict) else {}
        response.setdefault("body", None)  # the real engine answers JSON null without one
        return to_raw(response)
    # The real engine's rule, kept so that workers behave the same on both engines.
    logger.warning(
        "middleware %s answered %r, not a continue or respond action: taken as continue",
        function_id,
        reprlib.repr(answer),
    )
    return None


async def _condition(
    invoker: Invoker, function_id: str, request: dict[str, Raw], namespace: str, per_call: float
) -> Raw | None:
    """Call the route's condition: None to go on, or the response to send."""
    data = {key: value for key, value in request.items() if key not in _CHANNEL_REFS}
    with anyio.move_on_after(per_call) as scope:
        result, error = await invoker.invoke(
            function_id, to_raw(data), metadata=None, namespace=namespace
        )
    if scope.cancelled_caught:
        logger.warning("condition %s did not answer within %s s", function_id, per_call)
        return _error(504, TIMEOUT, f"condition {function_id} did not answer within {per_call:g} s")
    if error is not None:
        logger.warning("condition %s failed (%s: %s)", function_id, error.code, error.message)
        return _error(500, error.code, error.message, error_id=True)
    if is_literal_false(result):
        return _error(422, CONDITION_NOT_MET, "Request condition not met", skipped=True)
    return None
