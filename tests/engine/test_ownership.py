"""Who may take, keep and remove what (`ownership.py`; issue 14, item 5).

Regression tests: any worker could remove another's HTTP route through
`engine::unregister_trigger`, provide the engine's trigger types or another namespace's,
squat the engine's function ids, overwrite another worker's binding by reusing its id, take
a function in the moment its owner reconnected; and a replica refused an id never got it
when the owner left. The router tests reuse `test_router`'s simulated workers.
"""

from __future__ import annotations

from router_harness import Engine, call_value

from anyiii._engine.registration_limits import RegistrationLimits
from anyiii._protocol import events as ev
from anyiii._protocol.codes import FORBIDDEN, TRIGGER_REGISTRATION_FAILED
from anyiii._protocol.frames import (
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    UnregisterFunction,
    to_raw,
)

UNREGISTER = "engine::unregister_trigger"


def _route(trigger_id: str, function_id: str, path: str) -> RegisterTrigger:
    config = to_raw({"api_path": path, "http_method": "GET"})
    return RegisterTrigger(
        id=trigger_id, trigger_type="http", function_id=function_id, config=config
    )


def _owner(engine: Engine, function_id: str, namespace: str = "default") -> int | None:
    function = engine.router.tables.functions.get((namespace, function_id))
    return None if function is None else function.owner


# --- removing bindings ---------------------------------------------------------------------


def test_a_worker_cannot_remove_another_workers_route_through_the_builtin() -> None:
    engine = Engine()
    owner = engine.connect("shop::page", bindings=[_route("route-1", "shop::page", "/page")])
    attacker = engine.connect(name="attacker")
    engine.call(attacker, UNREGISTER, {"id": "route-1"})
    assert attacker.one(ev.CallFailed).error.code == FORBIDDEN
    assert "route-1" in engine.router.tables.bindings
    assert call_value(engine, owner, UNREGISTER, {"id": "route-1"}) == {"removed": True}
    assert "route-1" not in engine.router.tables.bindings


def test_durable_bindings_may_be_removed_by_any_worker_and_by_the_engine() -> None:
    engine = Engine()
    maker = engine.connect("svc::a", name="maker")
    payload = {"trigger_type": "http", "function_id": "svc::a", "config": {"api_path": "d"}}
    made = call_value(engine, maker, "engine::register_trigger", payload)["id"]
    engine.disconnect(maker)  # it outlives its caller
    assert made in engine.router.tables.bindings
    other = engine.connect(name="other")
    assert call_value(engine, other, UNREGISTER, {"id": made}) == {"removed": True}


def test_a_worker_cannot_take_over_another_workers_binding_by_reusing_its_id() -> None:
    engine = Engine()
    engine.connect("shop::page", bindings=[_route("route-1", "shop::page", "/page")])
    attacker = engine.connect("evil::page")
    engine.send(attacker, attacker.core.register(_route("route-1", "evil::page", "/page")))
    failure = attacker.one(ev.TriggerRegistrationFailed)
    assert (failure.trigger_id, failure.error.code) == ("route-1", TRIGGER_REGISTRATION_FAILED)
    assert engine.router.tables.bindings["route-1"].frame.function_id == "shop::page"


# --- reserved ids and trigger types ----------------------------------------------------------


def test_workers_cannot_register_engine_ids_or_the_engines_service_functions() -> None:
    engine = Engine()
    squatter = engine.connect("engine::custom", "state::get", "engine::channels::create")
    refused = {r.function_id: r.owner_worker_id for r in squatter.take(ev.RegistrationRefused)}
    assert refused == {"engine::custom": "", "state::get": "", "engine::channels::create": ""}
    assert _owner(engine, "state::get") is None  # still the engine's own
    assert ("default", "engine::custom") not in engine.router.tables.functions


def test_a_worker_cannot_provide_the_engines_trigger_types_in_any_namespace() -> None:
    engine = Engine()
    worker = engine.connect(namespace="shop")
    for type_id in ("http", "cron", "engine::functions-available", "engine::mine"):
        engine.send(worker, worker.core.register(RegisterTriggerType(id=type_id, description="x")))
    provided = {k for k, t in engine.router.tables.trigger_types.items() if t.owner is not None}
    assert provided == set()
    shop = engine.connect("shop::page", namespace="shop", name="shop")
    engine.send(shop, shop.core.register(_route("r", "shop::page", "/p")))
    assert engine.router.tables.bindings["r"].provider == ("default", "http")


