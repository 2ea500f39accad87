"""The `http` trigger over real sockets: requests and routes (spec §10.1, §16.4).

Real HTTP requests (httpx) go to `engine.http_url`; the bound functions are served by a
raw-transport worker (`http_trigger_support.served`), and once by an anyiii worker. The
request object the handler receives is checked field by field: path and query parameters,
headers, the method (HEAD included), the body parsed only for `application/json`; unknown
routes are a 404, and an unbound route is gone. Responses are in
`test_http_trigger_responses.py`, the listener's limits in `test_http_trigger_listener.py`.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from engine_peers import http_binding
from http_trigger_support import http_engine, served

from anyiii._worker import connect


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
