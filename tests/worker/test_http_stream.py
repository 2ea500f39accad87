"""Streaming `http` answers from anyiii handlers (spec §10.1, §12): `ApiRequest.request_body`
read as a stream, `stream_response()` and `event_stream()` answered through the embedded
engine over real sockets, read by a real HTTP client (httpx), on asyncio and trio; and the
server-sent-event framing against a parser written from the HTML standard."""

from __future__ import annotations

import hashlib
import re
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anyiii
from anyiii._worker.http_stream import format_event

MiB = 2**20


@asynccontextmanager
async def serving(
    handler: Callable[..., Awaitable[Any]], method: str = "POST", **engine: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """`handler` bound to `<method> /s` on an embedded engine; an HTTP client for it."""
    async with (
        anyiii.engine.run(http_port=0, **engine) as running,
        anyiii.connect(running.url) as worker,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=30) as client,
    ):
        worker.register_function("http::s", handler)
        await worker.register_trigger("http", "http::s", {"api_path": "s", "http_method": method})
        # Frames are handled in order: once a call returns, the route is bound.
        await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        yield client


def parse_events(stream: str) -> list[dict[str, str]]:
    """Server-sent events as a browser reads them (HTML standard, 9.2.6): lines end with
    CR LF, CR or LF; a blank line dispatches; `data` lines are joined with LF."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    data: list[str] = []
    for line in re.split(r"\r\n|\r|\n", stream):
        if not line:
            if data:
                events.append({**current, "data": "\n".join(data)})
            current, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("event", "id", "retry"):
            current[name] = value
    return events


# --- the framing ------------------------------------------------------------------------


@given(
    data=st.text(),
    event=st.none() | st.text().filter(lambda t: not re.search(r"[\r\n]", t)),
    event_id=st.none() | st.text().filter(lambda t: not re.search(r"[\r\n\0]", t)),
)
def test_an_event_parses_back_to_what_was_sent(
    data: str, event: str | None, event_id: str | None
) -> None:
    [parsed] = parse_events(format_event(data, event=event, event_id=event_id).decode())
    assert parsed["data"] == re.sub(r"\r\n|\r", "\n", data)  # line breaks arrive as LF
    assert parsed.get("event") == event
    assert parsed.get("id") == event_id


def test_values_that_are_not_text_are_sent_as_json_and_retry_in_milliseconds() -> None:
    sent = format_event({"n": 1, "tags": ["a"]}, retry=2.5).decode()
    assert sent == 'retry: 2500\ndata: {"n":1,"tags":["a"]}\n\n'


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"event": "a\nb"}, "line break"),
        ({"event_id": "a\rb"}, "line break"),
        ({"event_id": "a\0b"}, "NUL"),
        ({"retry": -1}, "negative"),
    ],
)
def test_fields_that_would_break_the_framing_are_refused(
    fields: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        format_event("x", **fields)


# --- through the engine -----------------------------------------------------------------


async def test_a_typed_handler_reads_the_body_as_a_stream_and_answers_with_one() -> None:
    async def handler(request: anyiii.ApiRequest) -> None:
        assert isinstance(request.request_body, anyiii.ChannelReader)
        digest, size = hashlib.sha256(), 0
        async for chunk in request.request_body:
            digest.update(chunk)
            size += len(chunk)
        headers = {"content-type": "text/plain", "x-size": str(size)}
        async with request.stream_response(201, headers) as body:
            await body.send(b"sha256=")
            await body.send(digest.hexdigest().encode())

    upload = bytes(range(256)) * 1000
    with anyio.fail_after(20):
        async with serving(handler) as client:
            response = await client.post(
                "/s", content=upload, headers={"content-type": "application/octet-stream"}
            )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-size"] == str(len(upload))
    assert response.text == "sha256=" + hashlib.sha256(upload).hexdigest()


async def test_an_untyped_handler_gets_live_channel_ends_in_its_dict() -> None:
    async def handler(request: dict[str, Any]) -> None:
        assert isinstance(request["response"], anyiii.ChannelWriter)
        text = (await request["request_body"].read_all()).decode()
        async with request["response"] as response:
            await response.send(text.upper().encode())  # no head sent: 200

    with anyio.fail_after(20):
        async with serving(handler) as client:
            response = await client.post("/s", content="form=1", headers={"content-type": "x/y"})
    assert (response.status_code, response.text) == (200, "FORM=1")


async def test_returning_a_response_still_works_and_the_json_body_is_still_parsed() -> None:
    async def handler(request: anyiii.ApiRequest) -> anyiii.ApiResponse:
        return anyiii.ApiResponse(statusCode=202, body={"got": request.body})

    with anyio.fail_after(20):
        async with serving(handler) as client:
            response = await client.post("/s", json={"a": 1})
    assert (response.status_code, response.json()) == (202, {"got": {"a": 1}})


async def test_server_sent_events_arrive_one_by_one_as_they_are_sent() -> None:
    # The handler sends its second event only after the client has read the first: had
    # the engine (or the SDK) held the body back, the client would wait forever.
    first_read = anyio.Event()

    async def handler(request: anyiii.ApiRequest) -> None:
        async with request.event_stream({"x-feed": "ticks"}) as events:
            await events.comment("hello")
            await events.send({"n": 1}, event="tick", event_id="1")
            await first_read.wait()
            await events.send("two\nlines", event="tick", event_id="2", retry=3)

    with anyio.fail_after(20):
        async with serving(handler, method="GET") as client:
            async with client.stream("GET", "/s") as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/event-stream"
                assert response.headers["cache-control"] == "no-cache"
                assert response.headers["x-feed"] == "ticks"
                received = ""
                async with aclosing(response.aiter_text()) as chunks:
                    while "\n\n" not in received.partition(": hello\n\n")[2]:
                        received += await anext(chunks)
                    first = [{"event": "tick", "id": "1", "data": '{"n":1}'}]
                    assert parse_events(received) == first
                    first_read.set()
                    async for text in chunks:
                        received += text
    assert parse_events(received)[1] == {
        "event": "tick",
        "id": "2",
        "retry": "3000",
        "data": "two\nlines",
    }


async def test_a_client_that_leaves_fails_the_handler_s_next_send() -> None:
    failed: list[BaseException] = []
    done = anyio.Event()

    async def handler(request: anyiii.ApiRequest) -> None:
        try:
            async with request.event_stream() as events:
                while True:
                    await events.send("tick")
                    await anyio.sleep(0.01)
        except anyio.BrokenResourceError as error:  # ChannelError is one
            failed.append(error)
        finally:
            done.set()

    with anyio.fail_after(20):
        async with serving(handler, method="GET") as client:
            # A plain socket, so leaving is just closing it (an HTTP client would pool it).
            port = httpx.URL(str(client.base_url)).port
            assert port is not None
            async with await anyio.connect_tcp("127.0.0.1", port) as sock:
                await sock.send(b"GET /s HTTP/1.1\r\nhost: x\r\n\r\n")
                received = b""
                while b"data: tick" not in received:  # the stream is flowing
                    received += await sock.receive()
            await done.wait()
    assert isinstance(failed[0], anyiii.ChannelError)


async def test_an_error_midway_cuts_the_response_short() -> None:
    async def handler(request: anyiii.ApiRequest) -> None:
        async with request.stream_response(200, {"content-type": "text/plain"}) as body:
            await body.send(b"part one, ")
            raise RuntimeError("the producer broke")

    with anyio.fail_after(20):
        async with serving(handler, method="GET") as client:
            async with client.stream("GET", "/s") as response:
                with pytest.raises(httpx.RemoteProtocolError):
                    await response.aread()  # never a complete-looking body


async def test_a_request_that_did_not_come_from_http_cannot_stream() -> None:
    request = anyiii.ApiRequest()
    with pytest.raises(RuntimeError, match="no response channel"):
        request.stream_response()
    with pytest.raises(RuntimeError, match="no response channel"):
        request.event_stream()


async def test_a_bad_status_or_header_is_refused_before_anything_is_sent() -> None:
    refused: list[BaseException] = []

    async def handler(request: anyiii.ApiRequest) -> anyiii.ApiResponse:
        for status, headers in ((99, {}), (200, {"x-a": "b\r\nx-injected: 1"})):
            try:
                request.stream_response(status, headers)
            except ValueError as error:
                refused.append(error)
        return anyiii.ApiResponse(statusCode=200, body="fine")

    with anyio.fail_after(20):
        async with serving(handler, method="GET") as client:
            response = await client.get("/s")
    assert (response.status_code, response.json()) == (200, "fine")
    assert [type(e) for e in refused] == [ValueError, ValueError]


@pytest.mark.bulk
async def test_a_large_upload_streams_through_a_handler_with_flat_memory() -> None:
    """1 GiB posted to an anyiii handler that hashes `request_body` as it arrives: the
    process (engine and worker both) never holds more than the channel's buffer and the
    sockets' chunks, so its peak RSS grows by far less than the upload."""
    size, piece = 1024 * MiB, b"u" * MiB
    got: list[tuple[int, str]] = []

    async def handler(request: anyiii.ApiRequest) -> anyiii.ApiResponse:
        assert request.request_body is not None
        digest, total = hashlib.sha256(), 0
        async for chunk in request.request_body:
            digest.update(chunk)
            total += len(chunk)
        got.append((total, digest.hexdigest()))
        return anyiii.ApiResponse(statusCode=200, body={"bytes": total})

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    expected = hashlib.sha256()
    for _ in range(size // len(piece)):
        expected.update(piece)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with anyio.fail_after(120):
        async with serving(handler) as client:
            response = await client.post(
                "/s", content=upload(), headers={"content-type": "application/octet-stream"}
            )
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert response.status_code == 200, response.text
    assert got == [(size, expected.hexdigest())]
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB for a 1 GiB upload"
