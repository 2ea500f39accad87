"""The model half of the protocol state machines, shared by both roles.

`tests/protocol/test_worker_machine.py` and `test_engine_machine.py` each drive one core
(`WorkerConnection`, `EngineConnection`) against a model kept on the machine. What the
two models have in common lives here, once: `CoreModel`, the base of both machines, with
the bookkeeping (the model's tables and counters, minted ids), the ways of driving the
core (a local intent that the transition table allows or refuses, a message from the
peer), the checks every frame kind shares, and the rules and invariants that read the
same for both roles. A machine supplies what truly differs: its role's transition table,
which of the model's tables holds the requests it must answer (`OWED`), its frames and
rules.

The model names a core's three tables as `ConnectionLost` does, by direction, whichever
role tracks them: `calls` (worker → engine calls awaiting their result), `invocations`
(engine → worker dispatches awaiting the worker's answer) and `bindings` (trigger
bindings awaiting the provider's answer). `views()` reads them off either core, and
`tests/protocol/test_pair_machine.py` uses it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import msgspec
import pytest
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from anyiii._errors import LocalProtocolError
from anyiii._protocol import events as ev
from anyiii._protocol.connection import frame_tag
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import (
    NULL,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    decode_frame,
    decode_value,
    encode_frame,
    to_raw,
)
from anyiii._protocol.state import Input, State
from anyiii._protocol.worker import WorkerConnection
from strategies import uuid_text

T = TypeVar("T")
E = TypeVar("E", ev.InvalidInvocation, ev.InvalidCall)

# Wrong-typed values for one field of an `invokefunction` (the frame still names its id).
MALFORMED_INVOKE: dict[str, object] = {
    "traceparent": 42,
    "function_id": 42,
    "action": {"type": "bogus"},
}
# Wrong-typed fields for an `invocationresult` (the frame still names its id).
MALFORMED_RESULT: dict[str, dict[str, object]] = {
    "function_id": {"function_id": 42},
    "error": {"error": {"code": 42}},
    "result": {"result": 1, "traceparent": ["x"]},
}


def corrupt(payload: bytes, **fields: object) -> bytes:
    """A valid frame with some fields replaced by values of the wrong type."""
    obj = msgspec.json.decode(payload)
    obj.update(fields)
    return msgspec.json.encode(obj)


def only(events: list[ev.Event], kind: type[T]) -> T:
    """The single event of `events`, which must be a `kind`."""
    assert len(events) == 1, events
    (event,) = events
    assert isinstance(event, kind), events
    return event


def draw_id(data: st.DataObject, ids: Iterable[str], label: str) -> str:
    """One of `ids` (which must not be empty), drawn in a reproducible order."""
    return data.draw(st.sampled_from(sorted(ids)), label=label)


def call_namespace(
    function_id: str, namespace: str | None, worker_namespace: str | None
) -> str | None:
    """The namespace a worker in `worker_namespace` puts on a call (spec §5.1, §11), as the
    official SDKs do."""
    if namespace is not None:
        return namespace
    if function_id.startswith("engine::"):
        return None if worker_namespace is None else "default"
    return worker_namespace


def sent_invoke(
    payload: bytes, invocation_id: str | None, function_id: str, value: object
) -> InvokeFunction:
    """The `invokefunction` our side sent as `payload`, checked for its id, function and
    data."""
    frame = decode_frame(payload)
    assert isinstance(frame, InvokeFunction), frame
    assert frame.invocation_id == invocation_id
    assert frame.function_id == function_id
    assert decode_value(frame.data) == value
    return frame


class Views(NamedTuple):
    """A core's three tables, named by direction (as `ConnectionLost` names them)."""

    calls: Mapping[str, str]  # worker → engine calls awaiting their result: id -> function
    invocations: Mapping[str, str]  # engine → worker dispatches awaiting the answer
    bindings: Mapping[str, str]  # bindings awaiting the provider's answer: id -> type


def views(core: WorkerConnection | EngineConnection) -> Views:
    """The tables of either core."""
    if isinstance(core, WorkerConnection):
        return Views(core.pending_calls, core.in_flight, core.awaiting_binding_answers)
    return Views(core.awaiting_results, core.executing, core.forwarded_bindings)


