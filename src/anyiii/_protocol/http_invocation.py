"""The `invocation` object of `registerfunction` (spec §3.1): an HTTP-invoked function's
target URL, method, headers, timeout and the auth forms the engine signs requests with.
Shared by the worker (which sends it) and the engine (which calls the URL)."""

from __future__ import annotations

from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import field

__all__ = [
    "HTTP_METHODS",
    "HttpAuth",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthHmac",
    "HttpInvocationRef",
    "HttpMethod",
]


HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
"""The methods an HTTP-invoked function may use (spec §3.1), spelled as on the wire."""

HttpMethod: TypeAlias = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class HttpAuthHmac(msgspec.Struct, frozen=True, tag_field="type", tag="hmac"):
    """Sign each request with HMAC-SHA256; `secret_key` names the engine's environment
    variable holding the shared secret."""

    secret_key: str


class HttpAuthBearer(msgspec.Struct, frozen=True, tag_field="type", tag="bearer"):
    """Send `Authorization: Bearer <token>`; `token_key` names the environment variable."""

    token_key: str


class HttpAuthApiKey(msgspec.Struct, frozen=True, tag_field="type", tag="api_key"):
    """Send the key in header `header`; `value_key` names the environment variable."""

    header: str
    value_key: str


HttpAuth: TypeAlias = HttpAuthHmac | HttpAuthBearer | HttpAuthApiKey
"""How the engine authenticates to an HTTP-invoked function (spec §3.1)."""


class HttpInvocationRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The `invocation` object of `registerfunction`: the engine itself calls `url` over
    HTTP whenever the function is invoked (spec §3.1). `timeout_ms` None means the
    engine's default (30 s in the real engine)."""

    url: str
    method: HttpMethod = "POST"
    timeout_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: HttpAuth | None = None
