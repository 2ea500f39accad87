"""What `WorkerMachine` (`test_worker_machine.py`) draws, and the checks its rules share.

The strategies for registrations, errors and the noise an engine might send, and
`WorkerModel`: `protocol_model.CoreModel` for the worker role, with the core's id source
(fresh ids, or one a rule forced), a fresh core per connection, and the checks the
engine-frame rules share: a dispatch (`_invoke`), an answer to one of our calls
(`_call_answered`), a binding request (`_binding`) and our answer to one
(`_answer_binding`). It has no rules of its own; `WorkerMachine` adds them.
"""

from __future__ import annotations

from hypothesis import strategies as st

from anyiii._protocol import events as ev
from anyiii._protocol.frames import (
    NULL,
    ErrorBody,
    InvokeFunction,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    decode_frame,
    decode_value,
    encode_frame,
    to_raw,
)
from anyiii._protocol.registry import WorkerInfo
from anyiii._protocol.state import TRANSITIONS, Input, Role
from anyiii._protocol.worker import WorkerConnection
from protocol_model import CoreModel, only
from strategies import FUNCTION_IDS, TRIGGER_TYPES, UNDECODABLE, error_bodies, noise

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


class WorkerModel(CoreModel):
    """`CoreModel` for a `WorkerConnection`: its table, its id source, shared checks."""

    TABLE = TRANSITIONS[Role.WORKER]
    OWED = "invocations"

    core: WorkerConnection

    def __init__(self) -> None:
        super().__init__()
        self.previous: tuple[str, str | None] | None = None  # last worker id and token
        self.forced_id: str | None = None  # the next id the core's id source returns
        self._fresh_core(namespace=None)

    # --- model helpers -----------------------------------------------------------------------

    def _next_call_id(self) -> str:
        """The core's id source: fresh ids, unless a rule forced a reused one."""
        forced, self.forced_id = self.forced_id, None
        return self._mint("c0ffee00") if forced is None else forced

    def _fresh_core(self, namespace: str | None) -> None:
        self._fresh_model(WorkerConnection(namespace=namespace, ids=self._next_call_id))
        self.namespace = namespace

    # --- checks the rules share ------------------------------------------------------------

    def _answer_binding(self, trigger_id: str, error: ErrorBody | None) -> None:
        payload = self._local(
            Input.SEND_RESULT,
            lambda: self.core.answer_binding(trigger_id, error),
            allowed=trigger_id in self.bindings,
        )
        if payload is None:
            return
        trigger_type, function_id = self._binding_answered(trigger_id)
        assert decode_frame(payload) == TriggerRegistrationResult(
            id=trigger_id, trigger_type=trigger_type, function_id=function_id, error=error
        )

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
        events = self._request(frame)
        if events is None:
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
        self._requested(invocation_id, function_id)
        return True

    def _call_answered(self, invocation_id: str, shape: str, value: object) -> None:
        """The engine answers one of our calls: completed or failed if pending, else late."""
        answered = self._result(invocation_id, shape, value)
        if answered is None:
            return
        frame, function_id, events = answered
        if frame.error is not None:
            assert events == [ev.CallFailed(invocation_id, function_id, frame.error)]
        else:
            completed = only(events, ev.CallCompleted)
            assert (completed.invocation_id, completed.function_id) == (invocation_id, function_id)
            if shape == "value" and value is not None:
                assert decode_value(completed.result) == value  # type: ignore[arg-type]
            else:
                assert completed.result is None

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
        self._binding_sent(trigger_id, trigger_type, function_id)
        return True
