"""The engine's `Router`: namespaces and registrations (spec §3.1, §4.1, §11).

Registrations held until the connection's namespace is fixed (by `engine::workers::register`
or the grace timeout), one live owner per function id and namespace, take-over after the
owner leaves, reattach with the right or a wrong token, and ping. Driven through
`router_harness` (real worker cores, a fake clock).
"""

from __future__ import annotations

from router_harness import STOPPED, Engine

from anyiii._protocol import events as ev
from anyiii._protocol.codes import FUNCTION_NAMESPACE_CONFLICT, FUNCTION_NOT_FOUND, REGISTER_WORKER
from anyiii._protocol.frames import Ping, RegisterFunction, UnregisterFunction, encode_frame, to_raw


def test_registrations_before_register_are_held_then_applied_in_order(engine: Engine) -> None:
    worker = engine.open()
    other = engine.connect()
    for frame in (
        worker.core.register(RegisterFunction(id="svc::a")),
        worker.core.register(RegisterFunction(id="svc::b")),
        worker.core.unregister(UnregisterFunction(id="svc::a")),
    ):
        engine.send(worker, frame)
    assert ("default", "svc::b") not in engine.router.tables.functions
    assert len(engine.router.tables.connections[worker.conn].held) == 3
    engine.call(other, "svc::b")
    assert other.one(ev.CallFailed).error.code == FUNCTION_NOT_FOUND  # not applied yet

    engine.send(worker, worker.core.call_void(REGISTER_WORKER, to_raw({"name": "w", "pid": 1})))
    functions = engine.router.tables.functions
    assert functions[("default", "svc::b")].owner == worker.conn
    assert ("default", "svc::a") not in functions  # registered, then unregistered, in order
    assert engine.router.tables.connections[worker.conn].held == []


def test_namespace_from_the_register_payload_is_honoured(engine: Engine) -> None:
    shop = engine.connect("svc::a", namespace="shop")
    assert engine.router.tables.connections[shop.conn].namespace == "shop"
    assert engine.router.tables.functions[("shop", "svc::a")].owner == shop.conn
    outsider = engine.connect()
    engine.call(outsider, "svc::a")
    error = outsider.one(ev.CallFailed).error
    assert error.code == FUNCTION_NOT_FOUND
    assert error.message == (
        "Function svc::a not found in namespace default. It is registered in namespace(s): shop"
    )
    invocation_id = engine.call(outsider, "svc::a", namespace="shop")
    assert shop.one(ev.InvocationRequested).invocation_id == invocation_id


def test_grace_timeout_applies_the_default_namespace(engine: Engine) -> None:
    worker = engine.connect("svc::a", register=False)
    assert engine.router.next_deadline() == 5.0
    engine.tick(4.9)
    assert ("default", "svc::a") not in engine.router.tables.functions
    assert engine.router.tables.connections[worker.conn].namespace is None
    engine.tick(5.0)
    assert engine.router.tables.connections[worker.conn].namespace == "default"
    assert engine.router.tables.functions[("default", "svc::a")].owner == worker.conn
    assert engine.router.next_deadline() is not None  # the functions-available debounce


def test_late_register_call_keeps_the_namespace_fixed_by_the_grace_period(engine: Engine) -> None:
    worker = engine.connect("svc::a", register=False)
    engine.tick(5.0)
    engine.send(worker, worker.core.call_void(REGISTER_WORKER, to_raw({"namespace": "shop"})))
    assert engine.router.tables.connections[worker.conn].namespace == "default"


def test_second_live_owner_is_rejected_and_the_first_keeps_the_function(engine: Engine) -> None:
    first = engine.connect("svc::a")
    second = engine.connect("svc::a")
    refused = second.one(ev.RegistrationRefused)
    assert refused.code == FUNCTION_NAMESPACE_CONFLICT
    assert refused.namespace == "default"
    assert refused.function_id == "svc::a"
    assert refused.owner_worker_id == first.worker_id
    assert not refused.fatal
    caller = engine.connect()
    engine.call(caller, "svc::a")
    assert first.take(ev.InvocationRequested)
    assert not second.take(ev.InvocationRequested)


def test_function_is_taken_over_after_its_owner_disconnects(engine: Engine) -> None:
    # The refused replica waits; the id is the departed owner's for the reattach grace
    # (`ownership.py`), then the replica gets it without asking again.
    first = engine.connect("svc::a")
    second = engine.connect("svc::a")
    second.one(ev.RegistrationRefused)
    engine.disconnect(first)
    assert ("default", "svc::a") not in engine.router.tables.functions
    engine.tick(4.9)
    assert ("default", "svc::a") not in engine.router.tables.functions
    engine.tick(5.0)
    assert not second.take(ev.RegistrationRefused)
    assert engine.router.tables.functions[("default", "svc::a")].owner == second.conn


def test_reattach_with_the_right_token_retires_the_old_connection(engine: Engine) -> None:
    old = engine.connect("svc::a", "svc::b")
    caller = engine.connect()
    invocation_id = engine.call(caller, "svc::a", {})
    new = engine.connect("svc::a", previous=old)
    assert [c.conn for c in engine.closes] == [old.conn]
    assert old.conn not in engine.router.tables.connections
    assert engine.router.close(old.conn) == []  # the I/O layer's close is a no-op now
    failed = caller.one(ev.CallFailed)
    assert (failed.invocation_id, failed.error) == (invocation_id, STOPPED)
    assert not new.take(ev.RegistrationRefused)
    assert engine.router.tables.functions[("default", "svc::a")].owner == new.conn
    assert ("default", "svc::b") not in engine.router.tables.functions  # not re-registered


def test_reattach_with_a_wrong_token_does_nothing(engine: Engine) -> None:
    old = engine.connect("svc::a")
    new = engine.connect("svc::a", previous=old, token="00000000-0000-4000-8000-000000000000")
    assert engine.closes == []
    assert old.conn in engine.router.tables.connections
    assert engine.router.tables.functions[("default", "svc::a")].owner == old.conn
    assert new.one(ev.RegistrationRefused).owner_worker_id == old.worker_id


def test_ping_is_answered_with_pong(engine: Engine) -> None:
    worker = engine.connect()
    engine.send(worker, encode_frame(Ping()))
    worker.one(ev.PongReceived)
