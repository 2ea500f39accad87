"""What the built-ins that describe functions show an RBAC session: only what it may call.

The real engine gives `engine::functions::list` and `engine::functions::info` the caller's
session and keeps the functions `is_function_allowed` lets it call
(`workers/engine_fn/mod.rs`, `session_allows_function`): by id, in the function's own
namespace, with its registered metadata (for `expose_functions` metadata rules), under the
id it is registered as (a prefixed session's own functions included). The other listings
are not narrowed there, nor here. The trusted listener sees everything.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from engine_peers import call_frame, decode, encode
from msgspec import Raw
from rbac_peers import call, gated, raw_session, untrusted

import anyiii
from anyiii._engine.builtins import BUILTINS
from anyiii._engine.rbac import INFRASTRUCTURE_FUNCTIONS
from anyiii._engine.registration_limits import RegistrationLimits
from anyiii._engine.router import Router
from anyiii._engine.tables import Function
from anyiii._protocol.frames import RegisterFunction, decode_value

pytestmark = pytest.mark.anyio

LIST = "engine::functions::list"
INFO = "engine::functions::info"


def ids(listing: Any) -> set[str]:
    return {entry["function_id"] for entry in listing["functions"]}


async def test_functions_list_shows_a_session_only_what_it_may_call() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, trusted), untrusted(engine, "lister") as lister:
            shown = await call(lister, LIST)
            shown_internal = await call(lister, LIST, {"include_internal": True})
            everything = await call(trusted.worker, LIST, {"include_internal": True})
            # a filter narrows what the session may see, never widens it
            searched = await call(lister, LIST, {"search": "secret"})
    # `expose_functions` (an id rule, a metadata rule) and the session's grant; not the
    # function it is forbidden, nor any it may not call
    assert ids(shown) == {"api::echo", "pub::fn", "secret::granted"}
    assert "truncated" not in shown
    built_in = ids(everything) & INFRASTRUCTURE_FUNCTIONS
    assert built_in  # the carve-out the session may always call is listed to it
    assert ids(shown_internal) == ids(shown) | {LIST, INFO} | built_in
    assert ids(searched) == {"secret::granted"}
    # the trusted listener's worker sees everything
    assert {"secret::fn", "api::drop", "auth::check"} <= ids(everything)


async def test_functions_info_hides_what_the_session_may_not_call() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, trusted), untrusted(engine, "lister") as lister:
            detail = await call(lister, INFO, {"function_id": "pub::fn"})
            with pytest.raises(anyiii.InvocationError) as hidden:
                await call(lister, INFO, {"function_id": "secret::fn"})
            with pytest.raises(anyiii.InvocationError) as missing:
                await call(lister, INFO, {"function_id": "secret::missing"})
            batch = await call(
                lister, INFO, {"function_ids": ["api::echo", "api::drop", "secret::missing"]}
            )
            trusted_view = await call(trusted.worker, INFO, {"function_id": "secret::fn"})
    assert detail["function_id"] == "pub::fn"
    assert hidden.value.code == "FORBIDDEN"
    assert "Function 'secret::fn' is not visible to this session." in str(hidden.value)
    # as in the real engine, absence is "not found" whoever asks
    assert missing.value.code == "NOT_FOUND"
    [echo, drop, absent] = batch["functions"]
    assert echo["function_id"] == "api::echo"
    assert "error" not in echo
    assert drop == {"function_id": "api::drop", "error": "forbidden"}
    assert absent == {"function_id": "secret::missing", "error": "not_found"}
    assert trusted_view["function_id"] == "secret::fn"


async def test_a_session_sees_a_namespace_s_functions_as_its_grants_there_allow() -> None:
    with anyio.fail_after(10):
        async with (
            gated() as (engine, _),
            anyiii.connect(engine.url, reconnect=False, namespace="orders") as orders,
        ):
            orders.register_function("svc::get", lambda data: "got")
            orders.register_function("api::orders_only", lambda data: "hidden")
            await call(orders, "engine::channels::create")  # its registrations are routed
            async with untrusted(engine, "scoped_lister") as scoped:
                shown = await call(scoped, LIST)
    # `orders` grants `svc::*` there; `default`'s expose rules do not reach `orders`
    assert {(f["namespace"], f["function_id"]) for f in shown["functions"]} == {
        ("default", "api::drop"),
        ("default", "api::echo"),
        ("default", "pub::fn"),
        ("orders", "svc::get"),
    }


async def test_a_prefixed_session_sees_its_own_functions_only_where_granted() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, _), untrusted(engine, "tenant_lister") as tenant:
            tenant.register_function("api::mine", lambda data: "mine")
            tenant.register_function("api::other", lambda data: "other")
            shown = await call(tenant, LIST)
            registered = set(engine._router.tables.functions)
    assert {("default", "tenant::api::mine"), ("default", "tenant::api::other")} <= registered
    # listed under the id it is kept as; `tenant::api::other` is nobody's grant
    assert ids(shown) == {"api::drop", "api::echo", "pub::fn", "tenant::api::mine"}


async def test_a_listing_call_nobody_waits_for_or_with_a_bad_id_is_treated_as_elsewhere() -> None:
    with anyio.fail_after(10):
        async with gated() as (engine, _), raw_session(engine, "lister") as (transport, _):
            await transport.send(encode(call_frame(LIST, {})))  # no invocation id: no answer
            await transport.send(encode(call_frame(LIST, {}, invocation_id="nope")))
            answer = decode(await transport.receive())
    assert answer["invocation_id"] == "nope"
    assert answer["error"]["code"] == "invalid_invocation_id"  # the trusted port's answer


def test_hidden_functions_take_no_room_in_a_cut_answer() -> None:
    # The answer is cut at `max_listing_bytes`: only what the caller sees counts.
    router = Router(registrations=RegistrationLimits(max_listing_bytes=400))
    for number in range(20):
        function_id = f"hidden::{number:02}"
        frame = RegisterFunction(id=function_id, description="x" * 50)
        router.tables.functions[("default", function_id)] = Function("default", frame, None)
    frame = RegisterFunction(id="shown::fn")
    router.tables.functions[("default", "shown::fn")] = Function("default", frame, None)
    builtin = BUILTINS[LIST]
    assert builtin.narrowed is not None

    def visible(function_id: str, namespace: str, metadata: Raw | None) -> bool:
        return function_id == "shown::fn"

    narrowed = builtin.narrowed(router, None, Raw(b"{}"), [], visible)
    unfiltered = builtin.run(router, None, Raw(b"{}"), [])
    assert isinstance(narrowed, Raw)
    assert isinstance(unfiltered, Raw)
    shown = {"function_id": "shown::fn", "namespace": "default", "worker_name": "anyiii-engine"}
    assert decode_value(narrowed) == {"functions": [shown]}
    assert decode_value(unfiltered)["truncated"] is True  # the budget is too small for all
