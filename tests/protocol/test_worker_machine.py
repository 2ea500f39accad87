"""`WorkerConnection` against a model: a Hypothesis rule-based state machine.

The model is a handful of dicts and sets on the machine. Rules are either local intents
(the worker's runtime calling the core) or frames from the engine, built with the real
encoder and fed through `receive()`. A local intent that the transition table (or the
model's bookkeeping) forbids must raise `LocalProtocolError` and change nothing; a legal
one returns frames that are decoded and checked. After every step the core's tables and
state must equal the model's.

Bundles hold ids only: `inbound` (invocations the engine asked us to run), `outbound` (our
outgoing calls) and `binding_requests` (binding requests for trigger types we provide).
`reconnect` swaps in a fresh core and is always enabled, so ids of dead connections stay
in the bundles and exercise the "unknown id" paths.

What the engine machine (`test_engine_machine.py`) shares with this one, the model's
bookkeeping and the rules both roles have, is `protocol_model.CoreModel`;
`worker_model.WorkerModel` adds the worker role (the strategies, the core's id source and
the checks several rules share), and this machine the rules. The model's tables are named
as there: `calls` (our pending calls), `invocations` (in flight here) and `bindings`
(binding requests awaiting our answer).
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, consumes, invariant, multiple, precondition, rule
from worker_model import ERRORS, INFO, NOISE, REGISTRATIONS, UNREGISTRATIONS, WorkerModel

from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    MALFORMED_FRAME,
    REGISTER_WORKER,
    TRIGGER_REGISTRATION_FAILED,
)
from anyiii._protocol.frames import (
    EnqueueAction,
    Error,
    ErrorBody,
    InvokeFunction,
    Reattach,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterTrigger,
    VoidAction,
    WorkerRegistered,
    decode_frame,
    decode_value,
    encode_frame,
    to_raw,
)
from anyiii._protocol.registry import Registry
from anyiii._protocol.state import Input, State
from protocol_model import MALFORMED_INVOKE, MALFORMED_RESULT, call_namespace, draw_id, sent_invoke
from strategies import FUNCTION_IDS, RESULT_SHAPES, SAMPLE_JSON, TRIGGER_TYPES


class WorkerMachine(WorkerModel):
    inbound = Bundle("inbound")
    outbound = Bundle("outbound")
    binding_requests = Bundle("binding_requests")

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

        target = self.TABLE[self.state].get(Input.SEND_REGISTRATION)
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

    @rule(
        target=outbound,
        function_id=FUNCTION_IDS,
        value=SAMPLE_JSON,
        namespace=st.none() | st.just("shop"),
        enqueue=st.none() | st.just("jobs"),
    )
    def call(
        self, function_id: str, value: object, namespace: str | None, enqueue: str | None
    ) -> object:
        id_drawn = Input.SEND_CALL in self.TABLE[self.state]  # the core draws an id once allowed
        reused = self.forced_id is not None and self.forced_id in self.calls
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
        assert invocation_id not in self.calls
        frame = sent_invoke(payload, invocation_id, function_id, value)
        assert frame.action == (None if enqueue is None else EnqueueAction(queue=enqueue))
        assert frame.namespace == call_namespace(function_id, namespace, self.namespace)
        self.calls[invocation_id] = function_id
        note(f"  call id {invocation_id}")
        return invocation_id

    @precondition(lambda self: bool(self.calls))
    @rule(data=st.data())
    def ids_repeat(self, data: st.DataObject) -> None:
        """Make the core's id source return a pending id next: `call()` must refuse it."""
        self.forced_id = draw_id(data, self.calls, "pending id")

    @rule(function_id=FUNCTION_IDS, value=SAMPLE_JSON)
    def call_void(self, function_id: str, value: object) -> None:
        payload = self._local(
            Input.SEND_CALL, lambda: self.core.call_void(function_id, to_raw(value))
        )
        if payload is not None:
            frame = sent_invoke(payload, None, function_id, value)
            assert frame.action == VoidAction()

    @rule(invocation_id=outbound)
    def forget_call(self, invocation_id: str) -> None:
        before = self.core.state
        assert self.core.forget_call(invocation_id) is (invocation_id in self.calls)
        self.calls.pop(invocation_id, None)
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
        if with_error:
            self._answer_again(data, lambda i: self.core.fail(i, ErrorBody("x", "again")))
        else:
            self._answer_again(data, self.core.complete)

    @rule(trigger_id=binding_requests, error=st.none() | ERRORS)
    def answer_binding(self, trigger_id: str, error: ErrorBody | None) -> None:
        """Answer a binding request: live, answered already (as often as it was sent), or
        stale."""
        self._answer_binding(trigger_id, error)

    @precondition(lambda self: bool(self.bindings))
    @rule(data=st.data(), error=st.none() | ERRORS)
    def answer_live_binding(self, data: st.DataObject, error: ErrorBody | None) -> None:
        """The common case, drawn from binding requests still awaiting an answer."""
        trigger_id = draw_id(data, self.bindings, "binding id")
        self._answer_binding(trigger_id, error)

    # `ping` (and `pong`) and `start_closing` (and `send_failed`): rules of `CoreModel`.

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
        invocation_id = draw_id(data, self.answered, "answered id")
        return invocation_id if self._invoke(invocation_id, function_id, 1) else multiple()

    @rule(
        target=inbound,
        existing=st.none() | inbound,
        broken=st.sampled_from(list(MALFORMED_INVOKE)),
    )
    def engine_invokes_malformed(self, existing: str | None, broken: str) -> object:
        """A bad invokefunction that names its id: in flight, answerable, reported."""
        invocation_id = existing if existing is not None else self._mint("bad00000")
        invalid = self._malformed_request(invocation_id, broken, ev.InvalidInvocation)
        return multiple() if invalid is None else invocation_id

    @rule(invocation_id=st.none() | outbound, shape=RESULT_SHAPES, value=SAMPLE_JSON)
    def engine_answers_call(self, invocation_id: str | None, shape: str, value: object) -> None:
        """Pending: completes or fails it. Forgotten, answered, stale or never seen (None):
        a late result."""
        self._call_answered(invocation_id or self._mint("0dd00000"), shape, value)

    @precondition(lambda self: bool(self.calls))
    @rule(data=st.data(), shape=RESULT_SHAPES, value=SAMPLE_JSON)
    def engine_answers_pending_call(self, data: st.DataObject, shape: str, value: object) -> None:
        """The common case, drawn from live calls only (the bundle is mostly stale ids)."""
        self._call_answered(draw_id(data, self.calls, "pending id"), shape, value)

    @rule(invocation_id=outbound, broken=st.sampled_from(list(MALFORMED_RESULT)))
    def engine_answers_call_malformed(self, invocation_id: str, broken: str) -> None:
        """A bad invocationresult that names a pending call fails that call."""
        ended = self._malformed_result(invocation_id, broken)
        if ended is None:
            return
        function_id, failed = ended
        assert isinstance(failed, ev.CallFailed), failed
        assert (failed.invocation_id, failed.function_id) == (invocation_id, function_id)
        assert failed.error.code == MALFORMED_FRAME

    @rule(target=binding_requests, trigger_type=TRIGGER_TYPES, function_id=FUNCTION_IDS)
    def engine_requests_binding(self, trigger_type: str, function_id: str) -> object:
        trigger_id = self._mint("b1d00000")
        return trigger_id if self._binding(trigger_id, trigger_type, function_id) else multiple()

    @rule(trigger_id=binding_requests, trigger_type=TRIGGER_TYPES, function_id=FUNCTION_IDS)
    def engine_requests_binding_again(
        self, trigger_id: str, trigger_type: str, function_id: str
    ) -> None:
        """The same binding delivered again (provider replaced): it needs another answer."""
        self._binding(trigger_id, trigger_type, function_id)

    @rule(trigger_id=binding_requests)
    def engine_removes_binding(self, trigger_id: str) -> None:
        events = self._feed(encode_frame(UnregisterTrigger(id=trigger_id, trigger_type="webhook")))
        if events is not None:
            assert events == [ev.TriggerBindingRemoved(trigger_id, "webhook")]

    @rule(trigger_id=st.none() | binding_requests, failed=st.booleans())
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
        self._noise(noise)

    # --- the transport -----------------------------------------------------------------------

    # `connection_lost`: a rule of `CoreModel`.

    @rule(namespace=st.none() | st.just("shop"))
    def reconnect(self, namespace: str | None) -> None:
        """A new connection: a fresh core; every id held so far is stale."""
        self._fresh_core(namespace)

    # --- invariants --------------------------------------------------------------------------

    # `tables_match_the_model`, `answered_ids_are_not_owed` (no answered invocation is in
    # flight) and `nothing_is_tracked_once_closed`: invariants of `CoreModel`.

    @invariant()
    def nothing_is_sent_once_ended(self) -> None:
        if self.state in (State.CLOSED, State.ERROR):
            self._refused(self.core.ping)
            self._refused(lambda: self.core.call("greet"))
            self._refused(lambda: self.core.call_void("greet"))
            self._refused(lambda: self.core.register(RegisterFunction(id="greet")))


WorkerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestWorkerMachine = WorkerMachine.TestCase
