"""The engine's `Router`, one documented rule at a time: invocations (spec §4.6, §5, §16.2).

How calls travel and end: the caller's worker id in the payload, results and errors passed
through, void calls, enqueue, callers told `invocation_stopped` when the callee leaves,
calls the engine itself makes, late and malformed results, and shutdown stopping every
waiting caller. The router is driven through `router_harness` (real worker cores, a fake
clock); the other `test_router_*.py` files cover registrations, triggers, built-in
functions and regressions.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from router_harness import STOPPED, Engine, value

from anyiii._engine.actions import Close, Completed
from anyiii._engine.state_service import StateService
from anyiii._protocol import events as ev
from anyiii._protocol.codes import FUNCTION_NOT_FOUND, INVALID_INVOCATION_ID, MALFORMED_FRAME
from anyiii._protocol.frames import ErrorBody, decode_value, to_raw
from anyiii._protocol.ids import is_uuid

# --- invocations (spec §5, §16.2) -------------------------------------------------------------


def test_function_not_found_names_the_function_and_namespace(engine: Engine) -> None:
    caller = engine.connect()
    invocation_id = engine.call(caller, "nope::x", {"a": 1})
    failed = caller.one(ev.CallFailed)
    assert failed.invocation_id == invocation_id
    assert failed.error.code == FUNCTION_NOT_FOUND
    assert failed.error.message == "Function nope::x not found in namespace default"
    assert not engine.router.tables.invocations


def test_caller_worker_id_is_injected_into_object_payloads(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {"x": 1})
    request = callee.one(ev.InvocationRequested)
    assert request.invocation_id == invocation_id  # the caller's id is reused (spec §5.1)
    assert decode_value(request.data) == {"x": 1, "_caller_worker_id": caller.worker_id}


@pytest.mark.parametrize("payload", [None, 0, "text", [1, {"a": 2}]])
def test_caller_worker_id_is_not_added_to_non_object_payloads(
    engine: Engine, payload: object
) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    engine.call(caller, "svc::a", payload)
    assert decode_value(callee.one(ev.InvocationRequested).data) == payload


def test_injected_caller_worker_id_wins_over_a_caller_supplied_one(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    engine.call(caller, "svc::a", {"_caller_worker_id": "spoofed", "y": 2})
    raw = bytes(callee.one(ev.InvocationRequested).data)
    assert decode_value(raw) == {"_caller_worker_id": caller.worker_id, "y": 2}
    assert json.loads(raw)["_caller_worker_id"] == caller.worker_id  # last duplicate wins


def test_engine_calls_get_no_caller_worker_id(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    invocation_id, actions = engine.router.call("svc::a", to_raw({"x": 1}))
    engine.perform(actions)
    request = callee.one(ev.InvocationRequested)
    assert request.invocation_id == invocation_id
    assert decode_value(request.data) == {"x": 1}


def test_callee_result_and_error_are_passed_through_unchanged(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    first = engine.call(caller, "svc::a", {})
    second = engine.call(caller, "svc::a", {})
    error = ErrorBody("my_code", "it broke", "Traceback (most recent call last): ...")
    engine.send(callee, callee.core.complete(first, to_raw({"c": 5})))
    engine.send(callee, callee.core.fail(second, error))
    completed = caller.one(ev.CallCompleted)
    assert (completed.invocation_id, value(completed.result)) == (first, {"c": 5})
    assert caller.one(ev.CallFailed).error == error
    assert not engine.router.tables.invocations


def test_void_call_gets_no_result_but_the_callee_runs_with_a_fresh_uuid(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    engine.send(caller, caller.core.call_void("svc::a", to_raw({"v": 1})))
    request = callee.one(ev.InvocationRequested)
    assert request.invocation_id is not None
    assert is_uuid(request.invocation_id)
    assert decode_value(request.data) == {"v": 1, "_caller_worker_id": caller.worker_id}
    frames_before = len(caller.frames)
    engine.send(callee, callee.core.complete(request.invocation_id, to_raw("ignored")))
    assert len(caller.frames) == frames_before  # the result is discarded (spec §5.1)
    assert not engine.router.tables.invocations


def test_void_call_ids_are_fresh_for_every_call(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    for _ in range(3):
        engine.send(caller, caller.core.call_void("svc::a"))
    ids = [r.invocation_id for r in callee.take(ev.InvocationRequested)]
    assert len(set(ids)) == 3


def test_enqueue_is_answered_with_enqueue_error() -> None:
    engine = Engine(services=(StateService,))  # no queue service: nobody provides enqueue
    callee = engine.connect("svc::a")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {"job": 1}, enqueue="jobs")
    failed = caller.one(ev.CallFailed)
    assert failed.invocation_id == invocation_id
    assert failed.error.code == "enqueue_error"
    assert "engine::queue::enqueue" in failed.error.message
    assert not callee.take(ev.InvocationRequested)  # the target is not run


def test_enqueue_goes_through_a_worker_hosted_queue_provider() -> None:
    engine = Engine(services=(StateService,))  # the provider is a worker, not the service
    provider = engine.connect("engine::queue::enqueue")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {"job": 1}, enqueue="jobs")
    request = provider.one(ev.InvocationRequested)
    payload = decode_value(request.data)
    assert payload["queue"] == "jobs"
    assert payload["function_id"] == "svc::a"
    assert payload["data"] == {"job": 1}  # no _caller_worker_id for enqueue
    assert "namespace" not in payload
    engine.send(provider, provider.core.complete(request.invocation_id, to_raw(None)))
    answered = caller.one(ev.CallCompleted)
    assert answered.invocation_id == invocation_id
    assert decode_value(answered.result) == {"messageReceiptId": payload["messageReceiptId"]}


def test_caller_gets_invocation_stopped_when_the_callee_disconnects(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {})
    engine.disconnect(callee)
    failed = caller.one(ev.CallFailed)
    assert (failed.invocation_id, failed.error) == (invocation_id, STOPPED)
    assert not engine.router.tables.invocations
    assert not caller.core.pending_calls


def test_engine_call_ends_with_invocation_stopped_when_the_callee_disconnects(
    engine: Engine,
) -> None:
    callee = engine.connect("svc::a")
    invocation_id, actions = engine.router.call("svc::a", to_raw({}))
    engine.perform(actions)
    engine.disconnect(callee)
    assert engine.completed == [Completed(invocation_id, None, STOPPED)]


def test_abandoned_engine_call_completes_never(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    invocation_id, actions = engine.router.call("svc::a", to_raw({}))
    engine.perform(actions)
    engine.router.abandon(invocation_id)
    engine.send(callee, callee.core.complete(invocation_id, to_raw(1)))
    assert engine.completed == []
    assert not engine.router.tables.invocations


def test_late_result_is_dropped_silently_when_the_caller_disconnected(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {})
    engine.disconnect(caller)
    assert invocation_id in engine.router.tables.invocations  # the callee runs on
    frame = callee.core.complete(invocation_id, to_raw("late"))
    assert engine.router.receive(callee.conn, frame) == []
    assert not engine.router.tables.invocations


def test_malformed_invocationresult_fails_the_call_with_malformed_frame(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {})
    garbage = '{"type":"invocationresult","invocation_id":"' + invocation_id + '","function_id":7}'
    engine.send(callee, garbage)
    failed = caller.one(ev.CallFailed)
    assert failed.invocation_id == invocation_id
    assert failed.error.code == MALFORMED_FRAME
    assert not engine.router.tables.invocations


def test_call_with_a_non_uuid_invocation_id_is_answered_with_an_error(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.open(ids=lambda: "call-1")
    engine.call(caller, "svc::a", {})
    failed = caller.one(ev.CallFailed)
    assert failed.invocation_id == "call-1"
    assert failed.error.code == INVALID_INVOCATION_ID
    assert not callee.take(ev.InvocationRequested)


def test_a_worker_may_call_its_own_function(engine: Engine) -> None:
    worker = engine.connect("svc::a")
    invocation_id = engine.call(worker, "svc::a", 3)
    request = worker.one(ev.InvocationRequested)
    assert request.invocation_id == invocation_id
    engine.send(worker, worker.core.complete(invocation_id, to_raw(9)))


def test_invokefunction_without_data_reads_as_null(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    raw = msgspec.json.encode(
        {"type": "invokefunction", "function_id": "svc::a", "action": {"type": "void"}}
    )
    engine.send(caller, raw)
    assert value(callee.one(ev.InvocationRequested).data) is None


# --- shutdown (spec §4.6) ----------------------------------------------------------------------


def test_shutdown_stops_every_waiting_caller_and_closes_every_connection(
    engine: Engine,
) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {})
    internal_id, actions = engine.router.call("svc::a", to_raw({}))
    engine.perform(actions)
    actions = engine.router.shutdown()
    closes = [a for a in actions if isinstance(a, Close)]
    assert actions[-len(closes) :] == closes  # answers first, then the closes
    assert sorted(c.conn for c in closes) == sorted([callee.conn, caller.conn])
    assert all(c.code == 1001 for c in closes)
    engine.perform(actions)
    failed = caller.one(ev.CallFailed)
    assert (failed.invocation_id, failed.error) == (invocation_id, STOPPED)
    assert engine.completed == [Completed(internal_id, None, STOPPED)]
    assert not engine.router.tables.invocations
