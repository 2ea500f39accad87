"""The engine's `Router`: regression tests, one per bug the first router had, fixed since.

Each `test_bug_...` reproduces one bug (its docstring says what went wrong) and keeps it
fixed: calls to `engine::register_trigger` that were never answered or answered wrongly,
refused bindings that came back to life, stale answers from a replaced provider, and
frames arriving during shutdown. Driven through `router_harness` (real worker cores, a
fake clock).
"""

from __future__ import annotations

import pytest
from router_harness import STOPPED, Engine, provider_of, webhook_binding

from anyiii._protocol import events as ev
from anyiii._protocol.codes import TRIGGER_REGISTRATION_FAILED
from anyiii._protocol.frames import (
    ErrorBody,
    RegisterFunction,
    RegisterTrigger,
    UnregisterTrigger,
    encode_frame,
)


def test_bug_register_trigger_refused_by_an_in_engine_provider_reports_the_error(
    engine: Engine,
) -> None:
    """`engine::register_trigger` for an `http` binding with no `api_path`: the in-engine
    provider refuses it and drops the binding, but the call answers `{"id": ...}` as if it
    had worked (spec §7.1: failures come back as `trigger_registration_failed`, message
    `"<code>: <message>"`)."""
    caller = engine.connect("svc::a")
    engine.call(
        caller,
        "engine::register_trigger",
        {"trigger_type": "http", "function_id": "svc::a", "config": {}},
    )
    assert not engine.router.tables.bindings  # the binding was dropped...
    assert not caller.take(ev.CallCompleted)  # ...yet the call reported success
    error = caller.one(ev.CallFailed).error
    assert error.code == TRIGGER_REGISTRATION_FAILED
    assert error.message == "trigger_registration_failed: api_path is required for http triggers"


def test_bug_register_trigger_waiting_for_an_ack_is_answered_when_the_binding_goes(
    engine: Engine,
) -> None:
    """A call to `engine::register_trigger` waiting for the provider's ack is never answered
    if the binding is removed first (`remove_binding` drops the awaited ack silently): the
    caller waits forever, even past the ack timeout."""
    provider = engine.connect(types=["webhook"])
    caller = engine.connect("svc::a")
    waiting = engine.call(
        caller, "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::a"}
    )
    trigger_id = provider.one(ev.TriggerBindingRequested).binding.id
    other = engine.connect()
    engine.call(other, "engine::unregister_trigger", {"id": trigger_id})
    engine.tick(60.0)
    answers = caller.take(ev.CallCompleted) + caller.take(ev.CallFailed)
    assert [a.invocation_id for a in answers] == [waiting]
    assert not caller.core.pending_calls


def test_bug_shutdown_answers_calls_waiting_for_a_provider_ack(engine: Engine) -> None:
    """`router.shutdown()` answers every invocation in `router.tables.invocations`, but a call to
    `engine::register_trigger` waiting for a worker provider's ack lives elsewhere
    (`_awaited_acks`) and is left unanswered (spec §4.6: every waiting party is stopped)."""
    engine.connect(types=["webhook"])
    caller = engine.connect("svc::a")
    waiting = engine.call(
        caller, "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::a"}
    )
    engine.perform(engine.router.shutdown())
    failed = caller.one(ev.CallFailed)
    assert (failed.invocation_id, failed.error) == (waiting, STOPPED)


def test_bug_refused_durable_binding_is_not_kept(engine: Engine) -> None:
    """When a worker provider refuses a binding made by `engine::register_trigger`, the call
    fails but the ownerless binding stays parked in the router, is listed by
    `engine::registered-triggers::list`, and is handed to the next provider of the type:
    a trigger the caller was told does not exist comes back to life."""
    provider = engine.connect(types=["webhook"])
    caller = engine.connect("svc::a")
    engine.call(
        caller, "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::a"}
    )
    trigger_id = provider.one(ev.TriggerBindingRequested).binding.id
    refusal = ErrorBody(TRIGGER_REGISTRATION_FAILED, "bad config")
    engine.send(provider, provider.core.answer_binding(trigger_id, refusal))
    caller.one(ev.CallFailed)
    replacement = engine.connect(types=["webhook"])
    assert not replacement.take(ev.TriggerBindingRequested)
    assert trigger_id not in engine.router.tables.bindings


def test_bug_stale_refusal_from_a_replaced_provider_is_ignored(engine: Engine) -> None:
    """A binding answer is only accepted from the connection that owns the trigger type
    (spec §3.5). After a second provider replaced the first, the first one's late refusal
    still parks the binding and is reported to the binder, although the new provider
    serves it; the binder's later `unregistertrigger` then never reaches the new provider,
    which keeps firing a binding that no longer exists."""
    first = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    first.one(ev.TriggerBindingRequested)
    second = engine.connect(types=["webhook"])  # replaces the provider, gets the binding
    second.one(ev.TriggerBindingRequested)
    stale = ErrorBody(TRIGGER_REGISTRATION_FAILED, "no longer mine")
    engine.send(first, first.core.answer_binding("t-1", stale))
    assert not binder.take(ev.TriggerRegistrationFailed)
    assert provider_of(engine, "t-1") == ("default", "webhook")
    engine.send(binder, binder.core.unregister(UnregisterTrigger(id="t-1")))
    assert second.one(ev.TriggerBindingRemoved).trigger_id == "t-1"


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(RegisterFunction(id="svc::a"), id="conflicting-registerfunction"),
        pytest.param(
            RegisterTrigger(id="t-9", trigger_type="webhook", function_id="x", namespace=" "),
            id="blank-namespace-registertrigger",
        ),
    ],
)
def test_bug_frames_arriving_during_shutdown_do_not_raise(
    engine: Engine, frame: RegisterFunction | RegisterTrigger
) -> None:
    """After `router.shutdown()` every engine core is CLOSING, but the I/O layer keeps
    reading until each socket is closed (server `_stop`). A registration that the router
    answers with `registrationrejected` or a `triggerregistrationresult` error then makes
    the router raise `LocalProtocolError` ("can't send registration when the connection is
    closing") out of `receive()`, instead of dropping the reply."""
    engine.connect("svc::a")
    late = engine.connect()
    engine.router.shutdown()
    engine.router.receive(late.conn, encode_frame(frame))
