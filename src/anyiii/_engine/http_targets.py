"""HTTP-invoked functions, sans-IO: reading an `invocation`, the request, the answer.

A function registered with an `invocation` object (spec §3.1, `HttpInvocationRef`) is run
by the engine itself: each call becomes one HTTP request to its URL. This module holds the
decisions, as the real engine makes them (`engine/src/invocation/`), with no I/O:

* `parse_target` reads the `invocation` at registration: the URL policy of
  `HttpFunctionSettings` (HTTPS only, a host allowlist, no private addresses), and the
  auth's environment variables, read once, then (the real engine keeps the values it read
  at registration; a missing one refuses the registration);
* `build_request` makes the request of one call: the payload as the JSON body, the
  `x-iii-*` headers, the function's own headers, then its auth (HMAC signature, bearer
  token or API key header);
* `read_response` turns the answer into the call's result or its `ErrorBody`.

`http_calls.py` sends the requests; `http_routing.py` ties both to the router.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http import HTTPStatus
from typing import Final
from urllib.parse import urlsplit

import msgspec
from msgspec import Raw

from .._protocol.codes import (
    API_KEY_NOT_FOUND,
    DESERIALIZATION_ERROR,
    HTTP_ERROR,
    INVALID_RESPONSE,
    SECRET_NOT_FOUND,
    TIMESTAMP_ERROR,
    TOKEN_NOT_FOUND,
    URL_VALIDATION_FAILED,
)
from .._protocol.frames import ErrorBody
from .._protocol.http_invocation import (
    HttpAuthApiKey,
    HttpAuthBearer,
    HttpAuthHmac,
    HttpInvocationRef,
)

__all__ = [
    "HttpFunctionSettings",
    "HttpRequest",
    "HttpResponse",
    "HttpTarget",
    "build_request",
    "is_private_address",
    "parse_target",
    "read_response",
    "sign",
    "url_problem",
]

INVALID_URL: Final = "Invalid URL"
HTTPS_REQUIRED: Final = "HTTPS is required"
NOT_ALLOWED: Final = "URL not in allowlist"
PRIVATE_IP_BLOCKED: Final = "Private IP blocked"
DNS_LOOKUP_FAILED: Final = "DNS lookup failed"
"""The real engine's words for each way a URL fails its policy (`url_validator.rs`)."""

_NO_RESULT: Final = (None, None)


class HttpFunctionSettings(msgspec.Struct, frozen=True):
    """The engine's policy for HTTP-invoked functions (the real engine's
    `iii-http-functions` worker and its `security:` block; these defaults are its own).

    `require_https` refuses `http://` URLs; `block_private_ips` refuses loopback, private,
    link-local, documentation, broadcast and unspecified addresses, whether written in the
    URL or what its host name resolves to at call time; `url_allowlist` holds glob patterns
    one of which the URL's host must match. A local endpoint (`http://127.0.0.1:…`, as in
    tests and development) needs `require_https=False, block_private_ips=False`.
    `default_timeout_ms` bounds a call whose function names no `timeout_ms`.
    `max_response_bytes` bounds the answer the engine reads (anyiii's own limit: beyond it
    the call fails with `http_response_failed`).
    """

    require_https: bool = True
    block_private_ips: bool = True
    url_allowlist: tuple[str, ...] = ("*",)
    default_timeout_ms: int = 30_000
    max_response_bytes: int = 64 * 2**20


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """A validated `invocation`, with its auth resolved: what every call of it sends."""

    url: str
    method: str
    timeout_ms: int
    headers: tuple[tuple[str, str], ...]
    signing_secret: str | None
    """The HMAC secret (`hmac` auth), read from the environment at registration."""
    auth_header: tuple[str, str] | None
    """The `Authorization` (`bearer`) or API key (`api_key`) header, likewise."""
    check_dns: bool
    """Whether each call must first resolve the host and refuse private addresses."""
    max_response_bytes: int


class HttpRequest(msgspec.Struct, frozen=True):
    """One call's request, as `http_calls.py` sends it. `timeout` (seconds) bounds the
    whole call: the DNS check, sending and reading the answer."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    timeout: float
    check_dns: bool
    max_response_bytes: int


class HttpResponse(msgspec.Struct, frozen=True):
    """The answer to one call's request: its status and its whole body."""

    status: int
    body: bytes


def parse_target(
    invocation: Raw, settings: HttpFunctionSettings, environ: Mapping[str, str]
) -> HttpTarget | ErrorBody:
    """Read a function's `invocation` object; an `ErrorBody` says why it is refused."""
    try:
        fields = msgspec.json.decode(invocation)
        if isinstance(fields, dict):  # `null` reads as absent (spec §1.1), as in every frame
            fields = {key: value for key, value in fields.items() if value is not None}
        ref = msgspec.convert(fields, HttpInvocationRef)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        return ErrorBody(DESERIALIZATION_ERROR, f"invalid invocation object: {exc}")
    problem = url_problem(ref.url, settings)
    if problem is not None:
        return ErrorBody(URL_VALIDATION_FAILED, problem)
    secret: str | None = None
    header: tuple[str, str] | None = None
    auth = ref.auth
    if isinstance(auth, HttpAuthHmac):
        secret = environ.get(auth.secret_key)
        if secret is None:
            return ErrorBody(SECRET_NOT_FOUND, f"Secret not found: {auth.secret_key}")
    elif isinstance(auth, HttpAuthBearer):
        token = environ.get(auth.token_key)
        if token is None:
            return ErrorBody(TOKEN_NOT_FOUND, f"Token not found: {auth.token_key}")
        header = ("Authorization", f"Bearer {token}")
    elif isinstance(auth, HttpAuthApiKey):
        value = environ.get(auth.value_key)
        if value is None:
            return ErrorBody(API_KEY_NOT_FOUND, f"API key not found: {auth.value_key}")
        header = (auth.header, value)
    host = _host(ref.url)
    return HttpTarget(
        url=ref.url,
        method=ref.method,
        timeout_ms=ref.timeout_ms if ref.timeout_ms is not None else settings.default_timeout_ms,
        headers=tuple(ref.headers.items()),
        signing_secret=secret,
        auth_header=header,
        check_dns=settings.block_private_ips and host is not None and _literal_ip(host) is None,
        max_response_bytes=settings.max_response_bytes,
    )


