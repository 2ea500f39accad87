"""HTTP-invoked functions end to end: an anyiii worker registers a function served by a
local HTTP server (`http_target.py`, 127.0.0.1), a worker calls it through the embedded
engine, and the engine makes the request itself (spec §3.1, §7.1).

What the server received is checked header by header (the HMAC signature verified the way
a receiver would), and every failure the engine can report is provoked for real: error
statuses, a body that is not JSON, a port nobody listens on, an endpoint slower than the
function's `timeout_ms`, a body cut short. The engine's URL policy is relaxed for these
tests (`HttpFunctionSettings(require_https=False, block_private_ips=False)`), as it must be
for any local endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from http_target import Recorded, Reply, TargetServer, echo_json, target_server

import anyiii
from anyiii.engine import EmbeddedEngine, EngineSettings, HttpFunctionSettings, run

LOCAL = EngineSettings(
    http_functions=HttpFunctionSettings(require_https=False, block_private_ips=False)
)


@asynccontextmanager
async def serving(
    respond: Any = echo_json,
) -> AsyncIterator[tuple[TargetServer, EmbeddedEngine, anyiii.Worker]]:
    """A target server, an engine that may call it, and a worker connected to the engine."""
    async with (
        target_server(respond) as server,
        run(settings=LOCAL) as engine,
        anyiii.connect(engine.url) as worker,
    ):
        yield server, engine, worker


async def call(worker: anyiii.Worker, function_id: str, payload: Any = None) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def failure(worker: anyiii.Worker, function_id: str, payload: Any = None) -> Any:
    with pytest.raises(anyiii.InvocationError) as caught:
        await call(worker, function_id, payload)
    return caught.value


# --- the request and its answer ---------------------------------------------------------------


async def test_a_call_posts_the_payload_and_returns_the_json_answer() -> None:
    with anyio.fail_after(10):
        async with serving() as (server, _, worker):
            worker.register_http_function(
                "orders::create", f"{server.url}/orders?src=iii", headers={"X-Service": "shop"}
            )
            result = await call(worker, "orders::create", {"item": "tea", "qty": 2})
            [request] = server.requests
    sent = {"item": "tea", "qty": 2, "_caller_worker_id": worker.worker_id}
    assert result == {"echo": sent}
    assert (request.method, request.target) == ("POST", "/orders?src=iii")
    assert request.json() == sent
    assert request.header("content-type") == "application/json"
    assert request.header("x-iii-function-path") == "orders::create"
    assert uuid.UUID(request.header("x-iii-invocation-id") or "")
    assert abs(int(request.header("x-iii-timestamp") or 0) - time.time()) < 60
    assert request.header("x-service") == "shop"
    assert request.header("authorization") is None
    assert request.header("x-iii-signature") is None


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_the_registered_method_is_used_with_the_payload_as_body(method: str) -> None:
    with anyio.fail_after(10):
        async with serving() as (server, _, worker):
            worker.register_http_function("fn", f"{server.url}/x", method=method.lower())
            await call(worker, "fn", [1, 2])
    [request] = server.requests
    assert (request.method, request.body) == (method, b"[1,2]")


async def test_hmac_signs_each_request_as_the_receiver_verifies_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANYIII_TEST_HMAC_SECRET", "s3cr3t")
    with anyio.fail_after(10):
        async with serving() as (server, _, worker):
            auth = anyiii.HttpAuthHmac(secret_key="ANYIII_TEST_HMAC_SECRET")
            worker.register_http_function("signed", f"{server.url}/hook", auth=auth)
            await call(worker, "signed", {"n": 1})
            await call(worker, "signed", {"n": 2})
    for request in server.requests:
        assert verify(request, b"s3cr3t")
        assert not verify(request, b"wrong secret")


def verify(request: Recorded, secret: bytes) -> bool:
    """What the function's server does: recompute the signature from the raw body."""
    timestamp = request.header("x-iii-timestamp")
    signed = f"{timestamp}:{base64.b64encode(request.body).decode()}".encode()
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.header("x-iii-signature") or "")


async def test_bearer_and_api_key_auth_send_their_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYIII_TEST_TOKEN", "t0k3n")
    monkeypatch.setenv("ANYIII_TEST_KEY", "k3y")
    with anyio.fail_after(10):
        async with serving() as (server, _, worker):
            bearer = anyiii.HttpAuthBearer(token_key="ANYIII_TEST_TOKEN")
            worker.register_http_function("bearer", f"{server.url}/b", auth=bearer)
            # The wire shape as a plain mapping works too.
            key = {"type": "api_key", "header": "X-Api-Key", "value_key": "ANYIII_TEST_KEY"}
            worker.register_http_function("keyed", f"{server.url}/k", auth=key)
            await call(worker, "bearer", {})
            await call(worker, "keyed", {})
    by_target = {r.target: r for r in server.requests}
    assert by_target["/b"].header("authorization") == "Bearer t0k3n"
    assert by_target["/k"].header("x-api-key") == "k3y"
    assert by_target["/k"].header("authorization") is None


