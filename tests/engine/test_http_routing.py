"""HTTP-invoked functions in the sans-IO router (`http_routing.py`): registration, calls
becoming `HttpCall` actions, answers, and the ways an invocation ends without one.

The router is driven through `router_harness.py` (real worker cores, a fake clock); `HttpCall`
actions are collected instead of sent, and answered by hand with `http_answered`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
from router_harness import STOPPED, Engine, Peer, value

from anyiii._engine.actions import Action, HttpCall
from anyiii._engine.http_targets import HttpFunctionSettings, HttpResponse
from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    CHANNEL_SEND_FAILED,
    FUNCTION_NAMESPACE_CONFLICT,
    FUNCTION_NOT_FOUND,
)
from anyiii._protocol.frames import (
    ErrorBody,
    RegisterFunction,
    UnregisterFunction,
    to_raw,
)

OPEN = HttpFunctionSettings(require_https=False, block_private_ips=False)
URL = "http://127.0.0.1:9/fn"


class HttpEngine(Engine):
    """The router harness, keeping the `HttpCall`s the I/O layer would send."""

    def __init__(self, **options: Any) -> None:
        super().__init__(http_functions=OPEN, environ={"TOKEN": "t0k"}, **options)
        self.http_calls: list[HttpCall] = []

    def perform(self, actions: Iterable[Action]) -> None:
        rest = []
        for action in actions:
            if isinstance(action, HttpCall):
                self.http_calls.append(action)
            else:
                rest.append(action)
        super().perform(rest)

    def answer(self, call: HttpCall, outcome: HttpResponse | ErrorBody) -> None:
        self.perform(self.router.http_answered(call.invocation_id, outcome))


@pytest.fixture
def engine() -> HttpEngine:
    return HttpEngine()


def register_http(engine: HttpEngine, peer: Peer, function_id: str, **invocation: Any) -> None:
    frame = RegisterFunction(id=function_id, invocation=to_raw({"url": URL, **invocation}))
    engine.send(peer, peer.core.register(frame))


def test_a_call_becomes_one_http_call_and_never_reaches_the_registering_worker(
    engine: HttpEngine,
) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn", auth={"type": "bearer", "token_key": "TOKEN"})
    caller = engine.connect()
    invocation_id = engine.call(caller, "ext::fn", {"a": 1})
    [call] = engine.http_calls
    assert call.invocation_id == invocation_id
    headers = dict(call.request.headers)
    assert headers["x-iii-Function-Path"] == "ext::fn"
    assert headers["Authorization"] == "Bearer t0k"
    assert headers["x-iii-Invocation-ID"] != invocation_id  # a fresh id, as the real engine
    assert json.loads(call.request.body) == {"a": 1, "_caller_worker_id": caller.worker_id}
    assert owner.take(ev.InvocationRequested) == []
    engine.answer(call, HttpResponse(200, b'{"ok": true}'))
    done = caller.one(ev.CallCompleted)
    assert (done.invocation_id, value(done.result)) == (invocation_id, {"ok": True})
    assert not engine.router.tables.invocations


def test_an_error_outcome_reaches_the_caller_unchanged(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    caller = engine.connect()
    engine.call(caller, "ext::fn", {})
    failure = ErrorBody("http_request_failed", "connection refused")
    engine.answer(engine.http_calls[0], failure)
    assert caller.one(ev.CallFailed).error == failure


def test_an_engine_call_completes_with_the_answer(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    invocation_id, actions = engine.router.call("ext::fn", to_raw([1]))
    engine.perform(actions)
    [call] = engine.http_calls
    assert call.request.body == b"[1]"  # no `_caller_worker_id` on engine calls
    engine.answer(call, HttpResponse(503, b""))
    [completed] = engine.completed
    assert completed.invocation_id == invocation_id
    assert completed.error == ErrorBody("http_error", "HTTP 503 Service Unavailable")


def test_a_void_call_is_sent_but_answers_nobody(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    caller = engine.connect()
    engine.send(caller, caller.core.call_void("ext::fn", to_raw({})))
    [call] = engine.http_calls
    engine.answer(call, HttpResponse(200, b"{}"))
    assert caller.take(ev.CallCompleted) == []
    assert caller.take(ev.CallFailed) == []
    assert not engine.router.tables.invocations


def test_a_caller_that_leaves_mid_call_gets_nothing_and_the_answer_is_dropped(
    engine: HttpEngine,
) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    caller = engine.connect()
    engine.call(caller, "ext::fn", {})
    engine.disconnect(caller)
    engine.answer(engine.http_calls[0], HttpResponse(200, b"1"))
    assert not engine.router.tables.invocations


def test_the_owner_leaving_does_not_stop_a_call_in_flight(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    caller = engine.connect()
    engine.call(caller, "ext::fn", {})
    engine.disconnect(owner)
    engine.answer(engine.http_calls[0], HttpResponse(200, b'"done"'))
    assert value(caller.one(ev.CallCompleted).result) == "done"


def test_shutdown_stops_calls_in_flight_and_a_late_answer_is_dropped(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    caller = engine.connect()
    engine.call(caller, "ext::fn", {})
    engine.perform(engine.router.shutdown())
    assert caller.one(ev.CallFailed).error == STOPPED
    late = engine.router.http_answered(engine.http_calls[0].invocation_id, ErrorBody("x", "y"))
    assert late == []


def test_unregistering_or_leaving_removes_the_function(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::a")
    register_http(engine, owner, "ext::b")
    engine.send(owner, owner.core.unregister(UnregisterFunction(id="ext::a")))
    caller = engine.connect()
    engine.call(caller, "ext::a", {})
    assert caller.one(ev.CallFailed).error.code == FUNCTION_NOT_FOUND
    engine.disconnect(owner)
    engine.call(caller, "ext::b", {})
    assert caller.one(ev.CallFailed).error.code == FUNCTION_NOT_FOUND
    assert engine.http_calls == []


@pytest.mark.parametrize(
    "invocation",
    [
        {"url": URL, "method": "FETCH"},
        {"url": "::not a url"},
        {"url": URL, "auth": {"type": "oauth"}},
        {"url": URL, "auth": {"type": "hmac", "secret_key": "UNSET_SECRET"}},
        {"method": "POST"},
    ],
)
def test_an_unusable_invocation_is_refused_and_registers_nothing(
    engine: HttpEngine, invocation: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    owner = engine.connect()
    frame = RegisterFunction(id="ext::bad", invocation=to_raw(invocation))
    engine.send(owner, owner.core.register(frame))
    refused = owner.one(ev.RegistrationRefused)
    assert (refused.code, refused.function_id, refused.owner_worker_id, refused.fatal) == (
        FUNCTION_NAMESPACE_CONFLICT,
        "ext::bad",
        "",
        False,
    )
    assert ("default", "ext::bad") not in engine.router.tables.functions
    assert "ext::bad" in caplog.text
    assert "refused" in caplog.text


def test_a_refused_reregistration_keeps_the_working_one(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    register_http(engine, owner, "ext::fn", method="nope")
    owner.one(ev.RegistrationRefused)
    caller = engine.connect()
    engine.call(caller, "ext::fn", {})
    assert len(engine.http_calls) == 1


def test_a_conflict_names_the_live_owner_before_the_invocation_is_looked_at(
    engine: HttpEngine,
) -> None:
    first = engine.connect("ext::fn")
    second = engine.connect()
    register_http(engine, second, "ext::fn", method="nope")
    assert second.one(ev.RegistrationRefused).owner_worker_id == first.worker_id


def test_a_worker_hosted_function_may_become_an_http_one(engine: HttpEngine) -> None:
    owner = engine.connect("ext::fn")
    register_http(engine, owner, "ext::fn")
    caller = engine.connect()
    engine.call(caller, "ext::fn", {})
    assert len(engine.http_calls) == 1
    assert owner.take(ev.InvocationRequested) == []
    engine.send(owner, owner.core.register(RegisterFunction(id="ext::fn")))
    engine.call(caller, "ext::fn", {})
    assert len(engine.http_calls) == 1
    assert len(owner.take(ev.InvocationRequested)) == 1


def test_an_invocation_id_already_in_flight_is_refused(engine: HttpEngine) -> None:
    owner = engine.connect()
    register_http(engine, owner, "ext::fn")
    caller = engine.connect()
    invocation_id = engine.call(caller, "ext::fn", {})
    other = engine.open(ids=lambda: invocation_id)  # a second caller reusing that id
    engine.call(other, "ext::fn", {})
    assert other.one(ev.CallFailed).error.code == CHANNEL_SEND_FAILED
    assert len(engine.http_calls) == 1  # the first call is still the one in flight
    assert invocation_id in engine.router.tables.invocations
