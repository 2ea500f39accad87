"""HTTP-invoked functions, worker side: the registration `Worker.register_http_function`
sends.

Such a function has no handler in this worker: the engine calls its URL itself whenever
the function is invoked (spec §3.1). The worker only registers it, so its frame is kept in
the registry and replayed on every new connection like any other registration, and
unregistering it (through its handle) withdraws it. Arguments are checked here, so a
mistake fails at the call that made it instead of as a refusal logged by the engine.

The auth forms are the official Python SDK's (`HttpAuthHmac`, `HttpAuthBearer`,
`HttpAuthApiKey`), as msgspec structs; a plain mapping of the wire shape
(`{"type": "bearer", "token_key": "API_TOKEN"}`) or an official SDK auth model works too.
Their values name environment variables of the engine's process, never secrets themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import msgspec

from .._protocol.frames import RegisterFunction, to_raw
from .._protocol.http_invocation import (
    HTTP_METHODS,
    HttpAuth,
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationRef,
    HttpMethod,
)

__all__ = ["HttpAuth", "HttpAuthApiKey", "HttpAuthBearer", "HttpAuthHmac", "http_function_frame"]

_AUTH_FORMS = (HttpAuthHmac, HttpAuthBearer, HttpAuthApiKey)


def http_function_frame(
    function_id: str,
    url: str,
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    timeout_ms: int | None = None,
    auth: HttpAuth | Mapping[str, Any] | Any = None,
    description: str | None = None,
    metadata: Any = None,
) -> RegisterFunction:
    """The `registerfunction` frame of an HTTP-invoked function; raises `ValueError` or
    `TypeError` for arguments the engine would refuse."""
    if not function_id:
        raise ValueError("function_id must not be empty")
    if not isinstance(url, str) or not url:
        raise ValueError("url must be a non-empty string")
    verb = method.upper() if isinstance(method, str) else method
    if verb not in HTTP_METHODS:
        raise ValueError(f"method must be one of {', '.join(HTTP_METHODS)}, not {method!r}")
    if timeout_ms is not None and (
        not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms < 0
    ):
        raise ValueError(f"timeout_ms must be a non-negative int of milliseconds: {timeout_ms!r}")
    fields = dict(headers or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise TypeError("headers must map str to str")
    invocation = HttpInvocationRef(
        url=url,
        method=cast(HttpMethod, verb),
        timeout_ms=timeout_ms,
        headers=fields,
        auth=_auth(auth),
    )
    return RegisterFunction(
        id=function_id,
        description=description,
        metadata=to_raw(metadata) if metadata is not None else msgspec.UNSET,
        invocation=to_raw(invocation),
    )


def _auth(auth: object) -> HttpAuth | None:
    if auth is None or isinstance(auth, _AUTH_FORMS):
        return auth
    dump = getattr(auth, "model_dump", None)  # an official SDK model (pydantic)
    shape = dump() if callable(dump) else auth
    if not isinstance(shape, Mapping):
        raise TypeError(f"auth must be HttpAuthHmac, HttpAuthBearer or HttpAuthApiKey: {auth!r}")
    try:
        converted: HttpAuth = msgspec.convert(dict(shape), HttpAuth)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid auth {dict(shape)!r}: {exc}") from None
    return converted
