"""An RBAC connection's registrations wait for its namespace, and then meet their checks.

The real engine buffers a connection's registrations until `engine::workers::register`
fixes its namespace (or its grace ends), and runs the RBAC checks and hooks as it drains
that buffer (`engine/mod.rs`: `router_msg`, `resolve_connection_namespace`, `dispatch_msg`):
a hook is told the namespace the function lands in; a binding's target check sees the
functions registered before it; `engine::workers::register` answers once they are applied.
The SDKs send their registrations before that call, so this is the common case. Also the
small rules of the gate that follow from reading the same code.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from engine_peers import call_frame, decode, encode, http_binding, new_id
from rbac_peers import ANNOUNCE, gated, raw_session

from anyiii._engine.rbac_gate import _HELD
from anyiii._engine.router import _BUFFERED
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import (
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    encode_frame,
)
from anyiii._transport import Transport

pytestmark = pytest.mark.anyio

PING = {"type": "ping"}


async def until_pong(transport: Transport) -> list[dict[str, Any]]:
    """Send a ping; return what came before its pong (all earlier frames were routed)."""
    await transport.send(encode(PING))
    frames: list[dict[str, Any]] = []
    while (frame := decode(await transport.receive()))["type"] != "pong":
        frames.append(frame)
    return frames


async def test_a_hook_is_told_the_namespace_its_registration_lands_in() -> None:
    with anyio.fail_after(10):
        async with (
            gated(on_function_registration_function_id="hooks::function") as (engine, trusted),
            raw_session(engine, "reader") as (transport, _),
        ):
            await transport.send(encode({"type": "registerfunction", "id": "api::mine"}))
            announce = call_frame(
                "engine::workers::register", {"namespace": "orders"}, invocation_id=new_id()
            )
            await transport.send(encode(announce))
            answer = decode(await transport.receive())
            # answered once what it held back is applied, as the real engine does
            registered = ("orders", "api::mine") in engine._router.tables.functions
    assert answer["type"] == "invocationresult"
    assert "error" not in answer
    assert registered
    [(kind, seen)] = trusted.hook_inputs
    assert kind == "function"
    assert (seen["function_id"], seen["namespace"]) == ("api::mine", "orders")


async def test_a_binding_is_checked_after_the_registrations_sent_before_it() -> None:
    # `own::fn` is exposed by its metadata (`{"public": true}`): the binding's check must
    # see the function the same connection registered just before it.
    kept = http_binding("own::fn", "own")
    dropped = http_binding("own::fn", "gone")
    with anyio.fail_after(10):
        async with gated() as (engine, _), raw_session(engine, "reader") as (transport, _):
            for frame in (
                {"type": "registerfunction", "id": "own::fn", "metadata": {"public": True}},
                kept,
                dropped,
                {"type": "unregistertrigger", "id": dropped["id"], "trigger_type": "http"},
            ):
                await transport.send(encode(frame))
            await transport.send(encode(ANNOUNCE))
            before_pong = await until_pong(transport)
            routes = engine.http_routes
            bound = [routes.match("GET", "/own"), routes.match("GET", "/gone")]
    assert before_pong == []  # no FORBIDDEN for the binding
    assert bound[0] is not None
    assert bound[1] is None  # the unbinding kept its place after the binding


async def test_without_an_announce_registrations_wait_for_the_end_of_the_grace() -> None:
    with anyio.fail_after(10):
        async with (
            gated(namespace_grace=0.3, on_function_registration_function_id="hooks::function") as (
                engine,
                trusted,
            ),
            raw_session(engine, "reader") as (transport, worker_id),
        ):
            await transport.send(encode({"type": "registerfunction", "id": "api::late"}))
            [connection] = [
                c for c in engine._router.tables.connections.values() if c.worker_id == worker_id
            ]
            await trusted.hooked.wait()
            await until_pong(transport)
            registered = ("default", "api::late") in engine._router.tables.functions
    assert trusted.hooked_at[0] >= connection.grace_deadline
    assert trusted.hook_inputs[0][1]["namespace"] == "default"
    assert registered


def grace_timers() -> int:
    return sum(1 for task in anyio.get_running_tasks() if task.name.endswith("_end_of_grace"))


async def test_a_connection_that_ends_while_frames_are_held_leaves_no_timer_behind() -> None:
    with anyio.fail_after(10):
        async with gated(namespace_grace=60) as (engine, _):
            async with raw_session(engine, "reader") as (transport, _):
                await transport.send(encode({"type": "registerfunction", "id": "api::held"}))
                await until_pong(transport)  # the registration was read, and held
                assert grace_timers() == 1
            await anyio.wait_all_tasks_blocked()  # the engine has let the connection go
            assert grace_timers() == 0
            assert ("default", "api::held") not in engine._router.tables.functions


async def test_a_frame_that_is_not_a_protocol_frame_is_ignored_as_on_the_trusted_port() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, _), raw_session(engine, "reader") as (transport, _):
            await transport.send(b'{"type": 5}')
            assert await until_pong(transport) == []  # still connected


async def test_a_blank_trigger_namespace_is_answered_before_the_trigger_type_is_checked() -> None:
    binding = http_binding("api::echo", "x", trigger_type="cron", trigger_namespace=" ")
    with anyio.fail_after(10):
        async with gated() as (engine, _), raw_session(engine, "binder") as (transport, _):
            await transport.send(encode(ANNOUNCE))
            await transport.send(encode(binding))
            [answer] = await until_pong(transport)
    assert answer["type"] == "triggerregistrationresult"
    assert answer["error"]["code"] == "INVALID_NAMESPACE"


async def test_an_empty_registration_prefix_applies_to_unregistering_too() -> None:
    # The real engine prefixes with `prefix::` whenever the session has a prefix at all.
    with anyio.fail_after(10):
        async with gated() as (engine, _), raw_session(engine, "empty_prefix") as (transport, _):
            await transport.send(encode(ANNOUNCE))
            await transport.send(encode({"type": "registerfunction", "id": "f"}))
            await until_pong(transport)
            registered = ("default", "::f") in engine._router.tables.functions
            await transport.send(encode({"type": "unregisterfunction", "id": "f"}))
            await until_pong(transport)
            removed = ("default", "::f") not in engine._router.tables.functions
    assert registered
    assert removed


def test_the_gate_holds_exactly_the_frames_the_router_holds() -> None:
    frames = [
        RegisterFunction(id="f"),
        UnregisterFunction(id="f"),
        RegisterService(id="s"),
        RegisterTrigger(id="t", trigger_type="http", function_id="f"),
        UnregisterTrigger(id="t"),
        RegisterTriggerType(id="tt"),
        UnregisterTriggerType(id="tt"),
    ]
    assert {type(frame) for frame in frames} == set(_HELD)
    core = EngineConnection(new_id(), new_id())
    core.start()
    events = [event for frame in frames for event in core.receive(encode_frame(frame))]
    assert {type(event) for event in events} == set(_BUFFERED)
