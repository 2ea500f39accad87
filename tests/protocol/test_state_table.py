"""Every (state, input) pair of both roles against `state.TRANSITIONS`, exhaustively.

In the spirit of h2's `test_state_machines.py`, but with no sampling: the pairs are few, so
each one is its own test. A real core is driven into the state through the public API only,
then one concrete action standing for the input is applied. A pair in the table must
succeed and land in the table's state; a pair missing from it must raise
`LocalProtocolError` and leave the core exactly as it was.

A second group checks the table has no dead rows: for every entry, the action standing for
its input, applied in its state, makes the core consult that very entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from anyiii._errors import LocalProtocolError
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import (
    NULL,
    InvokeFunction,
    Ping,
    RegisterFunction,
    RegisterTrigger,
    RegistrationRejected,
    WorkerRegistered,
    encode_frame,
)
from anyiii._protocol.state import ROLE_INPUTS, STEADY_WHILE_OPEN, TRANSITIONS, Input, Role, State
from anyiii._protocol.worker import WorkerConnection

Core = WorkerConnection | EngineConnection

INBOUND_ID = "1e000000-0000-4000-8000-000000000001"  # the engine asked the worker to run it
WORKER_CALL_ID = "ca110000-0000-4000-8000-000000000001"  # the worker's call, engine side
HANDSHAKE = encode_frame(WorkerRegistered(worker_id="w-1", reattach_token="t-1"))
PING = encode_frame(Ping())


# --- reaching each state through the public API -------------------------------------------


def worker_in(state: State) -> WorkerConnection:
    """A worker core in `state`, with one inbound invocation in flight while it can be."""
    core = WorkerConnection(namespace="shop")
    core.receive(encode_frame(InvokeFunction(function_id="greet", invocation_id=INBOUND_ID)))
    if state is not State.CONNECTING:
        core.receive(HANDSHAKE)
        if state is State.CLOSING:
            core.start_closing()
        elif state is State.CLOSED:
            core.receive(None)
        elif state is State.ERROR:
            core.send_failed()
    assert core.state is state
    return core


def engine_in(state: State) -> EngineConnection:
    """An engine core in `state`, awaiting the answer to one worker call while it can be."""
    core = EngineConnection("w-1", "t-1")
    if state is not State.CONNECTING:
        core.start()
        core.receive(
            encode_frame(InvokeFunction(function_id="greet", invocation_id=WORKER_CALL_ID))
        )
        if state is State.CLOSING:
            core.start_closing()
        elif state is State.CLOSED:
            core.receive(None)
        elif state is State.ERROR:
            core.send_failed()
    assert core.state is state
    return core


REACH: dict[Role, Callable[[State], Core]] = {Role.WORKER: worker_in, Role.ENGINE: engine_in}


# --- one concrete action per input --------------------------------------------------------

WORKER_ACTIONS: dict[Input, Callable[[WorkerConnection], object]] = {
    Input.SEND_REGISTRATION: lambda c: c.register(RegisterFunction(id="greet")),
    Input.SEND_CALL: lambda c: c.call("math::add"),
    Input.SEND_RESULT: lambda c: c.complete(INBOUND_ID),
    Input.SEND_CONTROL: lambda c: c.pong(),
    Input.CLOSE: lambda c: c.start_closing(),
    Input.SEND_FAILED: lambda c: c.send_failed(),
    Input.RECV_HANDSHAKE: lambda c: c.receive(HANDSHAKE),
    Input.RECV_FRAME: lambda c: c.receive(PING),
    Input.RECV_FATAL: lambda c: c.receive(
        encode_frame(RegistrationRejected(code="WORKER_NAMESPACE_CONFLICT", worker_name="api"))
    ),
    Input.CONNECTION_LOST: lambda c: c.receive(None),
}

ENGINE_ACTIONS: dict[Input, Callable[[EngineConnection], object]] = {
    Input.SEND_HANDSHAKE: lambda c: c.start(),
    Input.SEND_REGISTRATION: lambda c: c.forward_binding(
        RegisterTrigger(id="t-1", trigger_type="webhook", function_id="greet", config=NULL)
    ),
    Input.SEND_CALL: lambda c: c.dispatch("d1500000-0000-4000-8000-000000000001", "greet"),
    Input.SEND_RESULT: lambda c: c.deliver_result(WORKER_CALL_ID, NULL),
    Input.SEND_CONTROL: lambda c: c.ping(),
    Input.CLOSE: lambda c: c.start_closing(),
    Input.SEND_FAILED: lambda c: c.send_failed(),
    Input.RECV_FRAME: lambda c: c.receive(PING),
    Input.CONNECTION_LOST: lambda c: c.receive(None),
}

ACTIONS: dict[Role, dict[Input, Callable[[Any], object]]] = {
    Role.WORKER: WORKER_ACTIONS,
    Role.ENGINE: ENGINE_ACTIONS,
}


def snapshot(core: Core) -> tuple[object, ...]:
    """Everything a refused intent must leave alone."""
    if isinstance(core, WorkerConnection):
        tables: tuple[object, ...] = (
            dict(core.pending_calls),
            dict(core.in_flight),
            dict(core.awaiting_binding_answers),
        )
    else:
        tables = (dict(core.awaiting_results), dict(core.executing), dict(core.forwarded_bindings))
    return (core.state, *tables, core.late_results, core.violations)


def all_pairs() -> list[Any]:
    """Every (role, state, input) the roles can meet, named `role-STATE-INPUT-verdict`."""
    return [
        pytest.param(
            role,
            state,
            what,
            id=f"{role.value}-{state.name}-{what.name}-"
            + ("ok" if what in TRANSITIONS[role][state] else "refused"),
        )
        for role in Role
        for state in State
        for what in Input
        if what in ROLE_INPUTS[role]
    ]


# --- the exhaustive table test ------------------------------------------------------------


@pytest.mark.parametrize(("role", "state", "what"), all_pairs())
def test_transition(role: Role, state: State, what: Input) -> None:
    core = REACH[role](state)
    action = ACTIONS[role][what]
    target = TRANSITIONS[role][state].get(what)
    if target is None:
        before = snapshot(core)
        with pytest.raises(LocalProtocolError):
            action(core)
        assert snapshot(core) == before
    else:
        action(core)
        assert core.state is target


def test_pairs_cover_the_roles_inputs() -> None:
    """The parametrization above is exhaustive, and there are no stray table entries."""
    pairs = {(p.values[0], p.values[1], p.values[2]) for p in all_pairs()}
    assert len(pairs) == sum(len(State) * len(ROLE_INPUTS[role]) for role in Role)
    for role in Role:
        assert set(ACTIONS[role]) == ROLE_INPUTS[role]
        assert set(TRANSITIONS[role]) == set(State)
        for moves in TRANSITIONS[role].values():
            assert set(moves) <= ROLE_INPUTS[role]


# --- no dead rows -------------------------------------------------------------------------


def consulted(role: Role, state: State, what: Input) -> set[tuple[State, Input]]:
    """The table entries the core looked up while applying `what` in `state`."""
    core = REACH[role](state)
    seen: set[tuple[State, Input]] = set()
    advance, check = core._advance, core._check

    def spy_advance(i: Input) -> None:
        seen.add((core.state, i))
        advance(i)

    def spy_check(i: Input) -> None:
        seen.add((core.state, i))
        check(i)

    core._advance = spy_advance  # type: ignore[method-assign,assignment]
    core._check = spy_check  # type: ignore[method-assign,assignment]
    with contextlib.suppress(LocalProtocolError):
        ACTIONS[role][what](core)
    return seen


# Rows the worker core never consults: in ERROR every message is discarded before it is
# even decoded, so it reads as RECV_FRAME. Both rows are self-loops with the same target as
# RECV_FRAME, so no outcome differs; they only state that receiving stays allowed.
DEAD_ROWS = {
    (Role.WORKER, State.ERROR, Input.RECV_HANDSHAKE),
    (Role.WORKER, State.ERROR, Input.RECV_FATAL),
}


def table_rows() -> list[Any]:
    """Every entry of `TRANSITIONS` but the dead rows, which have their own test below."""
    return [
        pytest.param(role, state, what, id=f"{role.value}-{state.name}-{what.name}")
        for role in Role
        for state, moves in TRANSITIONS[role].items()
        for what in moves
        if (role, state, what) not in DEAD_ROWS
    ]


@pytest.mark.parametrize(("role", "state", "what"), table_rows())
def test_table_row_is_used(role: Role, state: State, what: Input) -> None:
    """The action for `what`, applied in `state`, makes the core consult this very row,
    or (per-message paths only) relies on it without a lookup: an OPEN connection stays
    OPEN for the inputs of `STEADY_WHILE_OPEN`, which `test_transition` checks anyway."""
    seen = consulted(role, state, what)
    if state is State.OPEN and what in STEADY_WHILE_OPEN:
        assert TRANSITIONS[role][state][what] is State.OPEN
        return
    assert (state, what) in seen


def test_the_per_message_paths_rely_only_on_steady_inputs() -> None:
    """The hot paths skip the state walk while OPEN for receiving a frame and sending a
    call or a result: that is only right if the table keeps OPEN for all three."""
    assert {Input.RECV_FRAME, Input.SEND_CALL, Input.SEND_RESULT} <= STEADY_WHILE_OPEN
    assert Input.CLOSE not in STEADY_WHILE_OPEN
    assert Input.SEND_FAILED not in STEADY_WHILE_OPEN


def test_dead_rows_only_repeat_their_state() -> None:
    """The unused rows are self-loops whose input the core reads as RECV_FRAME, which goes
    to the same state: the table and the code agree on every outcome."""
    for role, state, what in DEAD_ROWS:
        row = TRANSITIONS[role][state]
        assert row[what] is state
        assert row[Input.RECV_FRAME] is state
        assert (state, Input.RECV_FRAME) in consulted(role, state, what)
