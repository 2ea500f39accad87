"""Middleware and conditions of the `http` trigger, over real sockets (spec §10.1, §7.3).

Real HTTP requests (httpx) go to the embedded engine; the middleware, conditions and
handlers are served by a raw-transport worker (`RawWorker`) that records, in order, every
function the engine called and what it was called with. The order is the real engine's:
engine-wide middleware, the route's condition, the route's middleware, the handler.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from engine_peers import Fail, RawWorker, new_id, raw_worker
from msgspec import Raw

from anyiii._engine.http_middleware import before_handler
from anyiii._engine.providers import HttpRoutes
from anyiii._protocol.frames import ErrorBody, RegisterTrigger, decode_value, to_raw
from anyiii.engine import EmbeddedEngine, EngineSettings, HttpLimits, run

HANDLER = "h::handler"


def route(path: str, function_id: str = HANDLER, **config: Any) -> dict[str, Any]:
    """An `http` binding of `GET /path` with extra config keys (middleware, condition)."""
    return {
        "type": "registertrigger",
        "id": new_id(),
        "trigger_type": "http",
        "function_id": function_id,
        "config": {"api_path": path, "http_method": "GET", **config},
    }


@dataclass
class Calls:
    """What the engine called, in order, and the `data` of each call."""

    order: list[str] = field(default_factory=list)
    data: dict[str, list[Any]] = field(default_factory=dict)
    release: anyio.Event = field(default_factory=anyio.Event)

    def record(self, frame: dict[str, Any]) -> None:
        self.order.append(frame["function_id"])
        self.data.setdefault(frame["function_id"], []).append(frame["data"])


def functions(calls: Calls) -> dict[str, Any]:
    """The middleware, conditions and handler the tests bind, each recording its call."""

    def answering(value: Any) -> Any:
        async def serve(frame: dict[str, Any]) -> Any:
            calls.record(frame)
            return value

        return serve

    async def fail(frame: dict[str, Any]) -> Any:
        calls.record(frame)
        raise Fail("auth_broken", "the key store is down")

    async def hang(frame: dict[str, Any]) -> Any:
        calls.record(frame)
        await calls.release.wait()
        return {"action": "continue"}

    deny = {
        "action": "respond",
        "response": {
            "status_code": 403,
            "body": {"denied": True},
            "headers": {"x-denied-by": "mw::deny"},
        },
    }
    return {
        "mw::a": answering({"action": "continue"}),
        "mw::b": answering({"action": "continue"}),
        "mw::c": answering({"action": "continue"}),
        "mw::deny": answering(deny),
        "mw::bare": answering({"action": "respond"}),
        "mw::odd": answering({"action": "deny"}),
        "mw::list": answering(["continue"]),
        "mw::null": answering(None),
        "mw::fail": fail,
        "mw::hang": hang,
        "cond::false": answering(False),
        "cond::true": answering(True),
        "cond::zero": answering(0),
        "cond::null": answering(None),
        "cond::text": answering("false"),
        "cond::fail": fail,
        "cond::hang": hang,
        HANDLER: answering({"status_code": 200, "body": {"handled": True}}),
    }


@asynccontextmanager
async def gated(
    routes: Sequence[dict[str, Any]],
    *,
    engine_wide: tuple[str, ...] = (),
    request_timeout: float = 30.0,
) -> AsyncIterator[tuple[httpx.AsyncClient, Calls, RawWorker, EmbeddedEngine]]:
    """An engine (with `engine_wide` middleware), a worker serving `functions()` with
    `routes` bound, and an HTTP client of the engine's REST port."""
    settings = EngineSettings(
        http=HttpLimits(request_timeout=request_timeout), http_middleware=engine_wide
    )
    calls = Calls()
    try:
        async with (
            run(settings=settings) as engine,
            raw_worker(engine.url, "gates", functions(calls), routes) as worker,
            httpx.AsyncClient(base_url=engine.http_url or "") as client,
        ):
            yield client, calls, worker, engine
    finally:
        gc.collect()  # a leaked listener socket fails this test, not a later one


