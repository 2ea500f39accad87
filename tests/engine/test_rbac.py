"""RBAC on the embedded engine's second worker listener, end to end over real sockets.

A trusted anyiii worker on the main listener serves the auth function, the hooks, the
middleware and the functions; untrusted anyiii workers connect to the RBAC listener
(`engine.rbac_port`) and are allowed, forbidden, prefixed or refused as the real engine's
`iii-worker-manager` would (`workers/worker/rbac_config.rs`, `rbac_session.rs`,
`engine/mod.rs`).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from engine_peers import decode, encode
from rbac_peers import ANNOUNCE, TOKENS, Ticks, call, forbidden, gated, untrusted

import anyiii
from anyiii._transport import open_websocket

pytestmark = pytest.mark.anyio


async def test_calls_are_allowed_by_expose_rules_and_grants_and_forbidden_otherwise() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, trusted), untrusted(engine, "reader") as reader:
            assert await call(reader, "api::echo", {"n": 1}) == {
                "echo": {"n": 1, "_caller_worker_id": reader.worker_id}
            }
            assert await call(reader, "pub::fn") == "public"  # a metadata rule
            assert "add to rbac.expose_functions" in await forbidden(reader, "secret::fn")
            assert "remove from rbac.forbidden_functions" in await forbidden(reader, "api::drop")
            # a function that does not exist is FORBIDDEN too: its absence is not leaked
            await forbidden(reader, "secret::missing")
            async with untrusted(engine, "tenant") as tenant:
                assert await call(tenant, "secret::granted") == "granted"
                await forbidden(tenant, "secret::fn")
            # the trusted listener is not gated
            assert await call(trusted.worker, "secret::fn") == "secret"
    [auth, *_] = trusted.auth_inputs
    assert auth["headers"]["authorization"] == "Bearer reader"
    assert auth["query_params"] == {}
    assert auth["ip_address"] == "127.0.0.1"


async def test_a_refused_handshake_gets_an_auth_error_frame_then_a_close() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, trusted):
            for token in ("bogus", "malformed"):
                url = f"ws://127.0.0.1:{engine.rbac_port}/?who=me&who=you"
                headers = {"Authorization": f"Bearer {token}"}
                async with open_websocket(url, headers=headers, ping_interval=None) as transport:
                    frame = decode(await transport.receive())
                    assert frame["type"] == "error"
                    assert frame["error"]["code"] == "AUTH_ERROR"
                    with pytest.raises(anyiii.ConnectionClosed):
                        await transport.receive()
            assert engine.worker_count == 1  # only the trusted worker
    assert trusted.auth_inputs[0]["query_params"] == {"who": ["me", "you"]}
    assert "allow_function_registration" in frame["error"]["message"]


async def test_the_registration_prefix_and_the_hooks_apply_to_what_a_session_registers() -> None:
    seen: list[Any] = []
    with anyio.fail_after(10):
        async with (
            gated(
                on_function_registration_function_id="hooks::function",
                on_trigger_type_registration_function_id="hooks::trigger_type",
            ) as (engine, trusted),
            untrusted(engine, "tenant") as tenant,
        ):
            tenant.register_function("api::mine", lambda data: seen.append(data) or "mine")
            tenant.register_function("internal::hidden", lambda data: "hidden")
            tenant.register_trigger_type("tick", Ticks(), description="ticks")
            await call(tenant, "api::echo")  # a round trip: the frames before it are routed
            functions = engine._router.tables.functions
            assert ("default", "tenant::api::mine") in functions
            assert ("default", "api::mine") not in functions
            assert not any("internal::hidden" in key for _, key in functions)
            # the engine takes the prefix off when it calls the session's function
            assert await call(trusted.worker, "tenant::api::mine", {"x": 1}) == "mine"
            # an auth answer does not allow trigger-type registration unless it says so
            assert not any("tick" in key for _, key in engine._router.tables.trigger_types)
    assert seen
    assert seen[0]["x"] == 1
    kinds = [kind for kind, _ in trusted.hook_inputs]
    assert kinds == ["function", "function"]
    assert trusted.hook_inputs[0][1] == {
        "function_id": "api::mine",
        "description": None,
        "metadata": None,
        "namespace": "default",
        "context": {"user": "t"},
    }


async def test_trigger_types_go_through_their_hook_when_the_session_may_register_them() -> None:
    with anyio.fail_after(10):
        async with gated(on_trigger_type_registration_function_id="hooks::trigger_type") as (
            engine,
            trusted,
        ):
            TOKENS["types"] = {"allow_trigger_type_registration": True, "context": {"k": 1}}
            try:
                async with untrusted(engine, "types") as worker:
                    worker.register_trigger_type("tick", Ticks(), description="ticks")
                    await call(worker, "api::echo")
                    types = engine._router.tables.trigger_types
                    assert ("default", "hooked::tick") in types
                    assert ("default", "tick") not in types
            finally:
                del TOKENS["types"]
    assert trusted.hook_inputs == [
        ("trigger_type", {"trigger_type_id": "tick", "description": "ticks", "context": {"k": 1}})
    ]


async def test_a_trigger_to_a_function_the_session_may_not_call_is_forbidden() -> None:
    binding = {
        "type": "registertrigger",
        "id": "t-1",
        "trigger_type": "http",
        "config": {"api_path": "s", "http_method": "GET"},
    }
    with anyio.fail_after(10):
        async with gated() as (engine, _):
            url = f"ws://127.0.0.1:{engine.rbac_port}"
            headers = {"Authorization": "Bearer reader"}
            async with open_websocket(url, headers=headers, ping_interval=None) as transport:
                assert decode(await transport.receive())["type"] == "workerregistered"
                await transport.send(encode(ANNOUNCE))
                await transport.send(encode({**binding, "function_id": "secret::fn"}))
                answer = decode(await transport.receive())
                await transport.send(encode({**binding, "id": "t-2", "function_id": "api::echo"}))
                await transport.send(encode({"type": "ping"}))
                assert decode(await transport.receive()) == {"type": "pong"}
                routes = len(engine.http_routes)
    assert answer["type"] == "triggerregistrationresult"
    assert answer["id"] == "t-1"
    assert answer["error"]["code"] == "FORBIDDEN"
    assert "secret::fn" in answer["error"]["message"]
    assert routes == 1  # the allowed one is bound


async def test_the_middleware_answers_calls_and_sees_the_session_context() -> None:
    with anyio.fail_after(10):
        async with gated(middleware_function_id="mw::audit") as (engine, trusted):
            async with untrusted(engine, "reader") as reader:
                assert await call(reader, "api::echo", {"n": 2}) == {
                    "echo": {"n": 2, "via": "r", "_caller_worker_id": trusted.worker.worker_id}
                }
                await forbidden(reader, "secret::fn")  # RBAC is checked before the middleware
    [seen] = trusted.middleware_inputs
    assert seen["function_id"] == "api::echo"
    assert seen["context"] == {"user": "r"}
    assert seen["namespace"] == "default"


async def test_a_scoped_session_may_declare_only_its_namespaces() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, _):
            async with untrusted(engine, "scoped", namespace="orders") as worker:
                assert await call(worker, "engine::channels::create") is not None
            raw = f"ws://127.0.0.1:{engine.rbac_port}"
            headers = {"Authorization": "Bearer scoped"}
            async with open_websocket(raw, headers=headers, ping_interval=None) as transport:
                assert decode(await transport.receive())["type"] == "workerregistered"
                await transport.send(
                    encode(
                        {
                            "type": "invokefunction",
                            "invocation_id": "00000000-0000-4000-8000-000000000001",
                            "function_id": "engine::workers::register",
                            "data": {"namespace": "default"},
                        }
                    )
                )
                answer = decode(await transport.receive())
    assert answer["error"]["code"] == "FORBIDDEN"
    assert "permitted: orders" in answer["error"]["message"]


async def test_the_register_trigger_built_in_is_no_way_around_the_binding_rules() -> None:
    # A session granted `engine::register_trigger` is held to what a `registertrigger`
    # frame is: its allowed trigger types, and a target function it may call.
    def durable(trigger_type: str, function_id: str, path: str) -> dict[str, Any]:
        config = {"api_path": path, "http_method": "GET"}
        return {"trigger_type": trigger_type, "function_id": function_id, "config": config}

    with anyio.fail_after(10):
        async with gated() as (engine, _), untrusted(engine, "binder") as binder:
            with pytest.raises(anyiii.InvocationError) as hidden:
                await call(binder, "engine::register_trigger", durable("http", "secret::fn", "a"))
            with pytest.raises(anyiii.InvocationError) as wrong_type:
                await call(binder, "engine::register_trigger", durable("cron", "api::echo", "b"))
            bound = await call(
                binder, "engine::register_trigger", durable("http", "api::echo", "c")
            )
            routes = len(engine.http_routes)
    assert (hidden.value.code, wrong_type.value.code) == ("FORBIDDEN", "FORBIDDEN")
    assert "secret::fn" in str(hidden.value)
    assert "cron" in str(wrong_type.value)
    assert "id" in bound
    assert routes == 1
