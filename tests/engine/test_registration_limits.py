"""Registration limits and bounded listings (`registration_limits.py`, `listings.py`).

Regression tests for issue 14, items 1 and 2: registrations per worker, their sizes and the
durable bindings a worker makes were unlimited, so two huge descriptions made every
`engine::functions::list` answer larger than its callers accept; and
`engine::workers::list` counted each worker's calls by scanning every call in flight.
The router tests reuse `test_router`'s simulated workers; the last test runs the engine
over real sockets.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from engine_peers import decode, encode, raw_client, raw_worker, register_frame
from router_harness import Engine, Peer, call_value, value

from anyiii._engine.registration_limits import RegistrationLimits
from anyiii._engine.tables import Invocation
from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    INVALID_ARGUMENTS,
    REGISTER_WORKER,
    TRIGGER_REGISTRATION_FAILED,
)
from anyiii._protocol.frames import (
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    to_raw,
)
from anyiii._transport import TransportLimits
from anyiii.engine import EngineSettings, run

BIG = "x" * (64 * 1024 + 1)
"""One byte over the default description limit."""


def _register(engine: Engine, peer: Peer, frame: RegisterFunction) -> None:
    engine.send(peer, peer.core.register(frame))


def _refused(peer: Peer) -> list[str | None]:
    return [r.function_id for r in peer.take(ev.RegistrationRefused)]


def test_a_description_over_the_limit_is_refused_and_the_worker_stays_connected() -> None:
    engine = Engine()
    worker = engine.connect("svc::ok")
    _register(engine, worker, RegisterFunction(id="svc::big", description=BIG))
    refused = worker.one(ev.RegistrationRefused)
    assert (refused.code, refused.function_id, refused.owner_worker_id) == (
        FUNCTION_NAMESPACE_CONFLICT,
        "svc::big",
        "",
    )
    assert not refused.fatal
    assert ("default", "svc::big") not in engine.router.tables.functions
    assert engine.closes == []
    _register(engine, worker, RegisterFunction(id="svc::fits", description=BIG[:-1]))
    assert _refused(worker) == []


@pytest.mark.parametrize("field", ["metadata", "request_format", "response_format"])
def test_metadata_and_schemas_over_the_limit_are_refused(field: str) -> None:
    limits = RegistrationLimits(max_metadata_bytes=2000, max_schema_bytes=2000)
    engine = Engine(registrations=limits)
    worker = engine.connect()
    big = to_raw({"k": "v" * 2000})
    _register(engine, worker, RegisterFunction(id="svc::a", **{field: big}))
    assert _refused(worker) == ["svc::a"]
    _register(engine, worker, RegisterFunction(id="svc::b", **{field: to_raw({"k": 1})}))
    assert _refused(worker) == []


def test_registrations_per_worker_are_capped_but_re_registering_is_free() -> None:
    engine = Engine(registrations=RegistrationLimits(max_registrations=3))
    worker = engine.connect("svc::a", "svc::b")
    engine.send(worker, worker.core.register(RegisterTriggerType(id="t", description="t")))
    _register(engine, worker, RegisterFunction(id="svc::c"))
    assert _refused(worker) == ["svc::c"]
    _register(engine, worker, RegisterFunction(id="svc::a", description="again"))
    assert _refused(worker) == []  # its own id again: not a new registration
    binding = RegisterTrigger(id="b-1", trigger_type="t", function_id="svc::a")
    engine.send(worker, worker.core.register(binding))
    failure = worker.one(ev.TriggerRegistrationFailed)
    assert (failure.trigger_id, failure.error.code) == ("b-1", TRIGGER_REGISTRATION_FAILED)
    assert "b-1" not in engine.router.tables.bindings
    other = engine.connect("svc::c")  # the limit is per worker
    assert _refused(other) == []


def test_a_trigger_type_over_the_limits_is_not_provided() -> None:
    engine = Engine()
    worker = engine.connect()
    engine.send(worker, worker.core.register(RegisterTriggerType(id="big", description=BIG)))
    assert ("default", "big") not in engine.router.tables.trigger_types


def test_a_binding_whose_config_is_over_the_limit_is_refused() -> None:
    engine = Engine(registrations=RegistrationLimits(max_metadata_bytes=2000))
    worker = engine.connect("svc::a")
    binding = RegisterTrigger(
        id="b-1", trigger_type="http", function_id="svc::a", config=to_raw({"api_path": "x" * 2000})
    )
    engine.send(worker, worker.core.register(binding))
    assert worker.one(ev.TriggerRegistrationFailed).trigger_id == "b-1"
    assert "b-1" not in engine.router.tables.bindings


def test_durable_bindings_per_worker_are_capped_across_its_connections() -> None:
    engine = Engine(registrations=RegistrationLimits(max_durable_bindings=2))
    payload = {"trigger_type": "http", "function_id": "svc::a", "config": {"api_path": "p"}}
    first = engine.connect(name="cli")
    for _ in range(2):
        assert "id" in call_value(engine, first, "engine::register_trigger", payload)
    engine.disconnect(first)
    again = engine.connect(name="cli")  # the same worker on a new connection
    engine.call(again, "engine::register_trigger", payload)
    failed = again.one(ev.CallFailed)
    assert failed.error.code == TRIGGER_REGISTRATION_FAILED
    other = engine.connect(name="other")
    assert "id" in call_value(engine, other, "engine::register_trigger", payload)
    assert sum(b.owner is None for b in engine.router.tables.bindings.values()) == 3


def test_durable_bindings_of_all_workers_together_are_capped_in_bytes() -> None:
    """Renaming itself is no way around the per-worker count: the engine-wide total
    refuses the binding that would pass it, and removing one makes room again."""
    payload = {"trigger_type": "http", "function_id": "svc::a", "config": {"api_path": "p"}}
    engine = Engine(registrations=RegistrationLimits(max_durable_binding_bytes=300))
    made = []
    for index in range(10):  # a new name each time: the per-worker count never bites
        worker = engine.connect(name=f"rename-{index}")
        engine.call(worker, "engine::register_trigger", payload)
        failed = [e for e in worker.events if isinstance(e, ev.CallFailed)]
        if failed:
            assert failed[0].error.code == TRIGGER_REGISTRATION_FAILED
            assert "max_durable_binding_bytes" in failed[0].error.message
            break
        made.append(value(worker.one(ev.CallCompleted).result)["id"])  # type: ignore[index]
    assert 0 < len(made) < 10
    durable = [b for b in engine.router.tables.bindings.values() if b.owner is None]
    assert len(durable) == len(made)
    remover = engine.connect(name="remover")
    assert call_value(engine, remover, "engine::unregister_trigger", {"id": made[0]}) == {
        "removed": True
    }
    assert "id" in call_value(engine, remover, "engine::register_trigger", payload)


def test_the_durable_tallies_follow_every_way_a_binding_leaves() -> None:
    """Refused by its provider, or removed: either way the binding no longer counts."""
    engine = Engine(registrations=RegistrationLimits(max_durable_bindings=1))
    good = {"trigger_type": "http", "function_id": "svc::a", "config": {"api_path": "p"}}
    bad = {"trigger_type": "http", "function_id": "svc::a", "config": {"nope": 1}}
    worker = engine.connect(name="cli")
    engine.call(worker, "engine::register_trigger", bad)  # the http provider refuses it
    assert worker.one(ev.CallFailed)
    triggers = engine.router._triggers
    assert (triggers.durable_bytes, triggers.durable_made_by("default/cli")) == (0, 0)
    worker.events.clear()
    made = call_value(engine, worker, "engine::register_trigger", good)["id"]
    assert triggers.durable_made_by("default/cli") == 1
    assert call_value(engine, worker, "engine::unregister_trigger", {"id": made}) == {
        "removed": True
    }
    assert (triggers.durable_bytes, triggers.durable_made_by("default/cli")) == (0, 0)
    assert "id" in call_value(engine, worker, "engine::register_trigger", good)


def test_functions_list_is_cut_at_the_listing_budget_and_says_so() -> None:
    engine = Engine(registrations=RegistrationLimits(max_listing_bytes=4096))
    worker = engine.connect(*(f"svc::{i:03}" for i in range(100)))
    answer = call_value(engine, worker, "engine::functions::list", {"prefix": "svc::"})
    assert answer["truncated"] is True
    listed = [f["function_id"] for f in answer["functions"]]
    assert 0 < len(listed) < 100
    assert listed == [f"svc::{i:03}" for i in range(len(listed))]  # a prefix, in order
    narrow = call_value(engine, worker, "engine::functions::list", {"prefix": "svc::09"})
    assert "truncated" not in narrow
    assert len(narrow["functions"]) == 10
    info = call_value(engine, worker, "engine::workers::info", {"name": "worker"})
    assert info["truncated"] is True
    assert info["worker"]["name"] == "worker"


def test_a_worker_description_over_the_limit_is_refused_and_not_listed() -> None:
    engine = Engine(registrations=RegistrationLimits(max_metadata_bytes=1000))
    worker = engine.open()
    payload = to_raw({"name": "chatty", "pid": 1, "description": "d" * 2000})
    invocation_id, frame = worker.core.call(REGISTER_WORKER, payload)
    engine.send(worker, frame)
    failed = worker.one(ev.CallFailed)
    assert (failed.invocation_id, failed.error.code) == (invocation_id, INVALID_ARGUMENTS)
    workers = call_value(engine, worker, "engine::workers::list", {})["workers"]
    assert [w["name"] for w in workers] == ["anyiii-engine"]


class _CountingInvocations(dict[str, Invocation]):
    """The invocations table, counting every walk over it."""

    walks = 0

    def values(self) -> Any:
        _CountingInvocations.walks += 1
        return super().values()

    def items(self) -> Any:
        _CountingInvocations.walks += 1
        return super().items()

    def __iter__(self) -> Any:
        _CountingInvocations.walks += 1
        return super().__iter__()


def test_workers_list_counts_calls_in_flight_without_walking_them() -> None:
    engine = Engine()
    busy = engine.connect("svc::slow", name="busy")
    idle = engine.connect(name="idle")
    ids = [engine.call(idle, "svc::slow", {}) for _ in range(5)]
    requests = busy.take(ev.InvocationRequested)
    assert len(requests) == 5
    tables = engine.router.tables
    tables.invocations = _CountingInvocations(tables.invocations)
    _CountingInvocations.walks = 0
    workers = call_value(engine, idle, "engine::workers::list", {})["workers"]
    assert _CountingInvocations.walks == 0
    active = {w["name"]: w["active_invocations"] for w in workers}
    assert active == {"anyiii-engine": 0, "busy": 5, "idle": 0}
    for request in requests[:3]:
        engine.send(busy, busy.core.complete(request.invocation_id, to_raw(1)))
    assert len(idle.take(ev.CallCompleted)) == 3
    workers = call_value(engine, idle, "engine::workers::list", {})["workers"]
    assert {w["name"]: w["active_invocations"] for w in workers}["busy"] == 2
    engine.disconnect(busy)
    assert {f.invocation_id for f in idle.take(ev.CallFailed)} == set(ids[3:])
    assert tables.active_invocations(busy.conn) == 0


async def test_huge_descriptions_are_refused_and_listings_keep_reaching_small_callers() -> None:
    """The finding: descriptions larger than a caller accepts in one message made every
    `engine::functions::list` answer disconnect it. Scaled down: the caller accepts 1 MiB;
    an abuser registers two 600 KiB descriptions."""
    small = TransportLimits(max_message_size=2**20)
    with anyio.fail_after(20):
        async with (
            run(http_port=None, settings=EngineSettings()) as engine,
            raw_client(engine.url) as (abuser, _),
            raw_worker(engine.url, "innocent", limits=small) as innocent,
        ):
            for name in ("abuse::a", "abuse::b"):
                frame = {"type": "registerfunction", "id": name, "description": "d" * 600_000}
                await abuser.send(encode(frame))
            await abuser.send(encode(register_frame("abuser")))
            await abuser.send(encode({"type": "ping"}))
            answers = [decode(await abuser.receive())]  # in order: the pong comes last
            while answers[-1]["type"] != "pong":
                answers.append(decode(await abuser.receive()))
            for _ in range(3):  # before the fix, the first of these disconnected `innocent`
                listed = await innocent.result("engine::functions::list", {"search": "abuse"})
                assert listed == {"functions": []}
            assert innocent.closed is None
            refused = [(a["type"], a.get("function_id")) for a in answers[:-1]]
            assert refused == [
                ("registrationrejected", "abuse::a"),
                ("registrationrejected", "abuse::b"),
            ]