async def test_middlewares_run_in_order_with_the_request_then_the_handler() -> None:
    with anyio.fail_after(20):
        async with gated(
            [route("items/:id", middleware_function_ids=["mw::a", "mw::b", "mw::c"])]
        ) as (client, calls, _, _):
            response = await client.get("/items/7", params={"q": "1"}, headers={"X-Key": "k"})
            assert response.status_code == 200
            assert response.json() == {"handled": True}
            assert calls.order == ["mw::a", "mw::b", "mw::c", HANDLER]
            [given] = calls.data["mw::a"]
            headers = given["request"].pop("headers")
            assert headers["x-key"] == "k"
            assert headers["host"] == response.request.headers["host"]
            assert given == {
                "phase": "preHandler",
                "request": {
                    "path_params": {"id": "7"},
                    "query_params": {"q": "1"},
                    "method": "GET",
                },
                "context": {},
            }
            # Nothing accumulates in `context` from one middleware to the next.
            assert calls.data["mw::c"][0]["context"] == {}
            assert calls.data["mw::c"][0]["request"]["headers"] == headers


async def test_respond_answers_at_once_and_nothing_after_it_runs() -> None:
    with anyio.fail_after(20):
        async with gated(
            [
                route(
                    "guarded",
                    middleware_function_ids=["mw::a", "mw::deny", "mw::b"],
                    condition_function_id="cond::true",
                ),
                route("bare", middleware_function_ids=["mw::bare"]),
            ]
        ) as (client, calls, _, _):
            response = await client.get("/guarded")
            assert response.status_code == 403
            assert response.json() == {"denied": True}
            assert response.headers["x-denied-by"] == "mw::deny"
            assert response.headers["content-type"] == "application/json"
            assert calls.order == ["cond::true", "mw::a", "mw::deny"]
            # A respond without a response: 200 with a JSON null body, as the real engine.
            response = await client.get("/bare")
            assert (response.status_code, response.content) == (200, b"null")
            assert HANDLER not in calls.order


