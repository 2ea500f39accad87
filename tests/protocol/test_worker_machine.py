"""`WorkerConnection` against a model: a Hypothesis rule-based state machine.

The model is a handful of dicts and sets on the machine. Rules are either local intents
(the worker's runtime calling the core) or frames from the engine, built with the real
encoder and fed through `receive()`. A local intent that the transition table (or the
model's bookkeeping) forbids must raise `LocalProtocolError` and change nothing; a legal
one returns frames that are decoded and checked. After every step the core's tables and
state must equal the model's.

Bundles hold ids only: `inbound` (invocations the engine asked us to run), `calls` (our
outgoing calls) and `bindings` (binding requests for trigger types we provide). `reconnect`
swaps in a fresh core and is always enabled, so ids of dead connections stay in the
bundles and exercise the "unknown id" paths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)

from anyiii._errors import LocalProtocolError
from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    MALFORMED_FRAME,
    REGISTER_WORKER,
    TRIGGER_REGISTRATION_FAILED,
)
from anyiii._protocol.connection import frame_tag
from anyiii._protocol.frames import (
    NULL,
    EnqueueAction,
    Error,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    VoidAction,
    WorkerRegistered,
    decode_frame,
    decode_value,
    encode_frame,
    to_raw,
)
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.state import TRANSITIONS, Input, Role, State
from anyiii._protocol.worker import WorkerConnection
from strategies import (
    FUNCTION_IDS,
    RESULT_SHAPES,
    SAMPLE_JSON,
    TRIGGER_TYPES,
    UNDECODABLE,
    error_bodies,
    noise,
    uuid_text,
)

T = TypeVar("T")

TABLE = TRANSITIONS[Role.WORKER]
INFO = WorkerInfo(name="model-worker", version="0", os="test", pid=1)

ERRORS = error_bodies("invocation_failed", "function_not_found", "TIMEOUT")

REGISTRATIONS = st.one_of(
    st.builds(RegisterFunction, id=FUNCTION_IDS, description=st.none() | st.just("d")),
    st.builds(RegisterTriggerType, id=TRIGGER_TYPES, description=st.just("a type")),
    st.builds(
        RegisterTrigger,
        id=st.sampled_from(["t-1", "t-2"]),
        trigger_type=TRIGGER_TYPES,
        function_id=FUNCTION_IDS,
        config=st.sampled_from([NULL, to_raw({"every": 5})]),
    ),
)
UNREGISTRATIONS = st.one_of(
    st.builds(UnregisterFunction, id=FUNCTION_IDS),
    st.builds(UnregisterTriggerType, id=TRIGGER_TYPES),
    st.builds(UnregisterTrigger, id=st.sampled_from(["t-1", "t-2"]), trigger_type=TRIGGER_TYPES),
)

# Not JSON, not an object, no `type`, a `type` that is not text, a known type missing its
# required fields (an invokefunction with no id among them): all undecodable, none naming
# an invocation. None of them starts like telemetry or is blank.
GARBAGE = st.sampled_from(
    [
        *UNDECODABLE,
        b'{"type": "workerregistered"}',
        "not json at all",
    ]
)
# Frames a worker never receives (worker → engine only).
FOREIGN = st.sampled_from(
    [
        RegisterFunction(id="greet"),
        UnregisterFunction(id="greet"),
        RegisterTriggerType(id="webhook"),
        UnregisterTriggerType(id="webhook"),
        RegisterService(id="svc"),
        Reattach(previous_worker_id="w-0"),
    ]
)
NOISE = noise(GARBAGE, FOREIGN)


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


class WorkerMachine(RuleBasedStateMachine):
    inbound = Bundle("inbound")
    calls = Bundle("calls")
    bindings = Bundle("bindings")

    def __init__(self) -> None:
        super().__init__()
        self.made = 0  # ids minted by this machine, unique across reconnects
        self.answered: set[str] = set()  # inbound ids answered and not invoked again since
        self.previous: tuple[str, str | None] | None = None  # last worker id and token
        self.forced_id: str | None = None  # the next id the core's id source returns
        self._fresh_core(namespace=None)

    # --- model helpers -----------------------------------------------------------------------

    def _mint(self, prefix: str) -> str:
        self.made += 1
        return uuid_text(prefix, self.made)

    def _next_call_id(self) -> str:
        """The core's id source: fresh ids, unless a rule forced a reused one."""
        forced, self.forced_id = self.forced_id, None
        return self._mint("c0ffee00") if forced is None else forced

    def _fresh_core(self, namespace: str | None) -> None:
        self.core = WorkerConnection(namespace=namespace, ids=self._next_call_id)
        self.namespace = namespace
        self.state = State.CONNECTING
        self.sent = 0
        self.pending: dict[str, str] = {}
        self.in_flight: dict[str, str] = {}
        self.bound: dict[str, tuple[str, str, int]] = {}  # trigger id -> type, fn, count
        self.late = 0
        self.violations = 0

    def _snapshot(self) -> tuple[object, ...]:
        core = self.core
        return (
            core.state,
            dict(core.pending_calls),
            dict(core.in_flight),
            dict(core.awaiting_binding_answers),
            core.late_results,
            core.violations,
        )

    def _refused(self, action: Callable[[], object]) -> None:
        before = self._snapshot()
        with pytest.raises(LocalProtocolError):
            action()
        assert self._snapshot() == before, "a refused intent changed the core"

    def _local(self, what: Input, action: Callable[[], T], *, allowed: bool = True) -> T | None:
        """Run a local intent: refused (None) unless the table and the model allow it."""
        target = TABLE[self.state].get(what)
        if target is None or not allowed:
            note(f"  refused: {what.value} in {self.state.name} (model allows: {allowed})")
            self._refused(action)
            return None
        out = action()
        assert self.core.state is target, (self.state, what, self.core.state)
        self.state = target
        if what not in (Input.CLOSE, Input.SEND_FAILED):
            self.sent += 1  # counts frames: open_sequence must come first
        return out

    def _feed(self, data: bytes | str, what: Input = Input.RECV_FRAME) -> list[ev.Event] | None:
        """Feed one engine message; None when the core must refuse or discard it."""
        target = TABLE[self.state].get(what)
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
        self.violations += 1
        assert events, "a violation must be reported"
        violation = events[0]
        assert isinstance(violation, ev.ProtocolViolation), events
        for name, value in details.items():
            assert getattr(violation.error, name) == value, (name, violation.error)
        return violation

    def _answerable(self, invocation_id: str) -> bool:
        return invocation_id in self.in_flight

    def _answered(self, invocation_id: str, payload: bytes) -> InvocationResult:
        frame = decode_frame(payload)
        assert isinstance(frame, InvocationResult), frame
        assert frame.invocation_id == invocation_id
        assert frame.function_id == self.in_flight.pop(invocation_id)
        assert invocation_id not in self.answered, "an invocation was answered twice"
        self.answered.add(invocation_id)
        return frame

    def _invoked(self, invocation_id: str, function_id: str) -> None:
        self.in_flight[invocation_id] = function_id
        self.answered.discard(invocation_id)  # a new invocation that reuses the id

    # --- local intents -----------------------------------------------------------------------

    @rule(
        functions=st.lists(FUNCTION_IDS, unique=True, max_size=2),
        trigger_types=st.lists(TRIGGER_TYPES, unique=True, max_size=2),
        triggers=st.lists(st.sampled_from(["t-1", "t-2"]), unique=True, max_size=2),
        reattach=st.booleans(),
    )
    def open_sequence(
        self,
        functions: list[str],
        trigger_types: list[str],
        triggers: list[str],
        reattach: bool,
    ) -> None:
        registry = Registry()
        expected: list[object] = []
        if reattach and self.previous is not None:
            worker_id, token = self.previous
            expected.append(Reattach(previous_worker_id=worker_id, reattach_token=token))
        else:
            worker_id, token = None, None
        types = [RegisterTriggerType(id=t, description="a type") for t in trigger_types]
        funcs = [RegisterFunction(id=f) for f in functions]
        binds = [
            RegisterTrigger(id=t, trigger_type="webhook", function_id="greet") for t in triggers
        ]
        mixed: list[RegisterTrigger | RegisterFunction | RegisterTriggerType] = [*binds, *funcs]
        for frame in [*mixed, *types]:  # added out of order: the replay sorts them
            registry.add(frame)
        expected += [*types, *funcs, *binds]
        expected.append(
            InvokeFunction(
                function_id=REGISTER_WORKER, data=to_raw(INFO.to_builtins()), action=VoidAction()
            )
        )

        def action() -> list[bytes]:
            return self.core.open_sequence(
                registry, INFO, previous_worker_id=worker_id, previous_reattach_token=token
            )

        target = TABLE[self.state].get(Input.SEND_REGISTRATION)
        if target is None or self.sent:
            self._refused(action)
            return
        frames = [decode_frame(payload) for payload in action()]
        assert frames == expected
        assert self.core.state is target
        self.state = target
        self.sent += len(frames)

    @rule(frame=REGISTRATIONS | UNREGISTRATIONS)
    def register(self, frame: Any) -> None:
        """`register()` or `unregister()`, whichever fits the frame."""
        if isinstance(frame, RegisterFunction | RegisterTriggerType | RegisterTrigger):
            payload = self._local(Input.SEND_REGISTRATION, lambda: self.core.register(frame))
        else:
            payload = self._local(Input.SEND_REGISTRATION, lambda: self.core.unregister(frame))
        if payload is not None:
            assert decode_frame(payload) == frame

    def _expected_namespace(self, function_id: str, namespace: str | None) -> str | None:
        if namespace is not None:
            return namespace
        if function_id.startswith("engine::"):
            return None if self.namespace is None else "default"
        return self.namespace

    @rule(
        target=calls,
        function_id=FUNCTION_IDS,
        value=SAMPLE_JSON,
        namespace=st.none() | st.just("shop"),
        enqueue=st.none() | st.just("jobs"),
    )
    def call(
        self, function_id: str, value: object, namespace: str | None, enqueue: str | None
    ) -> object:
        id_drawn = Input.SEND_CALL in TABLE[self.state]  # the core draws an id once allowed
        reused = self.forced_id is not None and self.forced_id in self.pending
        out = self._local(
            Input.SEND_CALL,
            lambda: self.core.call(
                function_id, to_raw(value), namespace=namespace, enqueue=enqueue
            ),
            allowed=not reused,
        )
        if id_drawn:
            self.forced_id = None
        if out is None:
            return multiple()
        invocation_id, payload = out
        assert invocation_id not in self.pending
        frame = decode_frame(payload)
        assert isinstance(frame, InvokeFunction), frame
        assert frame.invocation_id == invocation_id
        assert frame.function_id == function_id
        assert decode_value(frame.data) == value
        assert frame.action == (None if enqueue is None else EnqueueAction(queue=enqueue))
        assert frame.namespace == self._expected_namespace(function_id, namespace)
        self.pending[invocation_id] = function_id
        note(f"  call id {invocation_id}")
        return invocation_id

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def ids_repeat(self, data: st.DataObject) -> None:
        """Make the core's id source return a pending id next: `call()` must refuse it."""
        self.forced_id = data.draw(st.sampled_from(sorted(self.pending)), label="pending id")

    @rule(function_id=FUNCTION_IDS, value=SAMPLE_JSON)
    def call_void(self, function_id: str, value: object) -> None:
        payload = self._local(
            Input.SEND_CALL, lambda: self.core.call_void(function_id, to_raw(value))
        )
        if payload is not None:
            frame = decode_frame(payload)
            assert isinstance(frame, InvokeFunction), frame
            assert frame.invocation_id is None
            assert frame.function_id == function_id
            assert frame.action == VoidAction()
            assert decode_value(frame.data) == value

    @rule(invocation_id=calls)
    def forget_call(self, invocation_id: str) -> None:
        before = self.core.state
        assert self.core.forget_call(invocation_id) is (invocation_id in self.pending)
        self.pending.pop(invocation_id, None)
        assert self.core.state is before

    @rule(invocation_id=consumes(inbound), value=SAMPLE_JSON)
    def complete(self, invocation_id: str, value: object) -> None:
        result = None if value is None else to_raw(value)
        payload = self._local(
            Input.SEND_RESULT,
            lambda: self.core.complete(invocation_id, result),
            allowed=self._answerable(invocation_id),
        )
        if payload is not None:
            frame = self._answered(invocation_id, payload)
            assert frame.error is None
            if value is None:
                assert frame.result is msgspec.UNSET
            else:
                assert decode_value(frame.result) == value  # type: ignore[arg-type]

    @rule(invocation_id=inbound, error=ERRORS)
    def fail(self, invocation_id: str, error: ErrorBody) -> None:
        payload = self._local(
            Input.SEND_RESULT,
            lambda: self.core.fail(invocation_id, error),
            allowed=self._answerable(invocation_id),
        )
        if payload is not None:
            frame = self._answered(invocation_id, payload)
            assert frame.error == error
            assert frame.result is msgspec.UNSET

    @precondition(lambda self: bool(self.answered))
    @rule(data=st.data(), with_error=st.booleans())
    def answer_again(self, data: st.DataObject, with_error: bool) -> None:
        """An invocation that was already answered cannot be answered again."""
        invocation_id = data.draw(st.sampled_from(sorted(self.answered)), label="answered id")
        assert invocation_id not in self.in_flight
        if with_error:
            self._refused(lambda: self.core.fail(invocation_id, ErrorBody("x", "again")))
        else:
            self._refused(lambda: self.core.complete(invocation_id))

    @rule(trigger_id=bindings, error=st.none() | ERRORS)
    def answer_binding(self, trigger_id: str, error: ErrorBody | None) -> None:
        """Answer a binding request: live, answered already (as often as it was sent), or
        stale."""
        self._answer_binding(trigger_id, error)

    @precondition(lambda self: bool(self.bound))
    @rule(data=st.data(), error=st.none() | ERRORS)
    def answer_live_binding(self, data: st.DataObject, error: ErrorBody | None) -> None:
        """The common case, drawn from binding requests still awaiting an answer."""
        trigger_id = data.draw(st.sampled_from(sorted(self.bound)), label="binding id")
        self._answer_binding(trigger_id, error)

    def _answer_binding(self, trigger_id: str, error: ErrorBody | None) -> None:
        payload = self._local(
            Input.SEND_RESULT,
            lambda: self.core.answer_binding(trigger_id, error),
            allowed=trigger_id in self.bound,
        )
        if payload is None:
            return
        trigger_type, function_id, count = self.bound[trigger_id]
        assert decode_frame(payload) == TriggerRegistrationResult(
            id=trigger_id, trigger_type=trigger_type, function_id=function_id, error=error
        )
        if count > 1:
            self.bound[trigger_id] = (trigger_type, function_id, count - 1)
        else:
            del self.bound[trigger_id]

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

    # --- frames from the engine --------------------------------------------------------------

    @rule(features=st.sampled_from([None, ("observe.v1",)]))
    def engine_registers(self, features: tuple[str, ...] | None) -> None:
        worker_id, token = self._mint("e0000000"), self._mint("70ce0000")
        frame = WorkerRegistered(worker_id=worker_id, reattach_token=token, features=features)
        # The first workerregistered of a connection is the handshake, even when the worker
        # already started closing; a later one is a violation.
        first = self.core.worker_id is None
        what = Input.RECV_HANDSHAKE if self.state is not State.ERROR else Input.RECV_FRAME
        events = self._feed(encode_frame(frame), what)
        if events is None:
            return
        if first:
            assert events == [ev.Registered(worker_id, token, features or ())]
            assert (self.core.worker_id, self.core.reattach_token) == (worker_id, token)
            self.previous = (worker_id, token)
        else:
            self._violation(events)
            assert len(events) == 1
            assert self.core.worker_id != worker_id

    def _invoke(self, invocation_id: str | None, function_id: str, value: object) -> bool:
        """The engine dispatches; True when the id became (or stays) in flight anew."""
        metadata = to_raw({"trace": 1})
        frame = InvokeFunction(
            function_id=function_id,
            invocation_id=invocation_id,
            data=to_raw(value),
            metadata=metadata,
            traceparent="00-abc-def-01",
        )
        events = self._feed(encode_frame(frame))
        if events is None:
            return False
        if invocation_id is not None and invocation_id in self.in_flight:
            self._violation(events, frame_type="invokefunction", invocation_id=invocation_id)
            assert len(events) == 1
            return False
        assert events == [
            ev.InvocationRequested(
                invocation_id=invocation_id,
                function_id=function_id,
                data=to_raw(value),
                metadata=metadata,
                traceparent="00-abc-def-01",
            )
        ]
        if invocation_id is None:
            return False
        self._invoked(invocation_id, function_id)
        return True

    @rule(target=inbound, function_id=FUNCTION_IDS, value=SAMPLE_JSON, with_id=st.booleans())
    def engine_invokes(self, function_id: str, value: object, with_id: bool) -> object:
        """A dispatch with a fresh id, or one without an id (no answer expected)."""
        invocation_id = self._mint("1e000000") if with_id else None
        accepted = self._invoke(invocation_id, function_id, value)
        return invocation_id if accepted else multiple()

    @rule(invocation_id=inbound, function_id=FUNCTION_IDS)
    def engine_invokes_same_id(self, invocation_id: str, function_id: str) -> None:
        """A duplicate while in flight is dropped; once answered (or lost) it is new."""
        self._invoke(invocation_id, function_id, None)

    @precondition(lambda self: bool(self.answered))
    @rule(target=inbound, data=st.data(), function_id=FUNCTION_IDS)
    def engine_invokes_answered_id(self, data: st.DataObject, function_id: str) -> object:
        invocation_id = data.draw(st.sampled_from(sorted(self.answered)), label="answered id")
        return invocation_id if self._invoke(invocation_id, function_id, 1) else multiple()

    @rule(
        target=inbound,
        existing=st.none() | inbound,
        broken=st.sampled_from(["traceparent", "function_id", "action"]),
    )
    def engine_invokes_malformed(self, existing: str | None, broken: str) -> object:
        """A bad invokefunction that names its id: in flight, answerable, reported."""
        invocation_id = existing if existing is not None else self._mint("bad00000")
        payload = encode_frame(
            InvokeFunction(function_id="greet", invocation_id=invocation_id, data=NULL)
        )
        bad = {"traceparent": 42, "function_id": 42, "action": {"type": "bogus"}}[broken]
        events = self._feed(corrupt(payload, **{broken: bad}))
        if events is None:
            return multiple()
        self._violation(events, frame_type="invokefunction", invocation_id=invocation_id)
        if invocation_id in self.in_flight:
            assert len(events) == 1
            return multiple()
        function_id = "" if broken == "function_id" else "greet"
        assert len(events) == 2, events
        invalid = events[1]
        assert isinstance(invalid, ev.InvalidInvocation), events
        assert (invalid.invocation_id, invalid.function_id) == (invocation_id, function_id)
        self._invoked(invocation_id, function_id)
        return invocation_id

    def _result(self, invocation_id: str, shape: str, value: object) -> None:
        error = ErrorBody(code="invocation_failed", message="boom") if shape == "error" else None
        result = {"value": to_raw(value), "null": NULL}.get(shape, msgspec.UNSET)
        frame = InvocationResult(
            invocation_id=invocation_id, function_id="echo", result=result, error=error
        )
        events = self._feed(encode_frame(frame))
        if events is None:
            return
        function_id = self.pending.pop(invocation_id, None)
        if function_id is None:
            self.late += 1
            assert events == [ev.LateResult(invocation_id, "echo")]
        elif error is not None:
            assert events == [ev.CallFailed(invocation_id, function_id, error)]
        else:
            completed = only(events, ev.CallCompleted)
            assert (completed.invocation_id, completed.function_id) == (invocation_id, function_id)
            if shape == "value" and value is not None:
                assert decode_value(completed.result) == value  # type: ignore[arg-type]
            else:
                assert completed.result is None

    @rule(invocation_id=st.none() | calls, shape=RESULT_SHAPES, value=SAMPLE_JSON)
    def engine_answers_call(self, invocation_id: str | None, shape: str, value: object) -> None:
        """Pending: completes or fails it. Forgotten, answered, stale or never seen (None):
        a late result."""
        self._result(invocation_id or self._mint("0dd00000"), shape, value)

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data(), shape=RESULT_SHAPES, value=SAMPLE_JSON)
    def engine_answers_pending_call(self, data: st.DataObject, shape: str, value: object) -> None:
        """The common case, drawn from live calls only (the bundle is mostly stale ids)."""
        invocation_id = data.draw(st.sampled_from(sorted(self.pending)), label="pending id")
        self._result(invocation_id, shape, value)

    @rule(invocation_id=calls, broken=st.sampled_from(["function_id", "error", "result"]))
    def engine_answers_call_malformed(self, invocation_id: str, broken: str) -> None:
        """A bad invocationresult that names a pending call fails that call."""
        payload = encode_frame(InvocationResult(invocation_id=invocation_id, function_id="f"))
        bad: dict[str, dict[str, object]] = {
            "function_id": {"function_id": 42},
            "error": {"error": {"code": 42}},
            "result": {"result": 1, "traceparent": ["x"]},
        }
        events = self._feed(corrupt(payload, **bad[broken]))
        if events is None:
            return
        self._violation(events, frame_type="invocationresult", invocation_id=invocation_id)
        function_id = self.pending.pop(invocation_id, None)
        if function_id is None:
            assert len(events) == 1
            return
        assert len(events) == 2, events
        failed = events[1]
        assert isinstance(failed, ev.CallFailed), events
        assert (failed.invocation_id, failed.function_id) == (invocation_id, function_id)
        assert failed.error.code == MALFORMED_FRAME

    def _binding(self, trigger_id: str, trigger_type: str, function_id: str) -> bool:
        frame = RegisterTrigger(
            id=trigger_id,
            trigger_type=trigger_type,
            function_id=function_id,
            config=to_raw({"path": "/x"}),
        )
        events = self._feed(encode_frame(frame))
        if events is None:
            return False
        assert events == [ev.TriggerBindingRequested(frame)]
        _, _, count = self.bound.get(trigger_id, ("", "", 0))
        self.bound[trigger_id] = (trigger_type, function_id, count + 1)
        return True

    @rule(target=bindings, trigger_type=TRIGGER_TYPES, function_id=FUNCTION_IDS)
    def engine_requests_binding(self, trigger_type: str, function_id: str) -> object:
        trigger_id = self._mint("b1d00000")
        return trigger_id if self._binding(trigger_id, trigger_type, function_id) else multiple()

    @rule(trigger_id=bindings, trigger_type=TRIGGER_TYPES, function_id=FUNCTION_IDS)
    def engine_requests_binding_again(
        self, trigger_id: str, trigger_type: str, function_id: str
    ) -> None:
        """The same binding delivered again (provider replaced): it needs another answer."""
        self._binding(trigger_id, trigger_type, function_id)

    @rule(trigger_id=bindings)
    def engine_removes_binding(self, trigger_id: str) -> None:
        events = self._feed(encode_frame(UnregisterTrigger(id=trigger_id, trigger_type="webhook")))
        if events is not None:
            assert events == [ev.TriggerBindingRemoved(trigger_id, "webhook")]

    @rule(trigger_id=st.none() | bindings, failed=st.booleans())
    def engine_reports_binding_result(self, trigger_id: str | None, failed: bool) -> None:
        """E→W `triggerregistrationresult`: a failure report; a success is ignored."""
        trigger_id = trigger_id or self._mint("b1d00000")
        error = ErrorBody(TRIGGER_REGISTRATION_FAILED, "no such path") if failed else None
        frame = TriggerRegistrationResult(
            id=trigger_id, trigger_type="http", function_id="greet", error=error
        )
        events = self._feed(encode_frame(frame))
        if events is None:
            return
        if error is None:
            assert events == []
        else:
            assert events == [ev.TriggerRegistrationFailed(trigger_id, "http", "greet", error)]

    @rule(code=st.sampled_from([FUNCTION_NAMESPACE_CONFLICT, "WORKER_NAMESPACE_CONFLICT", "error"]))
    def engine_refuses(self, code: str) -> None:
        """`registrationrejected` (fatal unless a function conflict) or the `error` frame."""
        if code == "error":
            error = ErrorBody(code="AUTH_ERROR", message="bad token")
            events = self._feed(encode_frame(Error(error=error)), Input.RECV_FATAL)
            if events is not None:
                assert events == [ev.EngineRefused(error)]
            return
        fatal = code != FUNCTION_NAMESPACE_CONFLICT
        frame = RegistrationRejected(code=code, owner_worker_id="w-1", function_id="greet")
        events = self._feed(encode_frame(frame), Input.RECV_FATAL if fatal else Input.RECV_FRAME)
        if events is not None:
            assert events == [
                ev.RegistrationRefused(
                    code=code,
                    namespace="default",
                    owner_worker_id="w-1",
                    fatal=fatal,
                    function_id="greet",
                )
            ]

    @rule(noise=NOISE)
    def engine_sends_noise(self, noise: tuple[str, Any]) -> None:
        """Control frames, unknown types, garbage, frames for engines, blanks, telemetry."""
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

    # --- the transport -----------------------------------------------------------------------

    @rule()
    def connection_lost(self) -> None:
        target = TABLE[self.state][Input.CONNECTION_LOST]
        events = self.core.receive(None)
        note(f"  -> {events!r}")
        lost = only(events, ev.ConnectionLost)
        assert dict(lost.calls) == self.pending
        assert len(lost.calls) == len(self.pending)
        assert dict(lost.invocations) == self.in_flight
        assert len(lost.invocations) == len(self.in_flight)
        assert dict(lost.bindings) == {k: v[0] for k, v in self.bound.items()}
        assert len(lost.bindings) == len(self.bound)
        assert not self.core.pending_calls
        assert not self.core.in_flight
        assert not self.core.awaiting_binding_answers
        assert self.core.state is target
        self.state = target
        self.pending.clear()
        self.in_flight.clear()
        self.bound.clear()

    @rule(namespace=st.none() | st.just("shop"))
    def reconnect(self, namespace: str | None) -> None:
        """A new connection: a fresh core; every id held so far is stale."""
        self._fresh_core(namespace)

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def tables_match_the_model(self) -> None:
        core = self.core
        assert core.state is self.state
        assert dict(core.pending_calls) == self.pending
        assert dict(core.in_flight) == self.in_flight
        assert dict(core.awaiting_binding_answers) == {k: v[0] for k, v in self.bound.items()}
        assert core.late_results == self.late
        assert core.violations == self.violations

    @invariant()
    def answered_ids_are_not_in_flight(self) -> None:
        assert not self.answered & set(self.core.in_flight)

    @invariant()
    def nothing_is_sent_once_ended(self) -> None:
        if self.state in (State.CLOSED, State.ERROR):
            self._refused(self.core.ping)
            self._refused(lambda: self.core.call("greet"))
            self._refused(lambda: self.core.call_void("greet"))
            self._refused(lambda: self.core.register(RegisterFunction(id="greet")))

    @invariant()
    def nothing_is_tracked_once_closed(self) -> None:
        if self.state is State.CLOSED:
            assert not self.pending
            assert not self.in_flight
            assert not self.bound


WorkerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestWorkerMachine = WorkerMachine.TestCase
