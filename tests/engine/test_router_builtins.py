"""The engine's `Router`: built-in functions (spec §8) and discovery triggers (spec §9).

`engine::functions::list`, `engine::workers::list`, `engine::register_trigger` and
`engine::unregister_trigger` as a worker calls them, and the `engine::functions-available`
and `engine::workers-available` triggers a worker subscribes to. Driven through
`router_harness` (real worker cores, a fake clock).
"""

from __future__ import annotations

from router_harness import Engine, Peer, call_value, value

from anyiii._protocol import events as ev
from anyiii._protocol.codes import REGISTER_WORKER, TRIGGER_REGISTRATION_FAILED
from anyiii._protocol.frames import (
    ErrorBody,
    RegisterFunction,
    RegisterTrigger,
    UnregisterFunction,
    decode_value,
    to_raw,
)


def test_functions_list_hides_engine_functions_unless_include_internal(engine: Engine) -> None:
    worker = engine.connect("svc::a")
    engine.send(
        worker,
        worker.core.register(
            RegisterFunction(id="svc::hidden", metadata=to_raw({"internal": True}))
        ),
    )
    listed = call_value(engine, worker, "engine::functions::list", {})["functions"]
    listed = [f for f in listed if f["worker_name"] != "anyiii-engine"]  # the services
    assert [f["function_id"] for f in listed] == ["svc::a"]
    assert listed[0]["namespace"] == "default"
    assert listed[0]["worker_name"] == "worker"
    everything = call_value(engine, worker, "engine::functions::list", {"include_internal": True})[
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
    workers = call_value(engine, with_pid, "engine::workers::list", {})["workers"]
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
    assert call_value(engine, caller, unregister, {"id": trigger_id}) == {"removed": True}
    assert provider.one(ev.TriggerBindingRemoved).trigger_id == trigger_id
    assert call_value(engine, caller, unregister, {"id": trigger_id}) == {"removed": False}


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
