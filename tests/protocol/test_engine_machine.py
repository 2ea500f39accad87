"""`EngineConnection` against a model: a Hypothesis rule-based state machine.

The engine role of the core, driven the way the router drives it: local intents (start,
dispatch, deliver results, forward bindings, refuse registrations...) and frames from the
worker, built with the real encoder and fed through `receive()`. An intent the transition
table (or the model's bookkeeping) forbids must raise `LocalProtocolError` and change
nothing; a legal one returns a frame that is decoded and checked. After every step the
core's tables and state must equal the model's.

Bundles hold ids only: `worker_calls` (calls the worker made, which we must answer),
`dispatched` (invocations we sent the worker) and `forwarded` (bindings we delivered to it,
as the provider of their trigger type). `reconnect` swaps in a fresh core (started or not)
and is always enabled, so ids of dead connections stay in the bundles.

What the worker machine (`test_worker_machine.py`) shares with this one, the model's
bookkeeping and the rules both roles have, is `protocol_model.CoreModel`. The model's
tables are named as there: `calls` (the worker's calls awaiting our result),
`invocations` (our dispatches executing on the worker) and `bindings` (bindings forwarded
and awaiting the provider's answer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    INVALID_INVOCATION_ID,
    MALFORMED_FRAME,
    TRIGGER_REGISTRATION_FAILED,
)
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import (
    NULL,
    EnqueueAction,
    Error,
    ErrorBody,
    InvokeFunction,
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
from anyiii._protocol.state import TRANSITIONS, Input, Role, State
from protocol_model import MALFORMED_INVOKE, MALFORMED_RESULT, CoreModel, draw_id, sent_invoke
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

ERRORS = error_bodies("invocation_failed", "function_not_found", "invocation_stopped")
# Ids the Rust engine would not parse: the core must still answer them (with an error).
NON_UUIDS = ["not-a-uuid", "42", "", "0e0e0e0e00004000800000000000001"]

# Everything a worker registers, with the event the engine core must turn it into.
WORKER_REGISTRATIONS = st.sampled_from(
    [
        RegisterFunction(id="greet", description="says hi", metadata=to_raw({"x": 1})),
        UnregisterFunction(id="greet"),
        RegisterTriggerType(id="webhook", description="hooks"),
        UnregisterTriggerType(id="webhook", namespace="shop"),
        RegisterTrigger(id="t-1", trigger_type="http", function_id="greet", namespace="shop"),
        UnregisterTrigger(id="t-1"),
        UnregisterTrigger(id="t-1", trigger_type="http"),
        RegisterService(id="svc", name="Service"),
    ]
)


def registration_event(frame: Any) -> ev.Event:
    """The event the engine core reports for one worker registration frame."""
    if isinstance(frame, RegisterFunction):
        return ev.FunctionRegistered(frame)
    if isinstance(frame, UnregisterFunction):
        return ev.FunctionUnregistered(frame.id)
    if isinstance(frame, RegisterTriggerType):
        return ev.TriggerTypeRegistered(frame)
    if isinstance(frame, UnregisterTriggerType):
        return ev.TriggerTypeUnregistered(frame.id, frame.namespace)
    if isinstance(frame, RegisterTrigger):
        return ev.TriggerRegistered(frame)
    if isinstance(frame, UnregisterTrigger):
        return ev.TriggerUnregistered(frame.id, frame.trigger_type)
    assert isinstance(frame, RegisterService)
    return ev.ServiceRegistered(frame)


# Undecodable and naming no invocation. None starts like telemetry or is blank.
GARBAGE = st.sampled_from(
    [
        *UNDECODABLE,
        b'{"type": "registerfunction"}',
        b'{"type": "invocationresult", "invocation_id": 7}',
        "not json at all",
    ]
)
# Frames an engine never receives (engine → worker only).
FOREIGN = st.sampled_from(
    [
        WorkerRegistered(worker_id="w-0", reattach_token="t-0"),
        RegistrationRejected(code=FUNCTION_NAMESPACE_CONFLICT, function_id="greet"),
        Error(error=ErrorBody(code="AUTH_ERROR", message="no")),
    ]
)
NOISE = noise(GARBAGE, FOREIGN)


class EngineMachine(CoreModel):
    TABLE = TRANSITIONS[Role.ENGINE]
    OWED = "calls"

    worker_calls = Bundle("worker_calls")
    dispatched = Bundle("dispatched")
    forwarded = Bundle("forwarded")

    core: EngineConnection

    def __init__(self) -> None:
        super().__init__()
        self._fresh_core()

    # --- model helpers -----------------------------------------------------------------------

    def _fresh_core(self) -> None:
        self.worker_id, self.token = self._mint("e0000000"), self._mint("70ce0000")
        self.features: tuple[str, ...] = ("observe.v1",) if self.made % 4 == 2 else ()
        self._fresh_model(EngineConnection(self.worker_id, self.token, features=self.features))

    @initialize()
    def handshake(self) -> None:
        """Most of the engine role happens after `workerregistered`: start there. (The rule
        `reconnect` also makes fresh cores that are not started.)"""
        self.start()

    # --- local intents -----------------------------------------------------------------------

    @rule()
    def start(self) -> None:
        payload = self._local(Input.SEND_HANDSHAKE, self.core.start)
        if payload is not None:
            assert decode_frame(payload) == WorkerRegistered(
                worker_id=self.worker_id,
                reattach_token=self.token,
                features=self.features or None,  # left out when empty (spec §3.9)
            )

    def _dispatch(self, invocation_id: str, function_id: str, value: object) -> bool:
        metadata = to_raw({"m": 1}) if value is not None else None
        payload = self._local(
            Input.SEND_CALL,
            lambda: self.core.dispatch(
                invocation_id, function_id, to_raw(value), metadata=metadata, baggage="k=v"
            ),
            allowed=invocation_id not in self.invocations,
        )
        if payload is None:
            return False
        frame = sent_invoke(payload, invocation_id, function_id, value)
        assert (frame.metadata is msgspec.UNSET) is (metadata is None)
        assert (frame.action, frame.namespace, frame.baggage) == (None, None, "k=v")
        self.invocations[invocation_id] = function_id
        return True

    @rule(
        target=dispatched,
        function_id=FUNCTION_IDS,
        value=SAMPLE_JSON,
        own_call=st.none() | worker_calls,
    )
    def dispatch(self, function_id: str, value: object, own_call: str | None) -> object:
        """A fresh id, or `own_call`: the id of a call this worker made to a function it
        serves itself, which the engine dispatches back under the same id (spec §5.1)."""
        invocation_id = self._mint("d1500000") if own_call is None else own_call
        return invocation_id if self._dispatch(invocation_id, function_id, value) else multiple()

    @rule(invocation_id=dispatched, function_id=FUNCTION_IDS)
    def dispatch_same_id(self, invocation_id: str, function_id: str) -> None:
        """Refused while that id is executing here; fine once answered or lost."""
        self._dispatch(invocation_id, function_id, "again")

    @rule(
        invocation_id=consumes(worker_calls),
        value=SAMPLE_JSON,
        error=st.none() | ERRORS,
    )
    def deliver_result(self, invocation_id: str, value: object, error: ErrorBody | None) -> None:
        result = None if value is None else to_raw(value)
        payload = self._local(
            Input.SEND_RESULT,
            lambda: self.core.deliver_result(
                invocation_id, result, error=error, traceparent="00-tp"
            ),
            allowed=self._answerable(invocation_id),
        )
        if payload is None:
            return
        frame = self._answered(invocation_id, payload)
        assert frame.error == error
        assert frame.traceparent == "00-tp"
        if error is not None or value is None:
            assert frame.result is msgspec.UNSET  # the error wins; None is left out
        else:
            assert decode_value(frame.result) == value  # type: ignore[arg-type]

    @precondition(lambda self: bool(self.answered))
    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        """A call that was already answered cannot be answered again."""
        self._answer_again(data, lambda i: self.core.deliver_result(i, NULL))

    @rule(
        target=forwarded,
        trigger_id=st.none() | forwarded,
        trigger_type=TRIGGER_TYPES,
        function_id=FUNCTION_IDS,
    )
    def forward_binding(
        self, trigger_id: str | None, trigger_type: str, function_id: str
    ) -> object:
        """Deliver a binding to its provider; the same id again needs another answer."""
        fresh = trigger_id is None
        trigger_id = self._mint("b1d00000") if trigger_id is None else trigger_id
        binding = RegisterTrigger(
            id=trigger_id, trigger_type=trigger_type, function_id=function_id, config=NULL
        )
        payload = self._local(Input.SEND_REGISTRATION, lambda: self.core.forward_binding(binding))
        if payload is None:
            return multiple()
        assert decode_frame(payload) == binding
        self._binding_sent(trigger_id, trigger_type, function_id)
        return trigger_id if fresh else multiple()

    @rule(trigger_id=forwarded, trigger_type=TRIGGER_TYPES)
    def forward_unbinding(self, trigger_id: str, trigger_type: str) -> None:
        """Tells the provider; an answer it still owes for the binding stays owed."""
        payload = self._local(
            Input.SEND_REGISTRATION,
            lambda: self.core.forward_unbinding(trigger_id, trigger_type),
        )
        if payload is not None:
            assert decode_frame(payload) == UnregisterTrigger(
                id=trigger_id, trigger_type=trigger_type
            )

    @rule(
        frame=st.sampled_from(
            [
                TriggerRegistrationResult(
                    id="t-9",
                    trigger_type="http",
                    function_id="greet",
                    error=ErrorBody(TRIGGER_REGISTRATION_FAILED, "api_path missing"),
                ),
                RegistrationRejected(
                    code=FUNCTION_NAMESPACE_CONFLICT, owner_worker_id="w-1", function_id="greet"
                ),
                RegistrationRejected(
                    code="WORKER_NAMESPACE_CONFLICT", owner_worker_id="w-1", worker_name="api"
                ),
            ]
        )
    )
    def report_to_worker(self, frame: TriggerRegistrationResult | RegistrationRejected) -> None:
        """`report_trigger_failure()` or `reject_registration()`, whichever fits."""
        if isinstance(frame, TriggerRegistrationResult):
            action: Callable[[], bytes] = lambda: self.core.report_trigger_failure(frame)  # noqa: E731
        else:
            action = lambda: self.core.reject_registration(frame)  # noqa: E731
        payload = self._local(Input.SEND_REGISTRATION, action)
        if payload is not None:
            assert decode_frame(payload) == frame

    # `ping` (and `pong`) and `start_closing` (and `send_failed`): rules of `CoreModel`.

    # --- frames from the worker --------------------------------------------------------------

    @rule(frame=WORKER_REGISTRATIONS)
    def worker_registers(self, frame: Any) -> None:
        events = self._feed(encode_frame(frame))
        if events is not None:
            assert events == [registration_event(frame)]

    def _call(self, invocation_id: str, function_id: str, enqueue: bool) -> bool:
        """The worker calls a function and awaits the result; True if newly awaiting."""
        frame = InvokeFunction(
            function_id=function_id,
            invocation_id=invocation_id,
            data=to_raw({"n": 1}),
            action=EnqueueAction(queue="jobs") if enqueue else None,
            namespace="shop",
        )
        events = self._request(frame)
        if events is None:
            return False
        if invocation_id in NON_UUIDS:
            self.violations += 1
            assert len(events) == 1, events
            invalid = events[0]
            assert isinstance(invalid, ev.InvalidCall), events
            assert (invalid.invocation_id, invalid.function_id) == (invocation_id, function_id)
            assert invalid.code == INVALID_INVOCATION_ID
        else:
            assert events == [ev.CallRequested(frame)]
        self._requested(invocation_id, function_id)
        return True

    @rule(target=worker_calls, function_id=FUNCTION_IDS, enqueue=st.booleans())
    def worker_calls_function(self, function_id: str, enqueue: bool) -> object:
        """A sync or enqueue call with a fresh UUID id."""
        invocation_id = self._mint("ca110000")
        return invocation_id if self._call(invocation_id, function_id, enqueue) else multiple()

    @rule(target=worker_calls, invocation_id=st.sampled_from(NON_UUIDS), enqueue=st.booleans())
    def worker_calls_with_bad_id(self, invocation_id: str, enqueue: bool) -> object:
        """Not UUID text: reported as an InvalidCall, which still awaits its answer."""
        return invocation_id if self._call(invocation_id, "greet", enqueue) else multiple()

    @rule(invocation_id=worker_calls, function_id=FUNCTION_IDS, enqueue=st.booleans())
    def worker_calls_same_id(self, invocation_id: str, function_id: str, enqueue: bool) -> None:
        """A duplicate while awaiting is dropped; once answered (or lost) it is new."""
        self._call(invocation_id, function_id, enqueue)

    @precondition(lambda self: bool(self.answered))
    @rule(target=worker_calls, data=st.data(), function_id=FUNCTION_IDS)
    def worker_calls_answered_id(self, data: st.DataObject, function_id: str) -> object:
        invocation_id = draw_id(data, self.answered, "answered id")
        return invocation_id if self._call(invocation_id, function_id, False) else multiple()

    @rule(
        kind=st.sampled_from(["void", "void with id", "sync without id"]),
        function_id=FUNCTION_IDS,
    )
    def worker_calls_without_answer(self, kind: str, function_id: str) -> None:
        """Fire and forget: reported, never tracked, never answered."""
        frame = InvokeFunction(
            function_id=function_id,
            invocation_id=self._mint("f0f00000") if kind == "void with id" else None,
            action=None if kind == "sync without id" else VoidAction(),
        )
        events = self._feed(encode_frame(frame))
        if events is not None:
            assert events == [ev.CallRequested(frame)]

    @rule(
        target=worker_calls,
        existing=st.none() | worker_calls,
        broken=st.sampled_from(list(MALFORMED_INVOKE)),
    )
    def worker_calls_malformed(self, existing: str | None, broken: str) -> object:
        """A bad invokefunction that names its id: awaiting, answerable, reported."""
        invocation_id = existing if existing is not None else self._mint("bad00000")
        invalid = self._malformed_request(invocation_id, broken, ev.InvalidCall)
        if invalid is None:
            return multiple()
        assert invalid.code == MALFORMED_FRAME
        return invocation_id

    def _dispatch_answered(self, invocation_id: str, shape: str, value: object) -> None:
        """The worker answers a dispatch: its result if executing, else late."""
        answered = self._result(invocation_id, shape, value)
        if answered is not None:
            frame, _, events = answered
            assert events == [ev.ResultReceived(frame)]

    @rule(invocation_id=st.none() | dispatched, shape=RESULT_SHAPES, value=SAMPLE_JSON)
    def worker_answers(self, invocation_id: str | None, shape: str, value: object) -> None:
        """Executing: its result. Answered already, stale or never dispatched (None): late."""
        self._dispatch_answered(
            self._mint("0dd00000") if invocation_id is None else invocation_id, shape, value
        )

    @precondition(lambda self: bool(self.invocations))
    @rule(data=st.data(), shape=RESULT_SHAPES, value=SAMPLE_JSON)
    def worker_answers_executing(self, data: st.DataObject, shape: str, value: object) -> None:
        """The common case, drawn from live dispatches only (the bundle is mostly stale)."""
        self._dispatch_answered(draw_id(data, self.invocations, "executing id"), shape, value)

    @rule(invocation_id=dispatched, broken=st.sampled_from(list(MALFORMED_RESULT)))
    def worker_answers_malformed(self, invocation_id: str, broken: str) -> None:
        """A bad invocationresult that names a dispatch still ends it, as an error."""
        ended = self._malformed_result(invocation_id, broken)
        if ended is None:
            return
        function_id, received = ended
        assert isinstance(received, ev.ResultReceived), received
        result = received.result
        assert (result.invocation_id, result.function_id) == (invocation_id, function_id)
        assert result.error is not None
        assert result.error.code == MALFORMED_FRAME

    @rule(trigger_id=st.none() | forwarded, failed=st.booleans())
    def worker_answers_binding(self, trigger_id: str | None, failed: bool) -> None:
        """A provider's answer: for a forwarded binding, or out of place (a violation)."""
        trigger_id = self._mint("b1d00000") if trigger_id is None else trigger_id
        self._binding_answer(trigger_id, failed)

    @precondition(lambda self: bool(self.bindings))
    @rule(data=st.data(), failed=st.booleans())
    def worker_answers_forwarded_binding(self, data: st.DataObject, failed: bool) -> None:
        """The common case, drawn from bindings still owed an answer."""
        trigger_id = draw_id(data, self.bindings, "forwarded id")
        self._binding_answer(trigger_id, failed)

    def _binding_answer(self, trigger_id: str, failed: bool) -> None:
        error = ErrorBody(TRIGGER_REGISTRATION_FAILED, "bad config") if failed else None
        frame = TriggerRegistrationResult(
            id=trigger_id, trigger_type="webhook", function_id="greet", error=error
        )
        events = self._feed(encode_frame(frame))
        if events is None:
            return
        if trigger_id not in self.bindings:
            self._violation(events, frame_type="triggerregistrationresult")
            assert len(events) == 1
            return
        assert events == [ev.BindingAnswered(frame)]
        self._binding_answered(trigger_id)

    @rule(token=st.none() | st.just("70ce0000-0000-4000-8000-000000000001"))
    def worker_reattaches(self, token: str | None) -> None:
        frame = Reattach(previous_worker_id=uuid_text("e0000000", 1), reattach_token=token)
        events = self._feed(encode_frame(frame))
        if events is not None:
            assert events == [ev.ReattachRequested(frame.previous_worker_id, token)]

    @rule(noise=NOISE)
    def worker_sends_noise(self, noise: tuple[str, Any]) -> None:
        """Control frames, unknown types, garbage, frames for workers, blanks, telemetry."""
        self._noise(noise)

    # --- the transport -----------------------------------------------------------------------

    # `connection_lost`: a rule of `CoreModel`.

    @rule(start=st.booleans())
    def reconnect(self, start: bool) -> None:
        """A new connection (fresh core, started or not); every id held so far is stale."""
        self._fresh_core()
        if start:
            self.start()

    # --- invariants --------------------------------------------------------------------------

    # `tables_match_the_model`, `answered_ids_are_not_owed` (no answered call is awaiting)
    # and `nothing_is_tracked_once_closed`: invariants of `CoreModel`.

    @invariant()
    def nothing_is_sent_once_ended(self) -> None:
        if self.state in (State.CLOSED, State.ERROR):
            self._refused(self.core.start)
            self._refused(self.core.ping)
            self._refused(lambda: self.core.dispatch(uuid_text("d1500000", 0), "greet"))
            self._refused(lambda: self.core.forward_unbinding("t-1", "webhook"))


EngineMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestEngineMachine = EngineMachine.TestCase
