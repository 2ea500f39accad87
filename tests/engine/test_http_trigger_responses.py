"""The `http` trigger over real sockets: how a handler's answer becomes the HTTP response
(spec §10.1, §15.3, §7.3).

The response mapping of a handler's result (status, headers, body) checked case by case,
a handler's error as a 500 envelope, an invalid (1xx) status as a 500, a handler that never
answers as a 504 (its late answer dropped), and a handler's worker leaving mid-request as
a 500 `invocation_stopped`. Handlers are a raw-transport worker's
(`http_trigger_support.served`).
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from http_trigger_support import http_engine, served

from anyiii.engine import HttpLimits

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


def test_an_informational_status_becomes_a_500_invalid_response() -> None:
    """1xx cannot be the final answer to a request: the handler's result is invalid."""
    from anyiii._engine.http import map_response
    from anyiii._protocol.frames import to_raw

    reply = map_response(to_raw({"status_code": 101, "body": {"x": 1}}))
    assert reply.status == 500
    assert b'"invalid_response"' in reply.body
