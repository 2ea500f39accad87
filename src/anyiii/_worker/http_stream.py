"""Streamed answers to `http` requests (spec §10.1): a body written piece by piece, and
server-sent events, both over the request's `response` channel.

The engine answers an `http` request from its `response` channel when the handler wrote
to it and returned nothing: first the control messages (`set_status`, `set_headers`),
then every binary chunk as the body (chunked transfer), until the writer ends the stream.
`ResponseStream` sends the head when it opens and each `send()` as one chunk, so a client
sees each piece as soon as it is written. `EventStream` does the same with the
`text/event-stream` framing of the HTML standard (`event:`, `id:`, `retry:`, one `data:`
line per line of data, a blank line after each event).

Leaving either block with an exception breaks the writer (see `ChannelWriter`), so the
engine cuts the response short instead of passing a truncated body off as a whole one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

import anyio.abc

from .._protocol.codes import SET_HEADERS, SET_STATUS
from .._protocol.frames import encode_value
from .channel_writer import ChannelWriter

__all__ = ["EventStream", "ResponseStream", "format_event"]

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
"""What a client takes for the end of a line (CR LF, CR or LF): each piece of data between
two is sent on a `data:` line of its own, and arrives joined with LF."""

EVENT_STREAM_HEADERS: Final = {"content-type": "text/event-stream", "cache-control": "no-cache"}
"""What an event stream is sent with unless the handler says otherwise."""


def _check_status(status: int) -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"status must be an HTTP status (100-599): {status!r}")
    return status


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values must be strings: {name!r}: {value!r}")
        if any(c in name + value for c in "\r\n\0"):
            raise ValueError(f"a header may not contain CR, LF or NUL: {name!r}: {value!r}")
        checked[name.lower()] = value
    return checked


class ResponseStream(anyio.abc.ByteSendStream):
    """The body of an `http` answer, written as it is made: what
    `ApiRequest.stream_response()` opens.

    `async with request.stream_response(200, {"content-type": "text/plain"}) as body:`
    sends the status and headers, each `await body.send(data)` one chunk of the body, and
    leaving the block normally ends the response. The handler then returns None. A send
    waits while the client is slow to read (the channel is bounded), and raises
    `anyiii.ChannelError` once the client has gone.
    """

    def __init__(self, writer: ChannelWriter, status: int, headers: Mapping[str, str]) -> None:
        self._writer = writer
        self._status = _check_status(status)
        self._headers = _check_headers(headers)
        self._opened = False

    async def __aenter__(self) -> ResponseStream:
        await self.open()
        return self

    async def open(self) -> None:
        """Send the status and headers (once; `async with` does it for you)."""
        if self._opened:
            return
        self._opened = True
        await self._writer.send_message({"type": SET_STATUS, "status_code": self._status})
        if self._headers:
            await self._writer.send_message({"type": SET_HEADERS, "headers": self._headers})

    async def send(self, item: bytes) -> None:
        """Send `item` as the next piece of the body (an empty one sends nothing)."""
        await self.open()
        if item:
            await self._writer.send(item)

    async def send_eof(self) -> None:
        """End the response (what leaving the block normally does)."""
        await self.open()
        await self._writer.send_eof()

    async def aclose(self) -> None:
        """End the response, as `send_eof()` does."""
        await self.open()
        await self._writer.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is None:
            await self.open()  # an answer with no body still sends its head
        # The writer's own rule: a normal exit ends the response; an error part-way drops
        # its socket, so the response is cut short.
        await self._writer.__aexit__(exc_type, exc_val, exc_tb)


def format_event(
    data: Any,
    *,
    event: str | None = None,
    event_id: str | None = None,
    retry: float | None = None,
) -> bytes:
    """One server-sent event: `data` as it is if it is a `str`, else as JSON; each of its
    lines becomes a `data:` line. Raises ValueError for a field that would break the
    framing (a line break in `event` or `event_id`, a NUL in `event_id`)."""
    text = data if isinstance(data, str) else encode_value(data).decode()
    lines: list[str] = []
    if event is not None:
        lines.append(f"event: {_single_line('event', event)}")
    if event_id is not None:
        if "\0" in event_id:
            raise ValueError("an event id may not contain NUL")
        lines.append(f"id: {_single_line('event_id', event_id)}")
    if retry is not None:
        if retry < 0:
            raise ValueError(f"retry must not be negative: {retry!r}")
        lines.append(f"retry: {round(retry * 1000)}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(text))
    return ("\n".join(lines) + "\n\n").encode()


def _single_line(field: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{field} may not contain a line break: {value!r}")
    return value


class EventStream:
    """Server-sent events answering an `http` request: what `ApiRequest.event_stream()`
    opens.

    `async with request.event_stream() as events:` answers `200` with `content-type:
    text/event-stream` and `cache-control: no-cache`; `await events.send(data,
    event=..., event_id=..., retry=...)` sends one event (a `str` as it is, anything else
    as JSON), `await events.comment(text)` a comment line (clients ignore it; it keeps
    proxies from closing an idle stream), and leaving the block ends the stream. Each
    event goes out as one chunk, so the client gets it at once.
    """

    def __init__(self, body: ResponseStream) -> None:
        self._body = body

    async def __aenter__(self) -> EventStream:
        await self._body.open()
        return self

    async def send(
        self,
        data: Any,
        *,
        event: str | None = None,
        event_id: str | None = None,
        retry: float | None = None,
    ) -> None:
        """Send one event (see `format_event` for the framing); `retry` is in seconds."""
        await self._body.send(format_event(data, event=event, event_id=event_id, retry=retry))

    async def comment(self, text: str = "") -> None:
        """Send a comment line (`: text`), which clients ignore."""
        await self._body.send(f": {_single_line('comment', text)}\n\n".encode())

    async def aclose(self) -> None:
        """End the stream, as leaving the block normally does."""
        await self._body.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self._body.__aexit__(exc_type, exc_val, exc_tb)