def snapshot(core: WorkerConnection | EngineConnection) -> tuple[object, ...]:
    """All a refused intent must leave as it was: state, tables and counters."""
    return (
        core.state,
        *(dict(table) for table in views(core)),
        core.late_results,
        core.violations,
    )


class CoreModel(RuleBasedStateMachine):
    """One core of either role against a model of what it should hold.

    A subclass sets `TABLE` (its role's transition table) and `OWED` (which model table
    holds the peer's requests it answers: the worker answers `invocations`, the engine
    answers `calls`; the other table holds its own requests, `awaited`), and calls
    `_fresh_model(core)` for every new connection.
    """

    TABLE: ClassVar[Mapping[State, Mapping[Input, State]]]
    OWED: ClassVar[Literal["calls", "invocations"]]

    core: WorkerConnection | EngineConnection

    def __init__(self) -> None:
        super().__init__()
        self.made = 0  # ids minted by this machine, unique across reconnects
        self.answered: set[str] = set()  # owed ids answered and not requested again since

    # --- the model ---------------------------------------------------------------------------

    def _fresh_model(self, core: WorkerConnection | EngineConnection) -> None:
        """A new connection: `core`, not started, and an empty model."""
        self.core = core
        self.state = State.CONNECTING
        self.sent = 0  # frames our side sent on this connection
        self.calls: dict[str, str] = {}
        self.invocations: dict[str, str] = {}
        self.bindings: dict[str, tuple[str, str, int]] = {}  # trigger id -> type, fn, count
        self.late = 0
        self.violations = 0

    @property
    def owed(self) -> dict[str, str]:
        """The peer's requests that this side must answer."""
        return self.calls if self.OWED == "calls" else self.invocations

    @property
    def awaited(self) -> dict[str, str]:
        """This side's requests that await the peer's answer."""
        return self.invocations if self.OWED == "calls" else self.calls

    def _views(self) -> Views:
        return views(self.core)

    def _snapshot(self) -> tuple[object, ...]:
        return snapshot(self.core)

    def _binding_types(self) -> dict[str, str]:
        return {trigger_id: entry[0] for trigger_id, entry in self.bindings.items()}

    def _mint(self, prefix: str) -> str:
        self.made += 1
        return uuid_text(prefix, self.made)

    def _requested(self, invocation_id: str, function_id: str) -> None:
        """The peer made a request this side now owes an answer for."""
        self.owed[invocation_id] = function_id
        self.answered.discard(invocation_id)  # a new request that reuses the id

    def _answerable(self, invocation_id: str) -> bool:
        return invocation_id in self.owed

    def _answered(self, invocation_id: str, payload: bytes) -> InvocationResult:
        """Our answer to an owed request went out as `payload`: check and record it."""
        frame = decode_frame(payload)
        assert isinstance(frame, InvocationResult), frame
        assert frame.invocation_id == invocation_id
        assert frame.function_id == self.owed.pop(invocation_id)
        assert invocation_id not in self.answered, "a request was answered twice"
        self.answered.add(invocation_id)
        return frame

    def _binding_sent(self, trigger_id: str, trigger_type: str, function_id: str) -> None:
        """A binding went to its provider (once more): it needs one more answer."""
        _, _, count = self.bindings.get(trigger_id, ("", "", 0))
        self.bindings[trigger_id] = (trigger_type, function_id, count + 1)

    def _binding_answered(self, trigger_id: str) -> tuple[str, str]:
        """One answer for a binding: its type and function, one answer fewer owed."""
        trigger_type, function_id, count = self.bindings[trigger_id]
        if count > 1:
            self.bindings[trigger_id] = (trigger_type, function_id, count - 1)
        else:
            del self.bindings[trigger_id]
        return trigger_type, function_id

    # --- driving the core --------------------------------------------------------------------

    def _refused(self, action: Callable[[], object]) -> None:
        before = self._snapshot()
        with pytest.raises(LocalProtocolError):
            action()
        assert self._snapshot() == before, "a refused intent changed the core"

    def _local(self, what: Input, action: Callable[[], T], *, allowed: bool = True) -> T | None:
        """Run a local intent: refused (None) unless the table and the model allow it."""
        target = self.TABLE[self.state].get(what)
        if target is None or not allowed:
            note(f"  refused: {what.value} in {self.state.name} (model allows: {allowed})")
            self._refused(action)
            return None
        out = action()
        assert self.core.state is target, (self.state, what, self.core.state)
        self.state = target
        if what not in (Input.CLOSE, Input.SEND_FAILED):
            self.sent += 1  # counts frames: the worker's open_sequence must come first
        return out

    def _feed(self, data: bytes | str, what: Input = Input.RECV_FRAME) -> list[ev.Event] | None:
        """Feed one message from the peer; None when the core must refuse or discard it."""
        target = self.TABLE[self.state].get(what)
        if target is None:
            note(f"  receive refused in {self.state.name}")
            self._refused(lambda: self.core.receive(data))
            return None
        events = self.core.receive(data)
        note(f"  -> {events!r}")
        if self.state is State.ERROR:
            assert events == [], "a broken connection must discard its input"
            assert self.core.state is State.ERROR
            return None
        assert self.core.state is target, (self.state, what, self.core.state)
        self.state = target
        return events

    def _violation(self, events: list[ev.Event], **details: object) -> ev.ProtocolViolation:
        """`events` start with the report of a violation whose error has `details`."""
        self.violations += 1
        assert events, "a violation must be reported"
        violation = events[0]
        assert isinstance(violation, ev.ProtocolViolation), events
        for name, value in details.items():
            assert getattr(violation.error, name) == value, (name, violation.error)
        return violation

    # --- checks shared by both roles ---------------------------------------------------------

    def _answer_again(self, data: st.DataObject, answer: Callable[[str], object]) -> None:
        """A request that was already answered cannot be answered again."""
        invocation_id = draw_id(data, self.answered, "answered id")
        assert invocation_id not in self.owed
        self._refused(lambda: answer(invocation_id))

    def _request(self, frame: InvokeFunction) -> list[ev.Event] | None:
        """Feed a request from the peer. None when refused or discarded, or when it reuses
        an id this side still owes an answer for (a violation, and dropped)."""
        events = self._feed(encode_frame(frame))
        if events is None:
            return None
        invocation_id = frame.invocation_id
        if invocation_id is not None and invocation_id in self.owed:
            self._violation(events, frame_type="invokefunction", invocation_id=invocation_id)
            assert len(events) == 1
            return None
        return events

    def _malformed_request(self, invocation_id: str, broken: str, kind: type[E]) -> E | None:
        """The peer sends an `invokefunction` for "greet" under `invocation_id` with the
        field `broken` of the wrong type: a violation, and, unless the id is owed already,
        a request reported as a `kind` event (returned) that is owed an answer."""
        payload = encode_frame(InvokeFunction(function_id="greet", invocation_id=invocation_id))
        events = self._feed(corrupt(payload, **{broken: MALFORMED_INVOKE[broken]}))
        if events is None:
            return None
        self._violation(events, frame_type="invokefunction", invocation_id=invocation_id)
        if invocation_id in self.owed:
            assert len(events) == 1
            return None
        function_id = "" if broken == "function_id" else "greet"
        assert len(events) == 2, events
        invalid = events[1]
        assert isinstance(invalid, kind), events
        assert (invalid.invocation_id, invalid.function_id) == (invocation_id, function_id)
        self._requested(invocation_id, function_id)
        return invalid

    def _result(
        self, invocation_id: str, shape: str, value: object
    ) -> tuple[InvocationResult, str, list[ev.Event]] | None:
        """The peer answers `invocation_id` (for "echo") with a result of `shape`. Late
        unless awaited; else the frame, the awaited function and the events are returned."""
        error = ErrorBody(code="invocation_failed", message="boom") if shape == "error" else None
        result = {"value": to_raw(value), "null": NULL}.get(shape, msgspec.UNSET)
        frame = InvocationResult(
            invocation_id=invocation_id, function_id="echo", result=result, error=error
        )
        events = self._feed(encode_frame(frame))
        if events is None:
            return None
        function_id = self.awaited.pop(invocation_id, None)
        if function_id is None:
            self.late += 1
            assert events == [ev.LateResult(invocation_id, "echo")]
            return None
        return frame, function_id, events

    def _malformed_result(self, invocation_id: str, broken: str) -> tuple[str, ev.Event] | None:
        """The peer sends an `invocationresult` for `invocation_id` with `broken` fields of
        the wrong type: a violation, which still ends an awaited request (its function id
        and the second event, the request's end, are returned)."""
        payload = encode_frame(InvocationResult(invocation_id=invocation_id, function_id="f"))
        events = self._feed(corrupt(payload, **MALFORMED_RESULT[broken]))
        if events is None:
            return None
        self._violation(events, frame_type="invocationresult", invocation_id=invocation_id)
        function_id = self.awaited.pop(invocation_id, None)
        if function_id is None:
            assert len(events) == 1
            return None
        assert len(events) == 2, events
        return function_id, events[1]

    def _noise(self, noise: tuple[str, Any]) -> None:
        """Control frames, unknown types, garbage, frames for the other role, blanks,
        telemetry (a `strategies.noise()` draw)."""
        kind, value = noise
        payload = encode_frame(value) if kind in ("ping", "foreign") else value
        events = self._feed(payload)
        if events is None:
            return
        if kind == "ping":
            assert events == [ev.PingReceived() if isinstance(value, Ping) else ev.PongReceived()]
        elif kind == "unknown":
            assert events == [ev.UnknownFrameReceived(msgspec.json.decode(value)["type"], value)]
        elif kind == "garbage":
            self._violation(events, invocation_id=None)
            assert len(events) == 1
        elif kind == "foreign":
            self._violation(events, frame_type=frame_tag(value))
            assert len(events) == 1
        else:
            assert events == [], "blank messages and telemetry are skipped silently"

    # --- rules both roles share --------------------------------------------------------------

    @rule(pong=st.booleans())
    def ping(self, pong: bool) -> None:
        """`ping()`, or `pong()` when `pong`."""
        payload = self._local(Input.SEND_CONTROL, self.core.pong if pong else self.core.ping)
        if payload is not None:
            assert decode_frame(payload) == (Pong() if pong else Ping())

    # Both ways our side ends a connection share one rule, so that rules which end it
    # don't crowd out the rest.
    @rule(failed=st.booleans())
    def start_closing(self, failed: bool) -> None:
        """`start_closing()`, or `send_failed()` (a write broke part-way) when `failed`."""
        if failed:
            self._local(Input.SEND_FAILED, self.core.send_failed)
        else:
            self._local(Input.CLOSE, self.core.start_closing)

    @rule()
    def connection_lost(self) -> None:
        target = self.TABLE[self.state][Input.CONNECTION_LOST]
        events = self.core.receive(None)
        note(f"  -> {events!r}")
        lost = only(events, ev.ConnectionLost)
        assert dict(lost.calls) == self.calls
        assert len(lost.calls) == len(self.calls)
        assert dict(lost.invocations) == self.invocations
        assert len(lost.invocations) == len(self.invocations)
        assert dict(lost.bindings) == self._binding_types()
        assert len(lost.bindings) == len(self.bindings)
        assert not any(self._views()), self._views()
        assert self.core.state is target
        self.state = target
        self.calls.clear()
        self.invocations.clear()
        self.bindings.clear()

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def tables_match_the_model(self) -> None:
        core, tables = self.core, self._views()
        assert core.state is self.state
        assert dict(tables.calls) == self.calls
        assert dict(tables.invocations) == self.invocations
        assert dict(tables.bindings) == self._binding_types()
        assert core.late_results == self.late
        assert core.violations == self.violations

    @invariant()
    def answered_ids_are_not_owed(self) -> None:
        assert not self.answered & set(getattr(self._views(), self.OWED))

    @invariant()
    def nothing_is_tracked_once_closed(self) -> None:
        if self.state is State.CLOSED:
            assert not self.calls
            assert not self.invocations
            assert not self.bindings
