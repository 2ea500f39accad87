"""`ApiRequest` / `ApiResponse` with real HTTP requests to the embedded engine's `http`
trigger, served by an anyiii worker, on asyncio and trio."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import msgspec
import pytest

import anyiii


class CreateUser(msgspec.Struct):
    name: str
    age: int


@asynccontextmanager
async def http_worker() -> AsyncIterator[tuple[anyiii.Worker, httpx.AsyncClient]]:
    try:
        async with (
            anyiii.engine.run(http_port=0) as engine,
            anyiii.connect(engine.url, reconnect=False) as worker,
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            yield worker, client
    finally:
        gc.collect()  # a leaked listener shows up here, not in a later test


async def bind(worker: anyiii.Worker, function_id: str, method: str, path: str) -> None:
    await worker.register_trigger("http", function_id, {"api_path": path, "http_method": method})
    # Frames are handled in order: once a call on this connection returns, the route is bound.
    await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})


def test_the_status_reaches_the_wire_as_the_key_engines_read() -> None:
    """Spec §15.3: the real engine reads only `status_code`."""
    encoded = msgspec.json.decode(
        msgspec.json.encode(anyiii.ApiResponse(statusCode=201, body={"id": 7}))
    )
    assert encoded == {"status_code": 201, "body": {"id": 7}}
    assert "statusCode" not in encoded
    assert msgspec.json.encode(anyiii.ApiResponse()) == b"{}"  # status 200, body {}
    with pytest.raises(ValueError, match="HTTP status"):
        anyiii.ApiResponse(statusCode=1000)
    with pytest.raises(ValueError, match="HTTP status"):
        anyiii.ApiResponse(statusCode=True)


async def test_an_api_response_sets_status_body_and_headers() -> None:
    seen: list[anyiii.ApiRequest[Any]] = []

    async def get_user(req: anyiii.ApiRequest) -> anyiii.ApiResponse:
        seen.append(req)
        return anyiii.ApiResponse(
            statusCode=201,
            body={"id": req.path_params["id"], "q": req.query_params.get("q")},
            headers={"x-served-by": "anyiii"},
        )

    with anyio.fail_after(20):
        async with http_worker() as (worker, client):
            worker.register_function("users::get", get_user)
            await bind(worker, "users::get", "GET", "users/:id")
            response = await client.get("/users/42", params={"q": "shoes"}, headers={"X-A": "b"})
            assert response.status_code == 201
            assert response.json() == {"id": "42", "q": "shoes"}
            assert response.headers["x-served-by"] == "anyiii"
            assert response.headers["content-type"] == "application/json"
            [req] = seen
            assert isinstance(req, anyiii.ApiRequest)
            assert req.method == "GET"
            assert req.path == "users/:id"
            assert req.path_params == {"id": "42"}
            assert req.headers["x-a"] == "b"
            assert req.body is None


async def test_a_typed_body_is_decoded_and_a_bad_one_is_a_clear_error() -> None:
    async def create(req: anyiii.ApiRequest[CreateUser]) -> anyiii.ApiResponse[dict[str, Any]]:
        assert isinstance(req.body, CreateUser)
        return anyiii.ApiResponse(statusCode=201, body={"created": req.body.name})

    with anyio.fail_after(20):
        async with http_worker() as (worker, client):
            worker.register_function("users::create", create)
            await bind(worker, "users::create", "POST", "users")
            response = await client.post("/users", json={"name": "Ada", "age": 36})
            assert (response.status_code, response.json()) == (201, {"created": "Ada"})

            bad = await client.post("/users", json={"name": "Ada", "age": "old"})
            assert bad.status_code == 500
            error = bad.json()["error"]
            assert error["code"] == "invocation_failed"
            assert "Expected `int`, got `str`" in error["message"]

            info = await worker.trigger_async(
                {
                    "function_id": "engine::functions::info",
                    "payload": {"function_id": "users::create"},
                }
            )
            assert "CreateUser" in str(info["request_schema"])


async def test_plain_dicts_text_bodies_and_errors() -> None:
    async def plain(data: dict[str, Any]) -> dict[str, Any]:
        return {"status_code": 202, "body": {"method": data["method"]}}

    async def text(req: anyiii.ApiRequest) -> anyiii.ApiResponse[str]:
        return anyiii.ApiResponse(body="hello", headers=["content-type: text/plain"])

    async def broken(req: anyiii.ApiRequest) -> anyiii.ApiResponse:
        raise RuntimeError("the database is down")

    with anyio.fail_after(20):
        async with http_worker() as (worker, client):
            worker.register_function("h::plain", plain)
            worker.register_function("h::text", text)
            worker.register_function("h::broken", broken)
            await bind(worker, "h::plain", "DELETE", "plain")
            await bind(worker, "h::text", "GET", "text")
            await bind(worker, "h::broken", "GET", "broken")

            response = await client.delete("/plain")
            assert (response.status_code, response.json()) == (202, {"method": "DELETE"})

            response = await client.get("/text")
            assert response.status_code == 200
            assert response.text == "hello"
            assert response.headers["content-type"] == "text/plain"

            response = await client.get("/broken")
            assert response.status_code == 500
            assert response.json()["error"]["message"] == "the database is down"


async def test_an_invalid_status_from_a_handler_is_an_error_not_a_hang() -> None:
    async def invalid(req: anyiii.ApiRequest) -> anyiii.ApiResponse:
        return anyiii.ApiResponse(statusCode=99)

    with anyio.fail_after(20):
        async with http_worker() as (worker, client):
            worker.register_function("h::invalid", invalid)
            await bind(worker, "h::invalid", "GET", "invalid")
            response = await client.get("/invalid")
            assert response.status_code == 500
            assert "HTTP status" in response.json()["error"]["message"]


def test_pydantic_models_from_official_sdk_code_are_encoded_with_a_readable_status() -> None:
    """Handlers written for the official SDK return its pydantic `HttpResponse`; anyiii
    encodes it by alias as that SDK does, but sends the status as `status_code`, the key
    the real engine reads (spec §15.3), where the official SDK sends `statusCode`."""
    from iii_helpers.http import HttpResponse

    from anyiii._protocol.frames import decode_value, to_raw

    encoded = decode_value(to_raw(HttpResponse(statusCode=201, body={"id": 1}, headers={})))
    assert encoded == {"status_code": 201, "body": {"id": 1}, "headers": {}}
    with pytest.raises(TypeError, match="cannot encode a object"):
        to_raw(object())
