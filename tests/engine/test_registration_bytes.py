"""The per-connection byte cap on registrations (`RegistrationLimits.max_registration_bytes`).

The count and size limits bounded each registration but not their total: 10,000
registrations of ~800 KiB each let one worker make the engine hold ~8 GB. The total is
kept per connection (`tables.Held`), counted in bytes of what the worker sent, and given
back on unregister, on replacement and on disconnect. The router tests reuse
`test_router`'s simulated workers; the property test checks the running total against a
recount of what each connection holds; the last test runs the engine over real sockets.
"""

from __future__ import annotations

import logging
from typing import Final

import anyio
import pytest
from engine_peers import decode, encode, raw_client, register_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from router_harness import Engine, Peer

from anyiii._engine.registration_limits import (
    RegistrationLimits,
    binding_bytes,
    function_bytes,
    trigger_type_bytes,
)
from anyiii._engine.tables import Connection
from anyiii._protocol import events as ev
from anyiii._protocol.codes import FUNCTION_NAMESPACE_CONFLICT, TRIGGER_REGISTRATION_FAILED
from anyiii._protocol.frames import (
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    to_raw,
)
from anyiii.engine import EngineSettings, run

CAP: Final = 1000


def _engine(cap: int = CAP) -> Engine:
    return Engine(registrations=RegistrationLimits(max_registration_bytes=cap))


def _function(function_id: str, size: int) -> RegisterFunction:
    """A function that takes `len(function_id) + size` bytes."""
    return RegisterFunction(id=function_id, description="d" * size)


def _binding(trigger_id: str, size: int) -> RegisterTrigger:
    """A binding taking `len(trigger_id) + 7 ("webhook") + 6 ("svc::a") + size` bytes:
    `size` counts its `config`, a JSON string of `size - 2` characters."""
    return RegisterTrigger(
        id=trigger_id, trigger_type="webhook", function_id="svc::a", config=to_raw("c" * (size - 2))
    )


def _type(type_id: str, size: int) -> RegisterTriggerType:
    return RegisterTriggerType(id=type_id, description="d" * size)


def _conn(engine: Engine, peer: Peer) -> Connection:
    return engine.router.tables.connections[peer.conn]


def _send(engine: Engine, peer: Peer, frame: RegisterFunction | RegisterTrigger) -> None:
    engine.send(peer, peer.core.register(frame))


def _refused(peer: Peer) -> list[str | None]:
    return [r.function_id for r in peer.take(ev.RegistrationRefused)]


def _reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "max_registration_bytes" in r.getMessage()]


# --- the setting -------------------------------------------------------------------------


def test_the_default_cap_is_64_mib() -> None:
    assert RegistrationLimits().max_registration_bytes == 64 * 2**20


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1000", None])
def test_the_cap_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="max_registration_bytes must be a positive integer"):
        RegistrationLimits(max_registration_bytes=bad)  # type: ignore[arg-type]
    assert RegistrationLimits(max_registration_bytes=1).max_registration_bytes == 1


def test_every_field_a_function_keeps_is_counted_in_bytes_of_json() -> None:
    engine = _engine(cap=64 * 2**20)
    worker = engine.connect()
    frame = RegisterFunction(
        id="svc::é",  # 7 bytes of UTF-8
        description="ü" * 10,  # 20
        request_format=to_raw({"a": 1}),  # 7
        response_format=to_raw([1, 2]),  # 5
        metadata=to_raw("m"),  # 3
    )
    _send(engine, worker, frame)
    assert _refused(worker) == []
    assert _conn(engine, worker).registered_bytes == 7 + 20 + 7 + 5 + 3


# --- refusals past the cap ---------------------------------------------------------------


def test_a_function_past_the_cap_is_refused_and_the_log_names_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="anyiii.engine")
    engine = _engine()
    worker = engine.connect()
    _send(engine, worker, _function("svc::a", 600))  # 606 bytes
    _send(engine, worker, _function("svc::b", 600))  # 1212 together: over 1000
    refused = worker.one(ev.RegistrationRefused)
    assert (refused.code, refused.function_id, refused.owner_worker_id, refused.fatal) == (
        FUNCTION_NAMESPACE_CONFLICT,
        "svc::b",
        "",
        False,
    )
    assert _reasons(caplog) == [
        f"worker {worker.worker_id}: function 'svc::b' refused: the worker's registrations "
        "would take 1212 bytes with this one (606 bytes), over the limit of 1000 "
        "(max_registration_bytes)"
    ]
    assert ("default", "svc::b") not in engine.router.tables.functions
    assert _conn(engine, worker).registered_bytes == 606
    assert engine.closes == []
    _send(engine, worker, _function("svc::c", 388))  # 394: exactly the cap
    assert _refused(worker) == []
    assert _conn(engine, worker).registered_bytes == CAP
    _send(engine, worker, _function("x", 0))  # a single byte more
    assert _refused(worker) == ["x"]