def url_problem(url: str, settings: HttpFunctionSettings) -> str | None:
    """Why `url` breaks the policy, in the real engine's words, or None.

    Everything but a host name's DNS answer is checked here; `http_calls.py` resolves
    names at call time when `block_private_ips` is on.
    """
    host = _host(url)
    if host is None:
        return INVALID_URL
    if settings.require_https and urlsplit(url).scheme.lower() != "https":
        return HTTPS_REQUIRED
    # The real engine matches the host as its URL parser prints it: IPv6 in brackets.
    shown = f"[{host}]" if ":" in host else host
    if not any(fnmatchcase(shown, pattern) for pattern in settings.url_allowlist):
        return NOT_ALLOWED
    address = _literal_ip(host)
    if settings.block_private_ips and address is not None and is_private_address(address):
        return PRIVATE_IP_BLOCKED
    return None


def _host(url: str) -> str | None:
    """The URL's host (lower case, IPv6 without brackets), or None if it is not a URL."""
    if any(ch <= " " or ch == "\x7f" for ch in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.hostname


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def is_private_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """The real engine's notion of an address not to call (`url_validator.rs`): exactly
    Rust's loopback, private, link-local, broadcast, documentation and unspecified IPv4
    ranges; for IPv6 loopback, unique local, link-local, unspecified and multicast, and an
    IPv4-mapped address as the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_private_address(address.ipv4_mapped)
        return any(address in network for network in _PRIVATE_V6)
    return any(address in network for network in _PRIVATE_V4)


_PRIVATE_V4: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # private
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # link-local
        "255.255.255.255/32",  # broadcast
        "192.0.2.0/24",  # documentation
        "198.51.100.0/24",
        "203.0.113.0/24",
        "0.0.0.0/32",  # unspecified
    )
)
_PRIVATE_V6: Final = tuple(
    ipaddress.IPv6Network(n) for n in ("::1/128", "fc00::/7", "fe80::/10", "::/128", "ff00::/8")
)


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The `x-iii-Signature` of a request: `sha256=` and the hex HMAC-SHA256, keyed by
    the secret, of `<timestamp>:<base64 of the body>` (`signature.rs`)."""
    message = f"{timestamp}:{base64.b64encode(body).decode('ascii')}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def build_request(
    target: HttpTarget, function_id: str, body: bytes, timestamp: int, request_id: str
) -> HttpRequest | ErrorBody:
    """The request of one call: headers in the real engine's order (its client appends
    each, so a function's own header never replaces one of these). `timestamp` is Unix
    seconds; `request_id` is a fresh id for `x-iii-Invocation-ID` (not the caller's)."""
    if timestamp < 0:
        return ErrorBody(TIMESTAMP_ERROR, "the engine's clock is before the Unix epoch")
    headers = [
        ("Content-Type", "application/json"),
        ("x-iii-Function-Path", function_id),
        ("x-iii-Invocation-ID", request_id),
        ("x-iii-Timestamp", str(timestamp)),
        *target.headers,
    ]
    if target.signing_secret is not None:
        headers.append(("x-iii-Signature", sign(body, target.signing_secret, timestamp)))
    if target.auth_header is not None:
        headers.append(target.auth_header)
    return HttpRequest(
        method=target.method,
        url=target.url,
        headers=tuple(headers),
        body=body,
        timeout=target.timeout_ms / 1000,
        check_dns=target.check_dns,
        max_response_bytes=target.max_response_bytes,
    )


def read_response(response: HttpResponse) -> tuple[Raw | None, ErrorBody | None]:
    """The call's (result, error) from the function's answer (`http_invoker.rs`).

    2xx: the JSON body is the result (an empty body: no result; anything else that is not
    JSON: `invalid_response`). 1xx/3xx: a success, with the body as the result only if it
    is JSON (redirects are not followed). 400 and above: the body's own
    `{"error": {"code", "message"}}` if it has one, else `http_error` "HTTP <status>".
    """
    status, body = response.status, response.body
    if 200 <= status < 300:
        if not body:
            return _NO_RESULT
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            return None, ErrorBody(INVALID_RESPONSE, str(exc))
        return Raw(body), None
    parsed = _json_or_none(body)
    if status < 400:
        return (Raw(body) if parsed is not _NOT_JSON else None), None
    if isinstance(parsed, dict) and "error" in parsed:
        error = parsed["error"]
        fields = error if isinstance(error, dict) else {}
        code, message = fields.get("code"), fields.get("message")
        return None, ErrorBody(
            code if isinstance(code, str) else HTTP_ERROR,
            message if isinstance(message, str) else "HTTP request failed",
        )
    return None, ErrorBody(HTTP_ERROR, f"HTTP {status} {_reason(status)}")


_NOT_JSON: Final = object()


def _json_or_none(body: bytes) -> object:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return _NOT_JSON


def _reason(status: int) -> str:
    """The status's standard reason phrase, as the real engine prints a status."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "<unknown status code>"
