"""What the REST listener answers: a handler's result mapped to a response (spec §10.1
"Response mapping"), and the engine's own error envelopes (§7.3).

Kept apart from `http.py`, which moves the bytes: everything here is pure and is tested
through the listener.
"""

from __future__ import annotations

import secrets
from typing import Final

import msgspec
from msgspec import Raw

from .._protocol.codes import INVALID_RESPONSE, NOT_FOUND
from .._protocol.frames import decode_value, encode_value

__all__ = ["JSON", "NOT_FOUND_REPLY", "STREAMED", "Reply", "error_reply", "map_response"]

JSON: Final = "application/json"


class Reply(msgspec.Struct, frozen=True):
    """One whole response: its status, its headers (framing headers are added when sent)
    and its body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


STREAMED: Final = Reply(0, [], b"")
"""The listener's "sent already, as a stream" (the connection may go on if HTTP allows it)."""


def error_reply(status: int, code: str, message: str, *, with_id: bool = True) -> Reply:
    """The engine's error envelope `{"error": {"code", "message"}}`; a 5xx also carries an
    `error_id` (spec §7.3), so a client's report can be found in the logs."""
    error: dict[str, str] = {"code": code, "message": message}
    if with_id and status >= 500:
        error["error_id"] = secrets.token_hex(8)
    return Reply(status, [("content-type", JSON)], encode_value({"error": error}))


NOT_FOUND_REPLY: Final = error_reply(404, NOT_FOUND, "Not Found")


def _text(value: object) -> str:
    return value if isinstance(value, str) else encode_value(value).decode()


def _response_headers(value: object) -> list[tuple[str, str]]:
    """Headers given as an object of strings or as a list of `"Name: value"` strings."""
    if isinstance(value, dict):
        return [(str(k), _text(v)) for k, v in value.items()]
    if isinstance(value, list):
        pairs = []
        for item in value:
            if isinstance(item, str) and ":" in item:
                name, _, text = item.partition(":")
                pairs.append((name.strip(), text.strip()))
        return pairs
    return []


def map_response(result: Raw | None) -> Reply:
    """Turn a handler's result into an HTTP response (spec §10.1 "Response mapping").

    The status comes from `status_code`, falling back to `statusCode` (the official Python
    helper's alias, §15.3), else 200. A null result answers `200 {}` because this engine has
    no response channel for the handler to stream into (§15.4).
    """
    value = decode_value(result) if result is not None else None
    if not isinstance(value, dict):
        body = encode_value(value if value is not None else {})
        return Reply(200, [("content-type", JSON)], body)
    status = value.get("status_code", value.get("statusCode"))
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        status = 200
    if status < 200:  # an informational status cannot end a request
        return error_reply(500, INVALID_RESPONSE, f"status_code {status} is not final")
    headers = _response_headers(value.get("headers"))
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    body_value = value.get("body", {})
    if content_type is None:
        headers.append(("content-type", JSON))
        body = encode_value(body_value)
    elif isinstance(body_value, str):
        body = body_value.encode()
    elif body_value is None:
        body = b""
    else:
        body = encode_value(body_value)
    return Reply(status, headers, body)