def test_a_binding_past_the_cap_is_refused_with_the_numbers_in_its_message() -> None:
    engine = _engine()
    worker = engine.connect()
    _send(engine, worker, _binding("b-1", 600))  # 3 + 7 + 6 + 600 = 616
    _send(engine, worker, _binding("b-2", 600))
    failure = worker.one(ev.TriggerRegistrationFailed)
    assert (failure.trigger_id, failure.error.code, failure.error.message) == (
        "b-2",
        TRIGGER_REGISTRATION_FAILED,
        "the worker's registrations would take 1232 bytes with this one (616 bytes), "
        "over the limit of 1000 (max_registration_bytes)",
    )
    assert set(engine.router.tables.bindings) == {"b-1"}
    assert _conn(engine, worker).registered_bytes == 616


def test_a_trigger_type_past_the_cap_is_not_provided_and_the_refusal_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="anyiii.engine")
    engine = _engine()
    worker = engine.connect()
    engine.send(worker, worker.core.register(_type("ta", 600)))  # 602
    engine.send(worker, worker.core.register(_type("tb", 600)))
    assert ("default", "ta") in engine.router.tables.trigger_types
    assert ("default", "tb") not in engine.router.tables.trigger_types
    [reason] = _reasons(caplog)
    assert "trigger type 'tb' refused" in reason
    assert "would take 1204 bytes with this one (602 bytes), over the limit of 1000" in reason
    assert [r.levelno for r in caplog.records if r.getMessage() == reason] == [logging.ERROR]


def test_the_kinds_share_one_total() -> None:
    engine = _engine()
    worker = engine.connect()
    engine.send(worker, worker.core.register(_type("ta", 298)))  # 300
    _send(engine, worker, _function("svc::a", 294))  # 300
    _send(engine, worker, _binding("b-1", 284))  # 300
    assert _conn(engine, worker).registered_bytes == 900
    _send(engine, worker, _function("svc::b", 100))
    assert _refused(worker) == ["svc::b"]
    _send(engine, worker, _binding("b-2", 100))
    assert worker.one(ev.TriggerRegistrationFailed).trigger_id == "b-2"
    engine.send(worker, worker.core.register(_type("tb", 100)))
    assert ("default", "tb") not in engine.router.tables.trigger_types


def test_a_waiting_registration_takes_its_bytes_until_it_is_applied_or_withdrawn() -> None:
    engine = _engine()
    owner = engine.connect("svc::a", name="owner")
    replica = engine.connect(name="replica")
    _send(engine, replica, _function("svc::a", 600))  # held by `owner`: it waits, 606 bytes
    assert _refused(replica) == ["svc::a"]
    assert _conn(engine, replica).registered_bytes == 606
    _send(engine, replica, _function("svc::b", 600))  # fits alone, not with the waiting one
    assert _refused(replica) == ["svc::b"]
    _send(engine, replica, _function("svc::a", 900))  # waiting again, in place of the first
    assert _refused(replica) == ["svc::a"]
    assert _conn(engine, replica).registered_bytes == 906
    engine.send(owner, owner.core.unregister(UnregisterFunction(id="svc::a")))
    assert engine.router.tables.functions[("default", "svc::a")].owner == replica.conn
    assert _conn(engine, replica).registered_bytes == 906  # the same bytes, now served
    assert _refused(replica) == []
    replica2 = engine.connect(name="replica-2")
    _send(engine, replica2, _function("svc::a", 600))  # waits behind `replica`
    engine.send(replica2, replica2.core.unregister(UnregisterFunction(id="svc::a")))
    assert _conn(engine, replica2).registered_bytes == 0


# --- giving bytes back -------------------------------------------------------------------


def test_registering_and_unregistering_in_a_loop_never_reaches_the_cap() -> None:
    engine = _engine()
    worker = engine.connect()
    for round_ in range(20):  # 20 x 3 x ~600 bytes in total: far past the cap
        _send(engine, worker, _function(f"svc::{round_}", 600))
        engine.send(worker, worker.core.unregister(UnregisterFunction(id=f"svc::{round_}")))
        _send(engine, worker, _binding(f"b-{round_}", 600))
        engine.send(worker, worker.core.unregister(UnregisterTrigger(id=f"b-{round_}")))
        engine.send(worker, worker.core.register(_type(f"t{round_}", 600)))
        assert ("default", f"t{round_}") in engine.router.tables.trigger_types
        engine.send(worker, worker.core.unregister(UnregisterTriggerType(id=f"t{round_}")))
    assert _refused(worker) == []
    assert worker.take(ev.TriggerRegistrationFailed) == []
    assert _conn(engine, worker).registered_bytes == 0