def test_a_worker_cannot_provide_a_trigger_type_in_another_namespace() -> None:
    engine = Engine()
    intruder = engine.connect(namespace="evil", name="intruder")
    frame = RegisterTriggerType(id="webhook", description="x", namespace="shop")
    engine.send(intruder, intruder.core.register(frame))
    assert ("shop", "webhook") not in engine.router.tables.trigger_types
    own = RegisterTriggerType(id="webhook", description="x", namespace="evil")
    engine.send(intruder, intruder.core.register(own))
    assert engine.router.tables.trigger_types[("evil", "webhook")].owner == intruder.conn


# --- reattach grace and waiting replicas -------------------------------------------------------


def test_a_departed_owners_ids_are_reserved_for_it_during_the_grace() -> None:
    engine = Engine()
    owner = engine.connect("svc::a")
    engine.disconnect(owner)
    squatter = engine.connect("svc::a", name="squatter")
    refused = squatter.one(ev.RegistrationRefused)
    assert refused.owner_worker_id == owner.worker_id
    back = engine.connect("svc::a", previous=owner)  # the SDK reattaches, then replays
    assert back.take(ev.RegistrationRefused) == []
    assert _owner(engine, "svc::a") == back.conn
    engine.tick(10.0)  # the squatter waits behind a live owner now
    assert _owner(engine, "svc::a") == back.conn


def test_a_wrong_token_does_not_make_a_connection_the_departed_owner() -> None:
    engine = Engine()
    owner = engine.connect("svc::a")
    engine.disconnect(owner)
    impostor = engine.connect(
        "svc::a", previous=owner, token="00000000-0000-4000-8000-00000000dead"
    )
    assert impostor.one(ev.RegistrationRefused).owner_worker_id == owner.worker_id
    assert _owner(engine, "svc::a") is None
    engine.tick(5.0)  # the grace ends: the impostor was refused first, so it waits in line
    assert _owner(engine, "svc::a") == impostor.conn


def test_a_refused_replica_takes_over_when_the_owner_unregisters() -> None:
    engine = Engine()
    owner = engine.connect("svc::a", name="a")
    first = engine.connect("svc::a", name="b")
    second = engine.connect("svc::a", name="c")
    assert first.one(ev.RegistrationRefused).owner_worker_id == owner.worker_id
    second.one(ev.RegistrationRefused)
    engine.send(owner, owner.core.unregister(UnregisterFunction(id="svc::a")))
    assert _owner(engine, "svc::a") == first.conn  # the earliest refused, silently
    assert first.take(ev.RegistrationRefused) == []
    caller = engine.connect()
    engine.call(caller, "svc::a", {})
    assert first.take(ev.InvocationRequested)


def test_a_replica_that_left_or_gave_up_is_not_handed_the_id() -> None:
    engine = Engine(registrations=RegistrationLimits(reattach_grace=0))
    owner = engine.connect("svc::a", name="a")
    gone = engine.connect("svc::a", name="b")
    gave_up = engine.connect("svc::a", name="c")
    last = engine.connect("svc::a", name="d")
    engine.disconnect(gone)
    engine.send(gave_up, gave_up.core.unregister(UnregisterFunction(id="svc::a")))
    engine.disconnect(owner)  # no grace: the id frees up at once
    assert _owner(engine, "svc::a") == last.conn
    assert not engine.router.tables.connections[last.conn].waiting


def test_the_reserved_ids_free_up_for_waiting_replicas_when_the_grace_ends() -> None:
    engine = Engine()
    owner = engine.connect("svc::a", "svc::b")
    replica = engine.connect("svc::b", name="replica")
    replica.one(ev.RegistrationRefused)
    engine.disconnect(owner)
    engine.tick(4.0)
    assert _owner(engine, "svc::b") is None
    engine.tick(5.0)
    assert _owner(engine, "svc::b") == replica.conn
    late = engine.connect("svc::a", name="late")  # nobody waited for svc::a: free now
    assert late.take(ev.RegistrationRefused) == []
    engine.send(late, late.core.register(RegisterFunction(id="svc::a")))
    assert _owner(engine, "svc::a") == late.conn


def test_a_reattaching_owner_gets_its_ids_back_ahead_of_a_waiting_replica() -> None:
    engine = Engine()
    owner = engine.connect("svc::a")
    replica = engine.connect("svc::a", name="replica")
    replica.one(ev.RegistrationRefused)
    back = engine.connect("svc::a", previous=owner)  # retires the old connection first
    assert [c.conn for c in engine.closes] == [owner.conn]
    assert back.take(ev.RegistrationRefused) == []
    assert _owner(engine, "svc::a") == back.conn
    engine.disconnect(back)
    engine.tick(5.0)  # the replica still waited: it gets the id once the grace ends
    assert _owner(engine, "svc::a") == replica.conn