@pytest.mark.parametrize("answer", ["mw::odd", "mw::list", "mw::null"])
async def test_an_answer_that_is_no_action_is_logged_and_taken_as_continue(
    answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The real engine's rule (views.rs `execute_middleware`): anything but `continue` or
    `respond` lets the request through, with a warning."""
    with anyio.fail_after(20):
        async with gated([route("odd", middleware_function_ids=[answer])]) as (client, calls, *_):
            with caplog.at_level(logging.WARNING, logger="anyiii.engine.http"):
                response = await client.get("/odd")
            assert response.status_code == 200
            assert calls.order == [answer, HANDLER]
            assert f"middleware {answer} answered" in caplog.text


async def test_a_failing_middleware_is_a_500_with_its_own_code_and_message() -> None:
    with anyio.fail_after(20):
        async with gated(
            [
                route("broken", middleware_function_ids=["mw::fail", "mw::a"]),
                route("missing", middleware_function_ids=["mw::nowhere"]),
            ]
        ) as (client, calls, _, _):
            response = await client.get("/broken")
            assert response.status_code == 500
            error = response.json()["error"]
            assert (error["code"], error["message"]) == ("auth_broken", "the key store is down")
            assert len(error["error_id"]) == 16
            assert calls.order == ["mw::fail"]
            # A middleware nobody serves fails closed too.
            response = await client.get("/missing")
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "function_not_found"
            assert HANDLER not in calls.order


async def test_a_middleware_that_does_not_answer_in_time_is_a_504() -> None:
    with anyio.fail_after(20):
        async with gated(
            [route("slow", middleware_function_ids=["mw::hang", "mw::a"])], request_timeout=0.3
        ) as (client, calls, worker, _):
            response = await client.get("/slow")
            assert response.status_code == 504
            error = response.json()["error"]
            assert error["code"] == "MIDDLEWARE_TIMEOUT"
            assert "mw::hang" in error["message"]
            assert "error_id" not in error
            assert calls.order == ["mw::hang"]
            calls.release.set()  # its late answer is dropped; the engine keeps serving
            assert (await client.get("/slow")).status_code == 200
            assert await worker.result("engine::functions::list", {})


async def test_a_false_condition_is_a_422_and_the_handler_is_not_called() -> None:
    with anyio.fail_after(20):
        async with gated([route("items/:id", condition_function_id="cond::false")]) as (
            client,
            calls,
            _,
            _,
        ):
            response = await client.get("/items/3", params={"q": "1"})
            assert response.status_code == 422
            assert response.json() == {
                "error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"},
                "skipped": True,
            }
            assert calls.order == ["cond::false"]
            # The condition gets the request object, as the handler would.
            [given] = calls.data["cond::false"]
            assert given["path_params"] == {"id": "3"}
            assert given["query_params"] == {"q": "1"}
            assert given["path"] == "items/:id"
            assert given["trigger"] == {"type": "http", "path": "items/:id", "method": "GET"}
            assert "request_body" not in given
            assert "response" not in given


@pytest.mark.parametrize("condition", ["cond::true", "cond::zero", "cond::null", "cond::text"])
async def test_anything_but_a_literal_false_calls_the_handler(condition: str) -> None:
    with anyio.fail_after(20):
        async with gated([route("open", condition_function_id=condition)]) as (client, calls, *_):
            response = await client.get("/open")
            assert response.status_code == 200
            assert response.json() == {"handled": True}
            assert calls.order == [condition, HANDLER]


async def test_a_failing_or_silent_condition_answers_instead_of_the_handler() -> None:
    with anyio.fail_after(20):
        async with gated(
            [
                route("broken", condition_function_id="cond::fail"),
                route("slow", condition_function_id="cond::hang"),
            ],
            request_timeout=0.3,
        ) as (client, calls, _, _):
            response = await client.get("/broken")
            assert response.status_code == 500
            error = response.json()["error"]
            assert (error["code"], error["message"]) == ("auth_broken", "the key store is down")
            assert "error_id" in error
            response = await client.get("/slow")
            assert response.status_code == 504
            assert response.json()["error"]["code"] == "TIMEOUT"
            assert calls.order == ["cond::fail", "cond::hang"]


async def test_engine_wide_middleware_runs_first_then_the_condition_then_the_routes() -> None:
    with anyio.fail_after(20):
        async with gated(
            [
                route(
                    "both", middleware_function_ids=["mw::c"], condition_function_id="cond::true"
                ),
                route("plain"),
                route("skipped", condition_function_id="cond::false"),
            ],
            engine_wide=("mw::a", "mw::b"),
        ) as (client, calls, _, _):
            assert (await client.get("/both")).status_code == 200
            assert calls.order == ["mw::a", "mw::b", "cond::true", "mw::c", HANDLER]
            calls.order.clear()
            assert (await client.get("/plain")).status_code == 200
            assert calls.order == ["mw::a", "mw::b", HANDLER]
            calls.order.clear()
            assert (await client.get("/skipped")).status_code == 422
            assert calls.order == ["mw::a", "mw::b", "cond::false"]
            calls.order.clear()
            assert (await client.get("/nowhere")).status_code == 404
            assert calls.order == []  # no route, no middleware


async def test_an_engine_wide_respond_skips_the_condition_and_the_route() -> None:
    with anyio.fail_after(20):
        async with gated(
            [route("x", middleware_function_ids=["mw::a"], condition_function_id="cond::true")],
            engine_wide=("mw::deny", "mw::b"),
        ) as (client, calls, _, _):
            response = await client.get("/x")
            assert response.status_code == 403
            assert calls.order == ["mw::deny"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"middleware_function_ids": "mw::a"}, "middleware_function_ids must be a list"),
        ({"middleware_function_ids": ["mw::a", 3]}, "middleware_function_ids must be a list"),
        ({"middleware_function_ids": ["mw::a", ""]}, "of non-empty strings"),
        ({"middleware_function_ids": [" "]}, "of non-empty strings"),
        ({"middleware_function_ids": {"a": 1}}, "middleware_function_ids must be a list"),
        ({"condition_function_id": ""}, "condition_function_id must be a non-empty string"),
        ({"condition_function_id": ["cond::true"]}, "condition_function_id must be a non-empty"),
        ({"condition_function_id": False}, "condition_function_id must be a non-empty string"),
    ],
)
async def test_a_malformed_middleware_or_condition_refuses_the_binding(
    config: dict[str, Any], message: str
) -> None:
    with anyio.fail_after(20):
        async with gated([]) as (client, calls, worker, engine):
            binding = route("refused", **config)
            await worker.send(binding)
            await worker.result("engine::functions::list", {})  # frames are handled in order
            [refusal] = [f for f in worker.received if f["type"] == "triggerregistrationresult"]
            assert refusal["id"] == binding["id"]
            assert refusal["error"]["code"] == "trigger_registration_failed"
            assert message in refusal["error"]["message"]
            assert engine.http_routes.match("GET", "/refused") is None
            assert (await client.get("/refused")).status_code == 404
            assert calls.order == []


async def test_null_middleware_and_condition_mean_none() -> None:
    with anyio.fail_after(20):
        async with gated(
            [route("n", middleware_function_ids=None, condition_function_id=None)]
        ) as (client, calls, _, _):
            assert (await client.get("/n")).status_code == 200
            assert calls.order == [HANDLER]


async def test_the_condition_gets_the_body_and_middleware_does_not() -> None:
    with anyio.fail_after(20):
        post = route(
            "orders", condition_function_id="cond::true", middleware_function_ids=["mw::a"]
        )
        post["config"]["http_method"] = "POST"
        async with gated([post]) as (client, calls, _, _):
            order = {"item": "tea", "quantity": 2, "note": "ünïcode"}
            response = await client.post("/orders", json=order)
            assert response.status_code == 200
            assert calls.data["cond::true"][0]["body"] == order
            assert calls.data["cond::true"][0]["method"] == "POST"
            assert sorted(calls.data["mw::a"][0]["request"]) == [
                "headers",
                "method",
                "path_params",
                "query_params",
            ]
            assert calls.data[HANDLER][0]["body"] == order


class FakeEngine:
    """An `Invoker` without sockets: answers each function id from a table, records calls."""

    def __init__(self, answers: dict[str, Any], middleware: tuple[str, ...] = ()) -> None:
        self.http_routes = HttpRoutes(middleware)
        self.answers = answers
        self.calls: list[tuple[str, Any, str]] = []

    async def invoke(
        self, function_id: str, data: Raw, *, metadata: Raw | None, namespace: str
    ) -> tuple[Raw | None, ErrorBody | None]:
        assert metadata is None
        self.calls.append((function_id, decode_value(data), namespace))
        return to_raw(self.answers[function_id]), None


async def test_the_condition_gets_no_channel_refs_and_all_run_in_the_routes_namespace() -> None:
    """Once the request object carries `request_body` / `response` channel refs (§10.1),
    the condition must not get them: they belong to the handler."""
    engine = FakeEngine(
        {"c": True, "m": {"action": "continue"}, "g": {"action": "continue"}}, ("g",)
    )
    binding = RegisterTrigger(
        id="t",
        trigger_type="http",
        function_id="h",
        namespace="orders",
        config=to_raw(
            {"api_path": "x", "condition_function_id": "c", "middleware_function_ids": ["m"]}
        ),
    )
    assert engine.http_routes.register(binding) is None
    found = engine.http_routes.match("GET", "/x")
    assert found is not None
    ref = {"channel_id": "ch", "access_key": "k", "direction": "read"}
    request = {
        "path_params": {},
        "query_params": {},
        "headers": {"a": "b"},
        "path": "x",
        "method": "GET",
        "body": None,
        "trigger": {"type": "http", "path": "x", "method": "GET"},
        "request_body": ref,
        "response": {**ref, "direction": "write"},
    }
    with anyio.fail_after(5):
        assert await before_handler(engine, found[0], to_raw(request), 1.0) is None
    assert [(f, ns) for f, _, ns in engine.calls] == [
        ("g", "orders"),
        ("c", "orders"),
        ("m", "orders"),
    ]
    condition_data = engine.calls[1][1]
    assert condition_data == {
        k: v for k, v in request.items() if k not in ("request_body", "response")
    }