def test_registering_the_same_id_again_replaces_its_bytes() -> None:
    engine = _engine()
    worker = engine.connect()
    for size in (600, 900, 300, 990, 600):  # each fits alone; any two would not
        _send(engine, worker, _function("svc::a", size))
        assert _refused(worker) == []
        assert _conn(engine, worker).registered_bytes == 6 + size
    engine.send(worker, worker.core.unregister(UnregisterFunction(id="svc::a")))
    for size in (600, 900, 300, 900):
        _send(engine, worker, _binding("b-1", size))
        assert worker.take(ev.TriggerRegistrationFailed) == []
        assert _conn(engine, worker).registered_bytes == 16 + size
    engine.send(worker, worker.core.unregister(UnregisterTrigger(id="b-1")))
    for size in (600, 900, 300, 900):
        engine.send(worker, worker.core.register(_type("ta", size)))
        assert engine.router.tables.trigger_types[("default", "ta")].description == "d" * size
        assert _conn(engine, worker).registered_bytes == 2 + size


def test_a_binding_removed_through_the_builtin_gives_its_bytes_back() -> None:
    engine = _engine()
    worker = engine.connect()
    _send(engine, worker, _binding("b-1", 900))
    engine.call(worker, "engine::unregister_trigger", {"id": "b-1"})
    assert worker.take(ev.CallCompleted)
    assert _conn(engine, worker).registered_bytes == 0


def test_a_trigger_type_taken_over_leaves_its_previous_providers_total() -> None:
    engine = _engine()
    first = engine.connect(name="first")
    engine.send(first, first.core.register(_type("webhook", 900)))
    second = engine.connect(name="second")
    engine.send(second, second.core.register(_type("webhook", 10)))
    assert engine.router.tables.trigger_types[("default", "webhook")].owner == second.conn
    assert _conn(engine, first).registered_bytes == 0
    _send(engine, first, _function("svc::a", 900))  # room again
    assert _refused(first) == []


def test_a_reconnecting_worker_replays_everything_without_refusal() -> None:
    """Disconnecting gives everything back: the SDK's replay on its next connection (here
    reattaching, as the SDKs do) is held to a fresh total."""
    engine = _engine()
    worker = engine.connect(name="w")
    _send(engine, worker, _function("svc::a", 500))
    _send(engine, worker, _binding("b-1", 450))
    engine.disconnect(worker)
    assert engine.router.tables.bindings == {}
    again = engine.connect(name="w", previous=worker)
    _send(engine, again, _function("svc::a", 500))
    _send(engine, again, _binding("b-1", 450))
    assert _refused(again) == []
    assert again.take(ev.TriggerRegistrationFailed) == []
    assert _conn(engine, again).registered_bytes == 506 + 466


def test_another_worker_is_not_held_to_a_full_workers_total() -> None:
    engine = _engine()
    full = engine.connect(name="full")
    _send(engine, full, _function("svc::a", 994))
    other = engine.connect(name="other")
    _send(engine, other, _function("svc::b", 994))
    _send(engine, full, _function("svc::c", 1))
    assert _refused(other) == []
    assert _refused(full) == ["svc::c"]


def test_durable_bindings_count_toward_no_connection() -> None:
    engine = _engine()
    worker = engine.connect("svc::a")
    config = {"api_path": "p" * 2000}  # alone over the cap
    payload = {"trigger_type": "http", "function_id": "svc::a", "config": config}
    engine.call(worker, "engine::register_trigger", payload)
    assert worker.take(ev.CallCompleted)
    assert _conn(engine, worker).registered_bytes == function_bytes(
        RegisterFunction(id="svc::a", description="svc::a here")
    )


# --- the running total against a recount -------------------------------------------------

