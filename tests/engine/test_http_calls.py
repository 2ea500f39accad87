"""The engine's outgoing HTTP requests (`http_calls.py`) over httpx's mock transport.

No sockets, so trio's virtual clock can jump over a function's whole timeout
(`autojump`: the real default of 30 s); asyncio has no such clock and waits a short real
timeout instead. The real-socket behaviour is in `test_http_functions.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from anyiii._engine.actions import HttpCall
from anyiii._engine.http_calls import HttpCaller, fetch
from anyiii._engine.http_targets import HttpRequest, HttpResponse
from anyiii._protocol.frames import ErrorBody


def request(url: str = "http://target.test/fn", **changes: object) -> HttpRequest:
    fields: dict[str, object] = {
        "method": "POST",
        "url": url,
        "headers": (("Content-Type", "application/json"),),
        "body": b'{"a":1}',
        "timeout": 30.0,
        "check_dns": False,
        "max_response_bytes": 1024,
    }
    fields.update(changes)
    return HttpRequest(**fields)  # type: ignore[arg-type]


def timeout_for(anyio_backend: tuple[str, object], virtual: float) -> float:
    """`virtual` seconds under trio's jumping clock; a short real wait under asyncio."""
    return virtual if anyio_backend[0] == "trio" else 0.2


def client(handler: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


async def test_the_request_is_sent_as_built_and_the_answer_read_whole() -> None:
    seen: list[httpx.Request] = []

    async def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(201, content=b'{"ok":true}')

    with anyio.fail_after(5):
        async with client(handler) as http:
            outcome = await fetch(http, request(method="PUT"))
    assert outcome == HttpResponse(201, b'{"ok":true}')
    [sent] = seen
    assert (sent.method, str(sent.url)) == ("PUT", "http://target.test/fn")
    assert sent.content == b'{"a":1}'
    assert sent.headers["content-type"] == "application/json"


@pytest.mark.autojump
async def test_a_silent_endpoint_fails_at_the_timeout_as_a_request_failure(
    anyio_backend: tuple[str, object],
) -> None:
    async def handler(sent: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    timeout = timeout_for(anyio_backend, 30.0)
    with anyio.fail_after(60):
        async with client(handler) as http:
            started = anyio.current_time()
            outcome = await fetch(http, request(timeout=timeout))
            waited = anyio.current_time() - started
    assert isinstance(outcome, ErrorBody)
    assert outcome.code == "http_request_failed"
    assert f"timed out after {timeout * 1000:g} ms" in outcome.message
    assert timeout <= waited < timeout + 5


@pytest.mark.autojump
async def test_a_body_that_stalls_fails_at_the_timeout_as_a_response_failure(
    anyio_backend: tuple[str, object],
) -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"partial":'
        await anyio.sleep_forever()

    async def handler(sent: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stalled())

    with anyio.fail_after(60):
        async with client(handler) as http:
            outcome = await fetch(http, request(timeout=timeout_for(anyio_backend, 5.0)))
    assert isinstance(outcome, ErrorBody)
    assert outcome.code == "http_response_failed"
    assert "timed out" in outcome.message


async def test_a_connection_failure_is_a_request_failure_naming_the_url() -> None:
    async def handler(sent: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=sent)

    with anyio.fail_after(5):
        async with client(handler) as http:
            outcome = await fetch(http, request())
    assert isinstance(outcome, ErrorBody)
    assert outcome.code == "http_request_failed"
    assert "http://target.test/fn" in outcome.message
    assert "ConnectError" in outcome.message


async def test_a_body_cut_short_is_a_response_failure() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b'{"partial":'
        raise httpx.ReadError("connection reset")

    async def handler(sent: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=broken())

    with anyio.fail_after(5):
        async with client(handler) as http:
            outcome = await fetch(http, request())
    assert isinstance(outcome, ErrorBody)
    assert outcome.code == "http_response_failed"


async def test_an_answer_past_the_limit_is_a_response_failure() -> None:
    async def handler(sent: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" + b"1," * 600 + b"1]")

    with anyio.fail_after(5):
        async with client(handler) as http:
            outcome = await fetch(http, request(max_response_bytes=1024))
    assert outcome == ErrorBody("http_response_failed", "the response body exceeds 1024 bytes")


async def test_an_unsendable_request_is_a_request_failure_not_an_exception() -> None:
    async def handler(sent: httpx.Request) -> httpx.Response:
        raise AssertionError("never sent")

    with anyio.fail_after(5):
        async with client(handler) as http:
            bad_header = request(headers=(("X-Bad", "line\nbreak"),))
            outcome = await fetch(http, bad_header)
            unsupported = await fetch(http, request(url="ftp://target.test/fn"))
    assert isinstance(outcome, ErrorBody)
    assert outcome.code == "http_request_failed"
    assert isinstance(unsupported, ErrorBody)
    assert unsupported.code == "http_request_failed"


async def test_a_host_that_resolves_to_a_private_address_is_refused_before_sending() -> None:
    async def handler(sent: httpx.Request) -> httpx.Response:
        raise AssertionError("a blocked URL must not be called")

    with anyio.fail_after(10):
        async with client(handler) as http:
            outcome = await fetch(http, request(url="https://localhost:1/x", check_dns=True))
    assert outcome == ErrorBody("url_validation_failed", "Private IP blocked")


async def test_the_caller_reports_every_call_once_and_refuses_when_not_running() -> None:
    reports: list[tuple[str, HttpResponse | ErrorBody]] = []
    all_in = anyio.Event()

    def report(invocation_id: str, outcome: HttpResponse | ErrorBody) -> None:
        reports.append((invocation_id, outcome))
        if len(reports) == 3:
            all_in.set()

    async def handler(sent: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"1")

    caller = HttpCaller(report, transport=httpx.MockTransport(handler))
    caller.start(HttpCall("before", request()))
    assert reports == [("before", ErrorBody("http_request_failed", "the engine is not running"))]
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(caller.run)
            caller.start(HttpCall("a", request()))
            caller.start(HttpCall("b", request()))
            await all_in.wait()
            tg.cancel_scope.cancel()
    assert sorted(reports[1:], key=lambda r: r[0]) == [
        ("a", HttpResponse(200, b"1")),
        ("b", HttpResponse(200, b"1")),
    ]


async def test_a_failing_report_is_logged_and_the_caller_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reports: list[str] = []
    arrived = {"bad": anyio.Event(), "good": anyio.Event()}

    def report(invocation_id: str, outcome: HttpResponse | ErrorBody) -> None:
        reports.append(invocation_id)
        arrived[invocation_id].set()
        if invocation_id == "bad":
            raise RuntimeError("routing bug")

    async def handler(sent: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    caller = HttpCaller(report, transport=httpx.MockTransport(handler))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(caller.run)
            caller.start(HttpCall("bad", request()))
            await arrived["bad"].wait()
            caller.start(HttpCall("good", request()))
            await arrived["good"].wait()
            tg.cancel_scope.cancel()
    assert reports == ["bad", "good"]
    assert "answering HTTP call bad failed" in caplog.text
