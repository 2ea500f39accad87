"""The request and response of the engine's `http` trigger, as typed msgspec Structs.

A function bound to an `http` trigger gets the request object of spec §10.1 as its payload
and answers with a response object. Annotate the handler `async def h(req: ApiRequest) ->
ApiResponse` and anyiii decodes the one and encodes the other.

The status code: the official Python SDK's response model is spelled `statusCode` and sends
that key, but the real engine reads only `status_code`, so its statuses silently become 200
(spec §15 item 3). `ApiResponse` keeps the seed's constructor spelling,
`ApiResponse(statusCode=201)`, and always puts `status_code` on the wire: the one key both
the real and the embedded engine read. It does not send `statusCode` as well, because no
engine reads it and a second copy could only disagree.

Streaming (spec §10.1 with §12): every request the engine delivers carries two channel
ends, `request_body` (the raw body, whatever its content type) and `response` (where a
handler that returns None answers); `stream_response()` and `event_stream()` write the
answer there (`http_stream.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

import msgspec

from .channel_reader import ChannelReader
from .channel_writer import ChannelWriter
from .http_stream import EVENT_STREAM_HEADERS, EventStream, ResponseStream

__all__ = ["ApiRequest", "ApiResponse"]

BodyT = TypeVar("BodyT")


class ApiRequest(msgspec.Struct, Generic[BodyT], kw_only=True):
    """An HTTP request delivered by the `http` trigger (spec §10.1).

    `path_params`, `query_params` and `headers` are flat string maps (header names are
    lower-case; a repeated query key or header may arrive as a list). `body` is the parsed
    JSON body (None when the request had no JSON body); `ApiRequest[MyBody]` converts it to
    a msgspec Struct or dataclass of yours. `method` is the HTTP method, `path` the route
    pattern as registered (`users/:id`), not the concrete URL. Other keys the engine sends
    (`trigger`) are ignored.

    `request_body` reads the raw body as a stream (any content type, any size: the
    engine streams bodies that are not JSON without a size limit); `response` is where
    `stream_response()` and `event_stream()` answer. Both are None in a request that did
    not come from an engine's `http` trigger.
    """

    path_params: dict[str, str] = msgspec.field(default_factory=dict)
    query_params: dict[str, str | list[str]] = msgspec.field(default_factory=dict)
    body: BodyT | None = None
    headers: dict[str, str | list[str]] = msgspec.field(default_factory=dict)
    method: str = "GET"
    path: str = ""
    request_body: ChannelReader | None = None
    response: ChannelWriter | None = None

    def stream_response(
        self, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> ResponseStream:
        """Answer with a body written piece by piece: `async with
        request.stream_response(200, {"content-type": "text/plain"}) as body: await
        body.send(b"...")`, then return None. Raises ValueError for a status outside
        100-599 and RuntimeError if the request has no response channel."""
        return ResponseStream(self._response_channel(), status, headers or {})

    def event_stream(
        self, headers: Mapping[str, str] | None = None, status: int = 200
    ) -> EventStream:
        """Answer with server-sent events: `async with request.event_stream() as events:
        await events.send({"n": 1}, event="tick")`, then return None. `headers` are added
        to (or replace) `content-type: text/event-stream` and `cache-control: no-cache`."""
        merged = {**EVENT_STREAM_HEADERS, **{k.lower(): v for k, v in (headers or {}).items()}}
        return EventStream(ResponseStream(self._response_channel(), status, merged))

    def _response_channel(self) -> ChannelWriter:
        if self.response is None:
            raise RuntimeError(
                "this request has no response channel (it did not come from an engine's "
                "http trigger), so it cannot be answered with a stream"
            )
        return self.response


class ApiResponse(msgspec.Struct, Generic[BodyT], kw_only=True, omit_defaults=True):
    """What an `http`-triggered function returns: status, body, headers.

    `ApiResponse(statusCode=201, body={"id": 7}, headers={"location": "/orders/7"})`.
    The status goes on the wire as `status_code`, the key engines read (see the module
    docs). `headers` is a mapping, or a list of `"Name: value"` strings. Without a
    `content-type` header the body is sent as JSON; with one, a string body is sent as is.
    """

    statusCode: int = msgspec.field(default=200, name="status_code")
    body: BodyT | None = None
    headers: dict[str, str] | list[str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.statusCode, bool) or not 100 <= self.statusCode <= 599:
            raise ValueError(f"statusCode must be an HTTP status (100-599): {self.statusCode!r}")