_IDS = st.sampled_from(["svc::a", "svc::b"])
_SIZES = st.sampled_from([2, 200, 450, 900])
_WORKERS = st.integers(0, 2)
_OPS = st.one_of(
    st.tuples(st.just("function"), _WORKERS, _IDS, _SIZES),
    st.tuples(st.just("unfunction"), _WORKERS, _IDS, _SIZES),
    st.tuples(st.just("bind"), _WORKERS, st.sampled_from(["b-1", "b-2"]), _SIZES),
    st.tuples(st.just("unbind"), _WORKERS, st.sampled_from(["b-1", "b-2"]), _SIZES),
    st.tuples(st.just("bad-route"), _WORKERS, st.sampled_from(["b-1", "b-2"]), _SIZES),
    st.tuples(st.just("type"), _WORKERS, st.sampled_from(["webhook", "other"]), _SIZES),
    st.tuples(st.just("untype"), _WORKERS, st.sampled_from(["webhook", "other"]), _SIZES),
    st.tuples(st.just("reconnect"), _WORKERS, _IDS, _SIZES),
    st.tuples(st.just("tick"), _WORKERS, _IDS, _SIZES),
)


def _recount(engine: Engine, conn: Connection) -> tuple[int, int]:
    """What `conn` holds in the engine's tables: (registrations, bytes), walked."""
    tables = engine.router.tables
    functions = [f.frame for f in tables.functions.values() if f.owner == conn.id]
    bindings = [b.frame for b in tables.bindings.values() if b.owner == conn.id]
    types = [t.frame for t in tables.trigger_types.values() if t.owner == conn.id]
    waiting = [  # the router's own record of the waiting lines (no public view of it)
        line[conn.id] for line in engine.router._ownership._waiting.values() if conn.id in line
    ]
    size = sum(map(function_bytes, functions + waiting)) + sum(map(binding_bytes, bindings))
    size += sum(trigger_type_bytes(t) for t in types if t is not None)
    return len(functions) + len(bindings) + len(types) + len(waiting), size


@settings(max_examples=300, deadline=None)
@given(st.lists(_OPS, max_size=40))
def test_the_running_total_is_what_the_connection_holds(
    ops: list[tuple[str, int, str, int]],
) -> None:
    engine = _engine()
    workers = [engine.connect(name=f"w{i}") for i in range(3)]
    for kind, index, key, size in ops:
        worker = workers[index]
        core = worker.core
        if kind == "function":
            _send(engine, worker, _function(key, size))
        elif kind == "unfunction":
            engine.send(worker, core.unregister(UnregisterFunction(id=key)))
        elif kind == "bind":
            _send(engine, worker, _binding(key, size))
        elif kind == "bad-route":  # recorded, then refused by the engine's `http` provider
            frame = RegisterTrigger(id=key, trigger_type="http", function_id="svc::a")
            _send(engine, worker, frame)
        elif kind == "unbind":
            engine.send(worker, core.unregister(UnregisterTrigger(id=key)))
        elif kind == "type":
            engine.send(worker, core.register(_type(key, size)))
        elif kind == "untype":
            engine.send(worker, core.unregister(UnregisterTriggerType(id=key)))
        elif kind == "reconnect":  # its function ids stay reserved: others wait for them
            engine.disconnect(worker)
            workers[index] = engine.connect(name=f"w{index}")
        else:  # reservations end: waiting registrations are applied
            engine.tick(engine.now + 10)
        for peer in workers:
            conn = _conn(engine, peer)
            assert conn.registered_bytes <= CAP
            held = (
                len(conn.functions)
                + len(conn.triggers)
                + len(conn.trigger_types)
                + len(conn.waiting)
            )
            assert (held, conn.registered_bytes) == _recount(engine, conn), (kind, index, key)


# --- over real sockets -------------------------------------------------------------------


async def test_a_real_worker_past_the_cap_is_refused_and_unregistering_makes_room() -> None:
    settings = EngineSettings(registrations=RegistrationLimits(max_registration_bytes=2000))
    with anyio.fail_after(20):
        async with (
            run(http_port=None, settings=settings) as engine,
            raw_client(engine.url) as (worker, _),
        ):

            async def register(name: str) -> None:
                frame = {"type": "registerfunction", "id": name, "description": "d" * 1200}
                await worker.send(encode(frame))

            async def answers() -> list[tuple[str, str | None]]:
                """What the engine answered since the last call (a ping's pong ends it)."""
                await worker.send(encode({"type": "ping"}))
                got = [decode(await worker.receive())]
                while got[-1]["type"] != "pong":
                    got.append(decode(await worker.receive()))
                return [(a["type"], a.get("function_id")) for a in got[:-1]]

            await worker.send(encode(register_frame("big")))  # fixes the namespace
            await register("big::a")
            await register("big::b")
            assert await answers() == [("registrationrejected", "big::b")]
            await worker.send(encode({"type": "unregisterfunction", "id": "big::a"}))
            await register("big::b")
            assert await answers() == []
