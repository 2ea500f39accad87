"""The engine's `Router`, one documented rule at a time (spec §4.1, §4.6, §5, §6, §8, §9, §16).

Each test wires real worker-role protocol cores (`WorkerConnection`) to one router with a
fake clock, the way the engine's I/O layer does: `Send` actions are fed to the addressed
worker's core, `Close` and `Completed` actions are recorded. Tests named `test_bug_...`
are regression tests: each reproduces a bug the first router had, fixed since, and keeps it
fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest
from msgspec import Raw

from anyiii._engine.actions import Action, Close, Completed, Send
from anyiii._engine.router import Router
from anyiii._engine.state_service import StateService
from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    FUNCTION_NOT_FOUND,
    INVALID_INVOCATION_ID,
    INVOCATION_STOPPED,
    MALFORMED_FRAME,
    REGISTER_WORKER,
    TRIGGER_REGISTRATION_FAILED,
)
from anyiii._protocol.frames import (
    ErrorBody,
    Ping,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    decode_frame,
    decode_value,
    encode_frame,
    to_raw,
)
from anyiii._protocol.ids import is_uuid
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.worker import WorkerConnection

E = TypeVar("E", bound=ev.Event)

STOPPED = ErrorBody(INVOCATION_STOPPED, "Invocation stopped")


@dataclass(eq=False)
class Peer:
    """One simulated worker: its protocol core and everything the router sent it."""

    conn: int
    core: WorkerConnection
    events: list[ev.Event] = field(default_factory=list)
    frames: list[object] = field(default_factory=list)

    @property
    def worker_id(self) -> str:
        assert self.core.worker_id is not None
        return self.core.worker_id

    def take(self, kind: type[E]) -> list[E]:
        """Remove and return the events of one kind received so far."""
        taken = [e for e in self.events if isinstance(e, kind)]
        self.events = [e for e in self.events if not isinstance(e, kind)]
        return taken

    def one(self, kind: type[E]) -> E:
        """The single event of `kind` received so far (removed from `events`)."""
        taken = self.take(kind)
        assert len(taken) == 1, (kind, taken, self.events)
        return taken[0]


class Engine:
    """A router with a fake clock, and the I/O layer's side of every connection."""

    def __init__(self, **options: Any) -> None:
        self.now = 0.0
        self.router = Router(
            clock=lambda: self.now, wall_clock_ms=lambda: 0, namespace_grace=5.0, **options
        )
        self.peers: dict[int, Peer] = {}
        self.completed: list[Completed] = []
        self.closes: list[Close] = []

    def perform(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                assert action.conn in self.router.tables.connections, f"sent to a closed {action}"
                peer = self.peers[action.conn]
                peer.frames.append(decode_frame(action.data))
                peer.events.extend(peer.core.receive(action.data))
            elif isinstance(action, Close):
                self.closes.append(action)
            elif isinstance(action, Completed):
                # As the I/O layer does: a call a service made continues in the router.
                follow_up = self.router.completed(action.invocation_id, action.result, action.error)
                if follow_up:
                    self.perform(follow_up)
                else:
                    self.completed.append(action)
            else:  # Persist: this fake storage commits at once
                self.perform(action.then)

    def open(self, *, namespace: str | None = None, ids: Callable[[], str] | None = None) -> Peer:
        """A worker connects; it sends nothing yet."""
        conn, actions = self.router.open()
        peer = Peer(conn, WorkerConnection(namespace=namespace, ids=ids))
        self.peers[conn] = peer
        self.perform(actions)
        peer.one(ev.Registered)
        return peer

    def connect(
        self,
        *functions: str,
        namespace: str | None = None,
        name: str = "worker",
        register: bool = True,
        types: Iterable[str] = (),
        bindings: Iterable[RegisterTrigger] = (),
        previous: Peer | None = None,
        token: str | None = None,
    ) -> Peer:
        """A worker connects and sends its open sequence (Python SDK order, spec §4.2)."""
        peer = self.open(namespace=namespace)
        registry = Registry()
        for type_id in types:
            registry.add(RegisterTriggerType(id=type_id, description=f"{type_id} events"))
        for function_id in functions:
            registry.add(RegisterFunction(id=function_id, description=f"{function_id} here"))
        for binding in bindings:
            registry.add(binding)
        reattach: dict[str, Any] = {}
        if previous is not None:
            reattach = {
                "previous_worker_id": previous.worker_id,
                "previous_reattach_token": token or previous.core.reattach_token,
            }
        info = WorkerInfo(name=name, pid=4242, namespace=namespace)
        frames = peer.core.open_sequence(registry, info, **reattach)
        for frame in frames if register else frames[:-1]:
            self.send(peer, frame)
        return peer

    def send(self, peer: Peer, frame: bytes | str) -> None:
        self.perform(self.router.receive(peer.conn, frame))

    def call(self, peer: Peer, function_id: str, payload: object = None, **options: Any) -> str:
        invocation_id, frame = peer.core.call(function_id, to_raw(payload), **options)
        self.send(peer, frame)
        return invocation_id

    def disconnect(self, peer: Peer) -> None:
        self.perform(self.router.close(peer.conn))
        peer.core.receive(None)

    def tick(self, now: float) -> None:
        self.now = now
        self.perform(self.router.tick())


def value(result: Raw | None) -> object:
    return None if result is None else decode_value(result)


def provider_of(engine: Engine, trigger_id: str) -> tuple[str, str] | None:
    """Where a binding is served: (namespace, trigger type), or None while parked."""
    return engine.router.tables.bindings[trigger_id].provider


def webhook_binding(trigger_id: str = "t-1", function_id: str = "svc::a") -> RegisterTrigger:
    return RegisterTrigger(
        id=trigger_id,
        trigger_type="webhook",
        function_id=function_id,
        config=to_raw({"path": "/hook"}),
        metadata=to_raw({"tag": 1}),
    )


@pytest.fixture
def engine() -> Engine:
    return Engine()


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
    assert value(worker.one(ev.CallCompleted).result) == 9


# --- namespaces and registrations (spec §3.1, §4.1, §11) -----------------------------------


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


# --- triggers (spec §3.4-§3.6, §6) -----------------------------------------------------------


def test_http_binding_without_api_path_is_refused(engine: Engine) -> None:
    worker = engine.connect("svc::a")
    binding = RegisterTrigger(
        id="h-1", trigger_type="http", function_id="svc::a", config=to_raw({"http_method": "GET"})
    )
    engine.send(worker, worker.core.register(binding))
    failed = worker.one(ev.TriggerRegistrationFailed)
    assert (failed.trigger_id, failed.trigger_type, failed.function_id) == (
        "h-1",
        "http",
        "svc::a",
    )
    assert failed.error.code == TRIGGER_REGISTRATION_FAILED
    assert failed.error.message == "api_path is required for http triggers"
    assert "h-1" not in engine.router.tables.bindings
    assert len(engine.router.http_routes) == 0


def test_http_binding_with_api_path_is_accepted_silently(engine: Engine) -> None:
    worker = engine.connect("svc::a")
    config = to_raw({"api_path": "/users/:id", "http_method": "post"})
    binding = RegisterTrigger(id="h-1", trigger_type="http", function_id="svc::a", config=config)
    frames_before = len(worker.frames)
    engine.send(worker, worker.core.register(binding))
    assert len(worker.frames) == frames_before
    matched = engine.router.http_routes.match("POST", "/users/7")
    assert matched is not None
    assert matched[1] == {"id": "7"}


def test_custom_binding_is_parked_until_a_provider_registers(engine: Engine) -> None:
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    assert provider_of(engine, "t-1") is None
    provider = engine.connect(types=["webhook"])
    delivered = provider.one(ev.TriggerBindingRequested).binding
    assert (delivered.id, delivered.trigger_type, delivered.function_id) == (
        "t-1",
        "webhook",
        "svc::a",
    )
    assert decode_value(delivered.config) == {"path": "/hook"}
    assert provider_of(engine, "t-1") == ("default", "webhook")
    assert not binder.take(ev.TriggerRegistrationFailed)


def test_provider_refusal_is_forwarded_to_the_binder_and_parks_the_binding(
    engine: Engine,
) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    error = ErrorBody(TRIGGER_REGISTRATION_FAILED, "bad path")
    engine.send(provider, provider.core.answer_binding("t-1", error))
    failed = binder.one(ev.TriggerRegistrationFailed)
    assert (failed.trigger_id, failed.error) == ("t-1", error)
    assert provider_of(engine, "t-1") is None


def test_provider_acceptance_is_not_reported_to_the_binder(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    frames_before = len(binder.frames)
    engine.send(provider, provider.core.answer_binding("t-1"))
    assert len(binder.frames) == frames_before


def test_provider_disconnect_parks_bindings_until_a_new_provider_registers(
    engine: Engine,
) -> None:
    provider = engine.connect(types=["webhook"])
    engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.disconnect(provider)
    assert provider_of(engine, "t-1") is None
    replacement = engine.connect(types=["webhook"])
    assert replacement.one(ev.TriggerBindingRequested).binding.id == "t-1"
    assert provider_of(engine, "t-1") == ("default", "webhook")


def test_unregistertrigger_reaches_the_provider_with_its_trigger_type(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.send(binder, binder.core.unregister(UnregisterTrigger(id="t-1")))  # no type given
    assert provider.frames[-1] == UnregisterTrigger(id="t-1", trigger_type="webhook")
    removed = provider.one(ev.TriggerBindingRemoved)
    assert (removed.trigger_id, removed.trigger_type) == ("t-1", "webhook")
    assert "t-1" not in engine.router.tables.bindings


def test_binder_disconnect_unbinds_at_the_provider(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    binder = engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.disconnect(binder)
    assert provider.one(ev.TriggerBindingRemoved).trigger_id == "t-1"
    assert not engine.router.tables.bindings


def test_unregistertriggertype_removes_the_type_and_parks_its_bindings(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    engine.connect("svc::a", bindings=[webhook_binding()])
    provider.one(ev.TriggerBindingRequested)
    engine.send(provider, provider.core.unregister(UnregisterTriggerType(id="webhook")))
    assert ("default", "webhook") not in engine.router.tables.trigger_types
    assert provider_of(engine, "t-1") is None
    replacement = engine.connect(types=["webhook"])
    assert replacement.one(ev.TriggerBindingRequested).binding.id == "t-1"


# --- built-in functions (spec §8) ------------------------------------------------------------


def _call_value(engine: Engine, peer: Peer, function_id: str, payload: object) -> Any:
    invocation_id = engine.call(peer, function_id, payload)
    completed = peer.one(ev.CallCompleted)
    assert completed.invocation_id == invocation_id
    return value(completed.result)


def test_functions_list_hides_engine_functions_unless_include_internal(engine: Engine) -> None:
    worker = engine.connect("svc::a")
    engine.send(
        worker,
        worker.core.register(
            RegisterFunction(id="svc::hidden", metadata=to_raw({"internal": True}))
        ),
    )
    listed = _call_value(engine, worker, "engine::functions::list", {})["functions"]
    listed = [f for f in listed if f["worker_name"] != "anyiii-engine"]  # the services
    assert [f["function_id"] for f in listed] == ["svc::a"]
    assert listed[0]["namespace"] == "default"
    assert listed[0]["worker_name"] == "worker"
    everything = _call_value(engine, worker, "engine::functions::list", {"include_internal": True})[
        "functions"
    ]
    ids = [f["function_id"] for f in everything]
    assert "engine::functions::list" in ids
    assert "svc::hidden" in ids
    assert ids == sorted(ids)


def test_workers_list_shows_only_workers_that_reported_a_pid(engine: Engine) -> None:
    with_pid = engine.connect(name="has-pid")
    without_pid = engine.open()
    payload = to_raw({"name": "no-pid", "runtime": "node"})
    engine.send(without_pid, without_pid.core.call_void(REGISTER_WORKER, payload))
    engine.open()  # never registers at all
    workers = _call_value(engine, with_pid, "engine::workers::list", {})["workers"]
    assert sorted(w["name"] for w in workers) == ["anyiii-engine", "has-pid"]
    engine_entry = next(w for w in workers if w["name"] == "anyiii-engine")
    assert (engine_entry["runtime"], engine_entry["status"]) == ("engine", "available")
    worker_entry = next(w for w in workers if w["name"] == "has-pid")
    assert worker_entry["id"] == with_pid.worker_id


def test_register_trigger_answers_only_after_the_providers_ack(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    caller = engine.connect("svc::a")
    invocation_id = engine.call(
        caller,
        "engine::register_trigger",
        {"trigger_type": "webhook", "function_id": "svc::a", "config": {"k": 1}},
    )
    assert not caller.take(ev.CallCompleted)
    delivered = provider.one(ev.TriggerBindingRequested).binding
    assert decode_value(delivered.config) == {"k": 1}
    engine.send(provider, provider.core.answer_binding(delivered.id))
    completed = caller.one(ev.CallCompleted)
    assert completed.invocation_id == invocation_id
    assert value(completed.result) == {"id": delivered.id}
    assert engine.router.tables.bindings[delivered.id].owner is None  # durable (spec §8)


def test_register_trigger_refused_by_the_provider_answers_its_error(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    caller = engine.connect("svc::a")
    engine.call(
        caller, "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::a"}
    )
    delivered = provider.one(ev.TriggerBindingRequested).binding
    error = ErrorBody(TRIGGER_REGISTRATION_FAILED, "bad config")
    engine.send(provider, provider.core.answer_binding(delivered.id, error))
    failed = caller.one(ev.CallFailed).error
    assert failed.code == TRIGGER_REGISTRATION_FAILED
    assert failed.message == "trigger_registration_failed: bad config"


def test_register_trigger_answers_after_the_ack_timeout(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    caller = engine.connect("svc::a")
    engine.call(
        caller, "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::a"}
    )
    delivered = provider.one(ev.TriggerBindingRequested).binding
    engine.tick(9.9)
    assert not caller.take(ev.CallCompleted)
    engine.tick(10.0)
    assert value(caller.one(ev.CallCompleted).result) == {"id": delivered.id}


def test_unregister_trigger_reports_whether_it_removed_something(engine: Engine) -> None:
    provider = engine.connect(types=["webhook"])
    caller = engine.connect("svc::a")
    engine.call(
        caller, "engine::register_trigger", {"trigger_type": "webhook", "function_id": "svc::a"}
    )
    trigger_id = provider.one(ev.TriggerBindingRequested).binding.id
    engine.send(provider, provider.core.answer_binding(trigger_id))
    caller.one(ev.CallCompleted)
    unregister = "engine::unregister_trigger"
    assert _call_value(engine, caller, unregister, {"id": trigger_id}) == {"removed": True}
    assert provider.one(ev.TriggerBindingRemoved).trigger_id == trigger_id
    assert _call_value(engine, caller, unregister, {"id": trigger_id}) == {"removed": False}


# --- discovery triggers (spec §9) ------------------------------------------------------------


def _subscriber(engine: Engine, trigger_type: str) -> Peer:
    binding = RegisterTrigger(
        id=f"sub-{trigger_type}", trigger_type=trigger_type, function_id="s::on", config=to_raw({})
    )
    peer = engine.connect("s::on", name="subscriber", bindings=[binding])
    engine.tick(engine.now + 1.0)  # let the subscriber's own registration settle
    for request in peer.take(ev.InvocationRequested):
        assert request.invocation_id is not None
        engine.send(peer, peer.core.complete(request.invocation_id))
    return peer


def test_functions_available_fires_once_after_the_debounce(engine: Engine) -> None:
    subscriber = _subscriber(engine, "engine::functions-available")
    start = engine.now
    engine.connect("svc::a")
    assert not subscriber.take(ev.InvocationRequested)
    engine.tick(start + 0.04)
    assert not subscriber.take(ev.InvocationRequested)
    engine.tick(start + 0.1)
    request = subscriber.one(ev.InvocationRequested)
    payload = decode_value(request.data)
    assert isinstance(payload, dict)
    assert payload["event"] == "functions_changed"
    ids = {f["function_id"] for f in payload["functions"]}
    assert {"svc::a", "s::on", "engine::functions::list"} <= ids  # full, unfiltered list
    engine.tick(start + 1.0)
    assert not subscriber.take(ev.InvocationRequested)


def test_functions_available_is_quiet_when_a_change_is_reverted_in_time(engine: Engine) -> None:
    subscriber = _subscriber(engine, "engine::functions-available")
    worker = engine.connect()
    engine.tick(engine.now + 1.0)
    subscriber.take(ev.InvocationRequested)
    engine.send(worker, worker.core.register(RegisterFunction(id="svc::b")))
    engine.send(worker, worker.core.unregister(UnregisterFunction(id="svc::b")))
    engine.tick(engine.now + 1.0)
    assert not subscriber.take(ev.InvocationRequested)


def test_workers_available_reports_connect_metadata_and_disconnect(engine: Engine) -> None:
    subscriber = _subscriber(engine, "engine::workers-available")

    def events() -> list[tuple[str, str]]:
        payloads = [decode_value(r.data) for r in subscriber.take(ev.InvocationRequested)]
        return [(p["event"], p["worker_id"]) for p in payloads]  # type: ignore[index]

    worker = engine.open()
    assert events() == [("worker_connected", worker.worker_id)]
    engine.send(worker, worker.core.call_void(REGISTER_WORKER, to_raw({"name": "x", "pid": 1})))
    assert events() == [("worker_metadata_updated", worker.worker_id)]
    engine.disconnect(worker)
    assert events() == [("worker_disconnected", worker.worker_id)]


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


# --- regressions: bugs found while writing these tests, now fixed ------------------------
# Each reproduces one bug the first router had.


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


def test_invokefunction_without_data_reads_as_null(engine: Engine) -> None:
    callee = engine.connect("svc::a")
    caller = engine.connect()
    raw = msgspec.json.encode(
        {"type": "invokefunction", "function_id": "svc::a", "action": {"type": "void"}}
    )
    engine.send(caller, raw)
    assert value(callee.one(ev.InvocationRequested).data) is None