async def test_an_empty_2xx_answer_is_no_result() -> None:
    async def no_content(request: Recorded) -> Reply:
        return Reply(204)

    with anyio.fail_after(10):
        async with serving(no_content) as (server, _, worker):
            worker.register_http_function("quiet", f"{server.url}/q")
            assert await call(worker, "quiet", {}) is None


# --- failures ---------------------------------------------------------------------------------


async def test_error_statuses_are_http_error_unless_the_body_has_its_own_error() -> None:
    async def respond(request: Recorded) -> Reply:
        if request.target == "/down":
            return Reply(503, b"maintenance", content_type="text/plain")
        return Reply.of({"error": {"code": "out_of_stock", "message": "no tea"}}, status=422)

    with anyio.fail_after(10):
        async with serving(respond) as (server, _, worker):
            worker.register_http_function("down", f"{server.url}/down")
            worker.register_http_function("refuses", f"{server.url}/refuses")
            down = await failure(worker, "down")
            refused = await failure(worker, "refuses")
    assert (down.code, down.message) == ("http_error", "HTTP 503 Service Unavailable")
    assert (refused.code, refused.message) == ("out_of_stock", "no tea")


async def test_a_2xx_answer_that_is_not_json_is_an_invalid_response() -> None:
    async def html(request: Recorded) -> Reply:
        return Reply(200, b"<html>hello</html>", content_type="text/html")

    with anyio.fail_after(10):
        async with serving(html) as (server, _, worker):
            worker.register_http_function("html", f"{server.url}/")
            error = await failure(worker, "html")
    assert error.code == "invalid_response"


async def test_a_port_nobody_listens_on_is_a_request_failure() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()  # nothing listens there now
    with anyio.fail_after(10):
        async with serving() as (_, _, worker):
            worker.register_http_function("gone", f"http://127.0.0.1:{port}/x")
            error = await failure(worker, "gone")
    assert error.code == "http_request_failed"
    assert f"127.0.0.1:{port}" in error.message


async def test_a_slow_endpoint_fails_with_a_timeout_at_timeout_ms() -> None:
    # Real sockets: trio's autojump clock would jump over the socket waits, so this is a
    # short real timeout (`test_http_calls.py` runs the 30 s default on the virtual clock).
    never = anyio.Event()

    async def stall(request: Recorded) -> Reply:
        await never.wait()
        raise AssertionError("unreachable")

    with anyio.fail_after(10):
        async with serving(stall) as (server, _, worker):
            worker.register_http_function("slow", f"{server.url}/slow", timeout_ms=200)
            started = anyio.current_time()
            error = await failure(worker, "slow")
            waited = anyio.current_time() - started
            assert len(server.requests) == 1
    assert error.code == "http_request_failed"
    assert "timed out after 200 ms" in error.message
    assert 0.2 <= waited < 5


async def test_a_body_cut_short_is_a_response_failure() -> None:
    async def cut(request: Recorded) -> Reply:
        return Reply(200, b'{"total": 1234567890}', cut_at=5)

    with anyio.fail_after(10):
        async with serving(cut) as (server, _, worker):
            worker.register_http_function("cut", f"{server.url}/")
            error = await failure(worker, "cut")
    assert error.code == "http_response_failed"


async def test_a_failed_call_leaves_the_function_and_the_engine_working() -> None:
    answers = iter([Reply(500), Reply.of({"ok": 1})])

    async def flaky(request: Recorded) -> Reply:
        return next(answers)

    with anyio.fail_after(10):
        async with serving(flaky) as (server, _, worker):
            worker.register_http_function("flaky", f"{server.url}/")
            assert (await failure(worker, "flaky")).code == "http_error"
            assert await call(worker, "flaky") == {"ok": 1}


async def test_calls_run_concurrently_and_each_gets_its_own_answer() -> None:
    async def echo_slowly(request: Recorded) -> Reply:
        await anyio.lowlevel.checkpoint()
        return Reply.of(request.json()["n"])

    results: dict[int, Any] = {}
    with anyio.fail_after(10):
        async with serving(echo_slowly) as (server, _, worker):
            worker.register_http_function("n", f"{server.url}/")

            async def one(n: int) -> None:
                results[n] = await call(worker, "n", {"n": n})

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(one, n)
    assert results == {n: n for n in range(20)}
