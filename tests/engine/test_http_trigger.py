"""The `http` trigger over real sockets (spec §10.1, §15.3, §15.4, §16.4, §7.3).

Real HTTP requests (httpx) go to `engine.http_url`; the bound functions are served by a
raw-transport worker (`RawWorker`), and once by an anyiii worker. The request object the
handler receives and the response mapping of its result are checked field by field.

Every engine here is followed by `gc.collect()`, so that a listener socket the engine
fails to close shows up (as a ResourceWarning, an error under this suite's settings) in the
test that leaked it instead of in whichever test the garbage collector happens to run in.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import httpx
import pytest
from engine_peers import (
    Fail,
    RawWorker,
    http_binding,
    raw_worker,
    read_to_eof,
)

from anyiii._worker import connect
from anyiii.engine import EmbeddedEngine, EngineSettings, HttpLimits, run


@asynccontextmanager
async def http_engine(limits: HttpLimits | None = None) -> AsyncIterator[EmbeddedEngine]:
    settings = EngineSettings(http=limits or HttpLimits())
    try:
        async with run(settings=settings) as engine:
            assert engine.http_url is not None
            yield engine
    finally:
        gc.collect()


@asynccontextmanager
async def served(
    engine: EmbeddedEngine,
) -> AsyncIterator[tuple[RawWorker, list[dict[str, Any]], anyio.Event]]:
    """A raw worker with the routes below bound. Yields (worker, the `invokefunction`
    frames its HTTP handlers received, the event that lets `http::slow` answer)."""
    seen: list[dict[str, Any]] = []
    release = anyio.Event()

    async def user(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        return {"status_code": 200, "body": {"id": frame["data"]["path_params"].get("id")}}

    async def respond(frame: dict[str, Any]) -> Any:
        """Answers with whatever the request's JSON body says under "result"."""
        seen.append(frame)
        return frame["data"]["body"]["result"]

    async def record(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        return {"body": {"seen": True}}

    async def fail(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        raise Fail("custom_code", "it broke")

    async def hang(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        await anyio.sleep_forever()

    async def slow(frame: dict[str, Any]) -> Any:
        seen.append(frame)
        await release.wait()
        return {"status_code": 201}

    functions = {
        "http::user": user,
        "http::respond": respond,
        "http::record": record,
        "http::fail": fail,
        "http::hang": hang,
        "http::slow": slow,
    }
    routes = [
        http_binding("http::user", "users/:id", "GET", metadata={"route": "users"}),
        http_binding("http::record", "/orders/:order_id/items/:item", "get"),
        http_binding("http::record", "echo", "POST"),
        http_binding("http::respond", "respond", "POST"),
        http_binding("http::fail", "fail"),
        http_binding("http::hang", "hang"),
        http_binding("http::slow", "slow"),
        http_binding("http::user", "users/:id", "HEAD"),
    ]
    async with raw_worker(engine.url, "http-worker", functions, routes) as worker:
        yield worker, seen, release


async def test_route_with_params_delivers_the_request_object() -> None:
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine) as (_, seen, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.get(
                "/users/123",
                params={"q": "shoes", "empty": "", "spaced": "a b"},
                headers={"X-Custom-Header": "Mixed-Case Value"},
            )
            assert response.status_code == 200
            assert response.json() == {"id": "123"}
            [frame] = seen
            assert frame["metadata"] == {"route": "users"}
            request = frame["data"]
            assert request["path_params"] == {"id": "123"}
            assert request["path"] == "users/:id"
            assert request["method"] == "GET"
            assert request["query_params"] == {"q": "shoes", "empty": "", "spaced": "a b"}
            assert request["headers"]["x-custom-header"] == "Mixed-Case Value"
            assert request["headers"]["host"] == response.request.headers["host"]
            assert all(name == name.lower() for name in request["headers"])
            assert request["body"] is None
            assert request["trigger"] == {"type": "http", "path": "users/:id", "method": "GET"}
            assert "_caller_worker_id" not in request  # an engine-originated call (§10.1)
            # Every request gets a fresh UUID invocation id.
            await client.get("/users/124")
            assert seen[1]["invocation_id"] != frame["invocation_id"]


async def test_head_route_answers_headers_without_a_body() -> None:
    """HEAD is one of the methods a binding may name (§10.1): the handler's answer comes
    back without a body."""
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine) as (_, seen, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.head("/users/5")
            assert response.status_code == 200
            assert response.content == b""
            assert [f["data"]["method"] for f in seen] == ["HEAD"]
            # The connection is still usable afterwards.
            assert (await client.get("/users/6")).json() == {"id": "6"}


async def test_leading_slash_lower_case_method_and_several_params() -> None:
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine) as (_, seen, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.get("/orders/7/items/blue-hat")
            assert response.status_code == 200
            assert response.json() == {"seen": True}
            [frame] = seen
            request = frame["data"]
            assert request["path_params"] == {"order_id": "7", "item": "blue-hat"}
            assert request["method"] == "GET"
            # The pattern as registered, without the optional leading slash (route key §10.1).
            assert request["path"].lstrip("/") == "orders/:order_id/items/:item"


@pytest.mark.parametrize(
    ("content_type", "content", "body"),
    [
        ("application/json", b'{"name":"Ada","n":[1,2]}', {"name": "Ada", "n": [1, 2]}),
        ("application/json; charset=utf-8", b'{"name":"Ada"}', {"name": "Ada"}),
        ("application/vnd.api+json", b'{"name":"Ada"}', None),
        ("text/plain", b'{"name":"Ada"}', None),
        ("application/x-www-form-urlencoded", b"name=Ada", None),
        (None, b'{"name":"Ada"}', None),
        ("application/json", b"{not json", None),
        ("application/json", b"", None),
    ],
    ids=[
        "json",
        "json-charset",
        "other-json-type",
        "text",
        "form",
        "no-content-type",
        "invalid-json",
        "empty",
    ],
)
async def test_body_is_parsed_only_for_application_json(
    content_type: str | None, content: bytes, body: Any
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine) as (_, seen, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.post("/echo", content=content, headers=headers)
            assert response.status_code == 200
            [frame] = seen
            assert frame["data"]["method"] == "POST"
            assert frame["data"]["body"] == body


RESPONSES: dict[str, tuple[Any, int, dict[str, str], bytes]] = {
    # name: (handler result, status, headers expected among the response's, exact body)
    "status_code": (
        {"status_code": 201, "body": {"ok": True}},
        201,
        {"content-type": "application/json"},
        b'{"ok":true}',
    ),
    "statusCode-fallback": (
        {"statusCode": 202, "body": {"ok": True}},
        202,
        {"content-type": "application/json"},
        b'{"ok":true}',
    ),
    "status_code-wins": ({"status_code": 203, "statusCode": 299}, 203, {}, b"{}"),
    "status-not-an-integer": ({"status_code": "201", "body": []}, 200, {}, b"[]"),
    "headers-object": (
        {"headers": {"X-A": "1", "X-Two": "two"}, "body": {"k": 1}},
        200,
        {"x-a": "1", "x-two": "two", "content-type": "application/json"},
        b'{"k":1}',
    ),
    "headers-list": (
        {"headers": ["X-C: 3", "X-D:four"], "body": {"k": 1}},
        200,
        {"x-c": "3", "x-d": "four"},
        b'{"k":1}',
    ),
    "string-body-explicit-type": (
        {"status_code": 200, "headers": {"content-type": "text/plain"}, "body": "hello"},
        200,
        {"content-type": "text/plain"},
        b"hello",
    ),
    "object-body-other-type": (
        {"headers": {"Content-Type": "text/html"}, "body": {"a": 1}},
        200,
        {"content-type": "text/html"},
        b'{"a":1}',
    ),
    "null-body-explicit-type": (
        {"headers": {"content-type": "text/plain"}, "body": None},
        200,
        {"content-type": "text/plain"},
        b"",
    ),
    "string-body-no-type": ({"body": "hello"}, 200, {}, b'"hello"'),
    "no-body": ({"status_code": 204}, 204, {}, b""),
    "empty-object": ({}, 200, {"content-type": "application/json"}, b"{}"),
    "null-result": (None, 200, {"content-type": "application/json"}, b"{}"),
}


@pytest.mark.parametrize("case", list(RESPONSES))
async def test_response_mapping(case: str) -> None:
    result, status, headers, body = RESPONSES[case]
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.post("/respond", json={"result": result})
            assert response.status_code == status
            for name, value in headers.items():
                assert response.headers.get(name) == value, (name, response.headers)
            assert response.content == body


async def test_handler_error_is_a_500_envelope() -> None:
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.get("/fail")
            assert response.status_code == 500
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert set(error) == {"code", "message", "error_id"}
            assert error["code"] == "custom_code"
            assert error["message"] == "it broke"
            assert isinstance(error["error_id"], str)
            assert error["error_id"]
            again = (await client.get("/fail")).json()["error"]["error_id"]
            assert again != error["error_id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("POST", "/users/1"), ("GET", "/users"), ("GET", "/users/1/extra")],
)
async def test_unknown_route_is_a_404_envelope(method: str, path: str) -> None:
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine) as (_, seen, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.request(method, path)
            assert response.status_code == 404
            assert response.json() == {"error": {"code": "NOT_FOUND", "message": "Not Found"}}
            assert seen == []


async def _exchange(port: int, request: list[bytes]) -> bytes:
    """Send `request` (head, then body pieces), then read the answer until the server
    closes, as HTTP/1.1 clients do (httpx included); a reset ends the answer where it
    stands. The server may stop reading once it answered, so a failed send is expected."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            for piece in request:
                await stream.send(piece)
        return await read_to_eof(stream)


def _oversized_request(length: int, chunked: bool) -> list[bytes]:
    piece = 16 * 1024
    pieces = [b"x" * min(piece, length - start) for start in range(0, length, piece)]
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
        pieces = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    else:
        framing = b"Content-Length: %d\r\n" % length
    head = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing + b"\r\n"
    )
    return [head, *pieces]


_JSON_BODY = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("length", "chunked"),
    [(4096, False), (2**20, False), (4096, True), (2**20, True)],
    ids=["small", "large", "small-chunked", "large-chunked"],
)
async def test_body_over_the_limit_is_413(length: int, chunked: bool) -> None:
    """The client gets its 413 even when the engine stops reading a body that is still on
    its way: the listener must not reset the connection under its own answer (RFC 9112
    §9.6: close the sending side first and keep reading for a while). Only JSON bodies are
    read whole (to parse them into `body`), so only they have the limit; other bodies
    stream to the handler (`test_http_streaming.py`)."""
    limits = HttpLimits(max_body=1024)
    with anyio.fail_after(20):
        async with http_engine(limits) as engine, served(engine) as (_, seen, _):
            assert engine.http_port is not None
            answer = await _exchange(engine.http_port, _oversized_request(length, chunked))
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
            assert b'"code":"PAYLOAD_TOO_LARGE"' in answer
            assert seen == []  # the handler never ran
            async with httpx.AsyncClient(base_url=engine.http_url or "") as client:
                response = await client.post("/echo", content=b"x" * 1024, headers=_JSON_BODY)
                assert response.status_code == 200
            assert len(seen) == 1


async def test_body_over_the_limit_is_413_for_httpx() -> None:
    limits = HttpLimits(max_body=1024)
    with anyio.fail_after(20):
        async with (
            http_engine(limits) as engine,
            served(engine) as (_, seen, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.post("/echo", content=b"x" * 2048, headers=_JSON_BODY)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
            assert seen == []


async def test_handler_that_never_answers_is_504_and_its_late_answer_is_dropped() -> None:
    limits = HttpLimits(request_timeout=0.3)
    with anyio.fail_after(20):
        async with (
            http_engine(limits) as engine,
            served(engine) as (worker, seen, release),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            response = await client.get("/hang")
            assert response.status_code == 504
            response = await client.get("/slow")
            assert response.status_code == 504
            assert [f["function_id"] for f in seen] == ["http::hang", "http::slow"]
            release.set()  # http::slow answers now, long after its request gave up
            assert (await client.get("/slow")).status_code == 201
            assert (await client.get("/users/9")).json() == {"id": "9"}
            assert await worker.result("engine::functions::list", {})


async def test_handler_worker_gone_mid_request_is_500_invocation_stopped() -> None:
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            responses: list[httpx.Response] = []

            async def request() -> None:
                responses.append(await client.get("/hang"))

            async with anyio.create_task_group() as tg, served(engine) as (worker, _, _):
                tg.start_soon(request)
                await worker.wait_until(lambda: bool(worker.dispatched))
                # Leaving closes the worker; its request is answered at once.
            [response] = responses
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "invocation_stopped"
            # Its routes went with it.
            response = await client.get("/users/1")
            assert response.status_code == 404


async def test_unbinding_a_route_removes_it() -> None:
    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            served(engine) as (worker, _, _),
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            binding = http_binding("http::user", "extra/:id")
            await worker.send(binding)
            await worker.result("engine::functions::list", {})
            assert (await client.get("/extra/5")).json() == {"id": "5"}
            unbinding = {"type": "unregistertrigger", "id": binding["id"], "trigger_type": "http"}
            await worker.send(unbinding)
            await worker.result("engine::functions::list", {})
            assert (await client.get("/extra/5")).status_code == 404
            assert (await client.get("/users/5")).status_code == 200


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /users/1 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /users/1 HTTP/1.1\r\nno colon here\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ],
    ids=["not-http", "bad-content-length", "bad-header", "binary"],
)
async def test_malformed_request_is_400_and_the_listener_keeps_serving(
    request_bytes: bytes,
) -> None:
    with anyio.fail_after(20):
        async with http_engine() as engine, served(engine) as (_, seen, _):
            assert engine.http_port is not None
            async with await anyio.connect_tcp("127.0.0.1", engine.http_port) as stream:
                await stream.send(request_bytes)
                answer = await read_to_eof(stream)
            assert answer.startswith(b"HTTP/1.1 400 "), answer
            assert seen == []
            async with httpx.AsyncClient(base_url=engine.http_url or "") as client:
                assert (await client.get("/users/2")).json() == {"id": "2"}


async def test_keep_alive_connection_serves_many_requests() -> None:
    with anyio.fail_after(20):
        async with http_engine() as engine, served(engine) as (_, seen, _):
            assert engine.http_port is not None
            async with await anyio.connect_tcp("127.0.0.1", engine.http_port) as stream:
                pipelined = b"".join(
                    f"GET /users/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in range(3)
                )
                await stream.send(pipelined + b"GET /users/3 HTTP/1.1\r\nHost: x\r\n")
                await stream.send(b"Connection: close\r\n\r\n")
                answer = await read_to_eof(stream)
            assert answer.count(b"HTTP/1.1 200 ") == 4
            assert [f["data"]["path_params"]["id"] for f in seen] == ["0", "1", "2", "3"]


async def test_anyiii_worker_serves_an_http_route() -> None:
    """Acceptance checklist §16.6 item 6, with the anyiii worker runtime as the handler."""
    received: list[Any] = []

    async def hello(data: dict[str, Any]) -> Any:
        received.append(data)
        name = data["path_params"]["name"]
        return {"status_code": 201, "body": {"hello": name}, "headers": {"X-Served-By": "anyiii"}}

    with anyio.fail_after(20):
        async with (
            http_engine() as engine,
            connect(engine.url, worker_name="anyiii-http", reconnect=False) as worker,
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            worker.register_function("hello", hello)
            await worker.register_trigger(
                "http", "hello", {"api_path": "hello/:name", "http_method": "GET"}
            )
            # Frames are handled in order: once this call returns, the route is bound.
            await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            response = await client.get("/hello/ada", params={"x": "1"})
            assert response.status_code == 201
            assert response.json() == {"hello": "ada"}
            assert response.headers["content-type"] == "application/json"
            assert response.headers["x-served-by"] == "anyiii"
            [data] = received
            assert data["query_params"] == {"x": "1"}
            assert data["path"] == "hello/:name"


def test_an_informational_status_becomes_a_500_invalid_response() -> None:
    """1xx cannot be the final answer to a request: the handler's result is invalid."""
    from anyiii._engine.http import map_response
    from anyiii._protocol.frames import to_raw

    reply = map_response(to_raw({"status_code": 101, "body": {"x": 1}}))
    assert reply.status == 500
    assert b'"invalid_response"' in reply.body
