"""HTTP-invoked functions over their life: registration refused or accepted, replay after a
reconnect, removal (unregistered, or the registering worker gone), every kind of caller (a
worker, the engine itself, an `http` trigger), and calls that end without an answer from
the endpoint (the caller left, the engine stopped). Spec §3.1, §4.6, §7.1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from engine_peers import new_id, raw_worker
from http_target import Recorded, Reply, target_server
from iii_helpers.http import HttpAuthBearer as OfficialBearer

import anyiii
from anyiii._protocol.frames import decode_value, to_raw
from anyiii.engine import EmbeddedEngine, EngineSettings, HttpFunctionSettings, run

LOCAL = EngineSettings(
    http_functions=HttpFunctionSettings(require_https=False, block_private_ips=False),
    shutdown_timeout=1.0,
)


async def call(worker: anyiii.Worker, function_id: str, payload: Any = None) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def error_code(worker: anyiii.Worker, function_id: str, payload: Any = None) -> str:
    with pytest.raises(anyiii.InvocationError) as caught:
        await call(worker, function_id, payload)
    return caught.value.code


# --- registration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "invocation"),
    [
        (LOCAL, {"url": "http://127.0.0.1:9/", "method": "FETCH"}),
        (LOCAL, {"method": "POST"}),
        (LOCAL, {"url": "http://127.0.0.1:9/", "auth": {"type": "oauth", "token_key": "T"}}),
        (LOCAL, {"url": "http://127.0.0.1:9/", "timeout_ms": "soon"}),
        (LOCAL, "http://127.0.0.1:9/"),
        (EngineSettings(), {"url": "http://127.0.0.1:9/"}),  # the default policy: HTTPS
        (EngineSettings(), {"url": "https://127.0.0.1:9/"}),  # and no private address
    ],
)
async def test_an_unusable_invocation_is_refused_at_registration(
    settings: EngineSettings, invocation: Any
) -> None:
    with anyio.fail_after(10):
        async with run(http_port=None, settings=settings) as engine:
            async with raw_worker(engine.url, "raw") as worker:
                frame = {"type": "registerfunction", "id": "ext::bad", "invocation": invocation}
                await worker.send(frame)
                listed = await worker.result("engine::functions::list", {})
                refused = [f for f in worker.received if f["type"] == "registrationrejected"]
                error = (await worker.call("ext::bad", {}))["error"]
    assert refused == [
        {
            "type": "registrationrejected",
            "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default",
            "owner_worker_id": "",
            "function_id": "ext::bad",
        }
    ]
    assert "ext::bad" not in {f["function_id"] for f in listed["functions"]}
    assert error["code"] == "function_not_found"


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        (anyiii.HttpAuthHmac(secret_key="ANYIII_UNSET_VAR"), "secret_not_found"),
        (anyiii.HttpAuthBearer(token_key="ANYIII_UNSET_VAR"), "token_not_found"),
        (anyiii.HttpAuthApiKey(header="X-Key", value_key="ANYIII_UNSET_VAR"), "api_key_not_found"),
    ],
)
async def test_an_auth_variable_the_engine_lacks_refuses_the_function_with_its_code(
    auth: Any, code: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ANYIII_UNSET_VAR", raising=False)
    with anyio.fail_after(10):
        async with (
            target_server() as server,
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            worker.register_http_function("ext::fn", server.url, auth=auth)
            assert await error_code(worker, "ext::fn") == "function_not_found"
    assert server.requests == []
    assert f"'ext::fn' refused: {code}: " in caplog.text
    assert "ANYIII_UNSET_VAR" in caplog.text


def test_the_worker_refuses_arguments_the_engine_would_refuse_at_once() -> None:
    from anyiii._worker.http_functions import http_function_frame

    with pytest.raises(ValueError, match="method"):
        http_function_frame("f", "http://h/", method="FETCH")
    with pytest.raises(ValueError, match="url"):
        http_function_frame("f", "")
    with pytest.raises(ValueError, match="function_id"):
        http_function_frame("", "http://h/")
    with pytest.raises(ValueError, match="timeout_ms"):
        http_function_frame("f", "http://h/", timeout_ms=-5)
    with pytest.raises(TypeError, match="headers"):
        http_function_frame("f", "http://h/", headers={"X": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="auth"):
        http_function_frame("f", "http://h/", auth={"type": "oauth"})
    with pytest.raises(TypeError, match="auth"):
        http_function_frame("f", "http://h/", auth="TOKEN")


def test_the_frame_has_the_wire_shape_and_takes_the_official_sdks_auth_models() -> None:
    from anyiii._worker.http_functions import http_function_frame

    frame = http_function_frame(
        "f",
        "https://h/x",
        method="put",
        timeout_ms=5000,
        headers={"X-A": "1"},
        auth=OfficialBearer(token_key="TOKEN"),
        description="d",
        metadata={"team": "ops"},
    )
    assert decode_value(frame.invocation) == {  # type: ignore[arg-type]
        "url": "https://h/x",
        "method": "PUT",
        "timeout_ms": 5000,
        "headers": {"X-A": "1"},
        "auth": {"type": "bearer", "token_key": "TOKEN"},
    }
    assert (frame.description, decode_value(frame.metadata)) == ("d", {"team": "ops"})  # type: ignore[arg-type]
    minimal = http_function_frame("f", "https://h/x")
    # As the official SDK sends it: the method always, nothing unset.
    assert decode_value(minimal.invocation) == {"url": "https://h/x", "method": "POST"}  # type: ignore[arg-type]


# --- removal and replay -----------------------------------------------------------------------


async def test_unregistering_through_the_handle_removes_the_function() -> None:
    with anyio.fail_after(10):
        async with (
            target_server() as server,
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            handle = worker.register_http_function("ext::fn", server.url)
            assert await call(worker, "ext::fn", 1) == {"echo": 1}
            await handle.unregister()
            assert await error_code(worker, "ext::fn", 2) == "function_not_found"
    assert len(server.requests) == 1


async def test_the_function_goes_when_the_registering_worker_leaves() -> None:
    with anyio.fail_after(10):
        async with (
            target_server() as server,
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url) as caller,
        ):
            async with anyiii.connect(engine.url) as owner:
                owner.register_http_function("ext::fn", server.url)
                await call(owner, "engine::functions::list", {})  # applied
                assert await call(caller, "ext::fn", 1) == {"echo": 1}
            assert await error_code(caller, "ext::fn", 2) == "function_not_found"


async def test_the_registration_is_replayed_on_a_new_connection() -> None:
    reconnect = anyiii.ReconnectConfig(initial_delay=0.01, max_delay=0.05)
    with anyio.fail_after(20):
        async with (
            target_server() as server,
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url, reconnect=reconnect) as worker,
        ):
            worker.register_http_function("ext::fn", server.url)
            assert await call(worker, "ext::fn", 1) == {"echo": 1}
            connections = worker.statistics().connections
            [conn] = list(engine._links)
            engine._drop(conn, 1011, "dropped by the test")
            async for state in worker.connection_states():
                if (
                    state is anyiii.ConnectionState.CONNECTED
                    and worker.statistics().connections > connections
                ):
                    break
            # The replay went out first on the new connection, so this call finds it.
            assert await call(worker, "ext::fn", 2) == {"echo": 2}


# --- other callers ----------------------------------------------------------------------------


async def test_the_engine_itself_and_an_http_trigger_can_call_it() -> None:
    async def respond(request: Recorded) -> Reply:
        data = request.json()
        if isinstance(data, dict) and "path_params" in data:  # from the http trigger
            return Reply.of({"status_code": 201, "body": {"order": data["path_params"]["id"]}})
        return Reply.of({"got": data})

    with anyio.fail_after(10):
        async with (
            target_server(respond) as server,
            run(settings=LOCAL) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            worker.register_http_function("ext::fn", server.url)
            await worker.register_trigger(
                "http", "ext::fn", {"api_path": "orders/:id", "http_method": "POST"}
            )
            await call(worker, "engine::functions::list", {})  # both applied
            result, error = await engine.invoke("ext::fn", to_raw([7]))
            assert error is None
            assert result is not None
            assert decode_value(result) == {"got": [7]}
            async with httpx.AsyncClient() as http:
                reply = await http.post(f"{engine.http_url}/orders/42", json={"qty": 1})
    assert (reply.status_code, reply.json()) == (201, {"order": "42"})
    assert json.loads(server.requests[1].body)["body"] == {"qty": 1}


@asynccontextmanager
async def stalled_target() -> AsyncIterator[tuple[Any, anyio.Event, anyio.Event]]:
    """A target whose answers wait for `release`; `arrived` is set by its first request."""
    arrived, release = anyio.Event(), anyio.Event()

    async def wait(request: Recorded) -> Reply:
        arrived.set()
        await release.wait()
        return Reply.of("late")

    async with target_server(wait) as server:
        yield server, arrived, release


async def test_a_caller_that_leaves_mid_call_does_not_disturb_the_engine() -> None:
    with anyio.fail_after(10):
        async with (
            stalled_target() as (server, arrived, release),
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url) as owner,
        ):
            owner.register_http_function("ext::fn", server.url)
            await call(owner, "engine::functions::list", {})
            async with anyiii.connect(engine.url) as leaver, anyio.create_task_group() as tg:
                tg.start_soon(call, leaver, "ext::fn", 1)
                await arrived.wait()
                tg.cancel_scope.cancel()
            release.set()  # the engine's request ends now; its caller is gone
            assert await call(owner, "ext::fn", 2) == "late"
            assert engine.worker_count == 1


async def test_stopping_the_engine_answers_a_call_in_flight_with_invocation_stopped() -> None:
    with anyio.fail_after(20):
        async with stalled_target() as (server, arrived, _):
            stop = anyio.Event()
            outcome: list[str] = []

            async def serve_engine(task_status: anyio.abc.TaskStatus[EmbeddedEngine]) -> None:
                async with run(http_port=None, settings=LOCAL) as engine:
                    task_status.started(engine)
                    await stop.wait()

            async with anyio.create_task_group() as tg:
                engine = await tg.start(serve_engine)
                # The worker does not reconnect: the engine's going ends its block.
                with pytest.raises(anyiii.ConnectionClosed):  # noqa: PT012
                    async with anyiii.connect(engine.url, reconnect=False) as worker:
                        worker.register_http_function("ext::fn", server.url)

                        async def stop_when_sent() -> None:
                            await arrived.wait()
                            stop.set()

                        tg.start_soon(stop_when_sent)
                        outcome.append(await error_code(worker, "ext::fn"))
                        await worker.serve_forever()
    assert outcome == ["invocation_stopped"]


async def test_a_void_call_is_sent_and_answers_nobody() -> None:
    with anyio.fail_after(10):
        async with (
            target_server() as server,
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            worker.register_http_function("ext::fn", server.url)
            request = {"function_id": "ext::fn", "payload": {"v": new_id()}}
            await worker.trigger_void_batch([request])
            [received] = await server.wait_for_requests(1)
    assert received.json()["v"] == request["payload"]["v"]  # type: ignore[index]
