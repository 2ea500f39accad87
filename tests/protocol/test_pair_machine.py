"""A worker core and an engine core wired back to back, driven by Hypothesis (h11's ConnectionPair).

Every rule makes one side send something through its public API and feeds the frames to
the other side at once, asserting that they produce exactly the events the sender meant.
A small model on the machine (what each side should be tracking) is compared with both
cores after every step: the worker's pending calls are the engine's awaited results (minus
calls the worker gave up on), the engine's dispatches are the worker's in-flight
invocations, and both agree on which bindings await an answer. A link-drop rule ends the
connection on both sides at once, possibly with frames still in transit, and checks that
both sides abandon consistent sets; a reconnect rule then starts a fresh pair with
`reattach` and the same registry.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from msgspec import UNSET, Raw

from anyiii._errors import LocalProtocolError
from anyiii._protocol import events as ev
from anyiii._protocol.codes import FUNCTION_NAMESPACE_CONFLICT, REGISTER_WORKER
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import (
    NULL,
    EnqueueAction,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    VoidAction,
    absent_if_none,
    decode_value,
    present,
    to_raw,
)
from anyiii._protocol.ids import InvocationIds, is_uuid
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.state import State
from anyiii._protocol.worker import WorkerConnection
from protocol_model import call_namespace, snapshot, views
from strategies import EXACT_JSON, EXACT_OBJECTS

# --- strategies -----------------------------------------------------------------------------

maybe_raw = st.none() | EXACT_OBJECTS.map(to_raw) | st.just(None).map(to_raw)  # last: JSON null
function_ids = st.sampled_from(["greet", "math::add", "orders::create", "engine::functions::list"])
type_ids = st.sampled_from(["webhook", "queue", "mail"])
trigger_ids = st.sampled_from(
    [str(uuid.UUID(int=n, version=4)) for n in (0x1111, 0x2222, 0x3333, 0x4444)]
)
texts = st.none() | st.text(max_size=8)
namespaces = st.none() | st.sampled_from(["shop", "infra"])
traceparents = st.none() | st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
error_bodies = st.builds(
    ErrorBody,
    code=st.sampled_from(["invocation_failed", "function_not_found", "boom", ""]),
    message=st.text(max_size=10),
    stacktrace=texts,
)

register_functions = st.builds(
    RegisterFunction,
    id=function_ids,
    description=texts,
    request_format=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
    metadata=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
)
register_trigger_types = st.builds(
    RegisterTriggerType,
    id=type_ids,
    description=st.sampled_from(["Webhooks", "d"]),
    trigger_request_format=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
    namespace=namespaces,
)
register_triggers = st.builds(
    RegisterTrigger,
    id=trigger_ids,
    trigger_type=type_ids | st.just("http"),
    function_id=function_ids,
    config=EXACT_OBJECTS.map(to_raw) | st.just(to_raw(None)),
    metadata=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
    namespace=namespaces,
    trigger_namespace=namespaces,
)
registrations = st.lists(
    register_functions | register_trigger_types | register_triggers, max_size=6
)
worker_infos = st.builds(
    WorkerInfo,
    name=st.text(min_size=1, max_size=10),
    version=st.just("0.1.0"),
    os=st.just("Linux 6.8.0 (x86_64)"),
    pid=st.integers(1, 99999),
    isolation=st.none() | st.just("docker"),
    namespace=namespaces,
    description=texts,
    telemetry=st.none() | st.just({"language": "en_US", "framework": "anyiii"}),
)


def _expected_raw(value: Raw | None) -> Raw | None:
    """What the receiving side reports for an optional raw JSON value we sent."""
    return None if value is None else present(value)


class PairMachine(RuleBasedStateMachine):
    """A `WorkerConnection` and an `EngineConnection` talking to each other."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry()
        self.generation = 0
        self.worker_namespace: str | None = None
        self._forced_ids: list[str] = []
        self._default_ids = InvocationIds()
        self._dispatch_counter = 0
        self._bad_counter = 0

    # --- plumbing ---------------------------------------------------------------------------

    def _next_id(self) -> str:
        return self._forced_ids.pop() if self._forced_ids else self._default_ids()

    def _new_pair(self, namespace: str | None) -> None:
        self.generation += 1
        self.worker_namespace = namespace
        self.worker = WorkerConnection(namespace=namespace, ids=self._next_id)
        self.engine = EngineConnection(
            str(uuid.UUID(int=0xA000 + self.generation, version=4)),
            str(uuid.UUID(int=0xB000 + self.generation, version=4)),
        )
        # Model: what each side should be tracking.
        self.calls: dict[str, str] = {}  # worker calls awaiting a result, as the worker sees
        self.forgotten: dict[str, str] = {}  # calls the worker gave up on; engine still awaits
        self.dispatches: dict[str, str] = {}  # engine dispatches awaiting the worker's answer
        self.bindings: dict[str, int] = {}  # forwarded bindings awaiting an answer (count)
        self.opened = False
        self.dropped = False
        self.bad_calls = 0  # calls with a non-UUID id: the engine counts each as a violation
        self.late_results = 0  # results the worker dropped because it had forgotten the call
        [registered] = self.worker.receive(self.engine.start())
        assert registered == ev.Registered(self.engine.worker_id, self.engine.reattach_token, ())
        assert self.worker.worker_id == self.engine.worker_id

    def to_engine(self, *frames: bytes) -> list[ev.Event]:
        out: list[ev.Event] = []
        for frame in frames:
            out.extend(self.engine.receive(frame))
        note(f"worker -> engine: {[f.decode() for f in frames]} => {out}")
        return out

    def to_worker(self, *frames: bytes) -> list[ev.Event]:
        out: list[ev.Event] = []
        for frame in frames:
            out.extend(self.worker.receive(frame))
        note(f"engine -> worker: {[f.decode() for f in frames]} => {out}")
        return out

    def _fresh_dispatch_id(self) -> str:
        self._dispatch_counter += 1
        return str(uuid.UUID(int=self._dispatch_counter, version=4))

    def _open_sequence(
        self,
        info: WorkerInfo,
        previous: tuple[str, str | None] | None = None,
    ) -> None:
        if previous is None:
            frames = self.worker.open_sequence(self.registry, info)
        else:
            frames = self.worker.open_sequence(
                self.registry,
                info,
                previous_worker_id=previous[0],
                previous_reattach_token=previous[1],
            )
        events = self.to_engine(*frames)
        expected: list[ev.Event] = []
        if previous is not None:
            expected.append(ev.ReattachRequested(*previous))
        expected.extend(ev.TriggerTypeRegistered(f) for f in self.registry.trigger_types)
        expected.extend(ev.FunctionRegistered(f) for f in self.registry.functions)
        expected.extend(ev.TriggerRegistered(f) for f in self.registry.triggers)
        assert events[:-1] == expected
        [register] = events[-1:]
        assert isinstance(register, ev.CallRequested)
        call = register.call
        assert call.function_id == REGISTER_WORKER
        assert call.action == VoidAction()
        assert call.invocation_id is None
        assert decode_value(call.data) == info.to_builtins()
        assert call.namespace is None  # Python sends no namespace on this call (spec §4.2)
        self.opened = True

    def _worker_can_send_new(self) -> bool:
        return self.opened and self.worker.state is State.OPEN

    def _engine_can_send_new(self) -> bool:
        # Rules are gated on the open sequence so that it runs first and most steps are spent
        # on a registered worker.
        return self.opened and not self.dropped and self.engine.state is State.OPEN

    # --- set-up, open, reconnect -------------------------------------------------------------

    @initialize(namespace=namespaces, initial=registrations, early_dispatch=st.booleans())
    def start(self, namespace: str | None, initial: list[Any], early_dispatch: bool) -> None:
        for frame in initial:
            self.registry.add(frame)
        self._new_pair(namespace)
        if early_dispatch:
            # The engine may dispatch before the worker's open sequence arrives; the worker
            # answers it once it has sent that sequence.
            invocation_id = self._fresh_dispatch_id()
            events = self.to_worker(self.engine.dispatch(invocation_id, "greet"))
            assert events == [
                ev.InvocationRequested(invocation_id=invocation_id, function_id="greet", data=NULL)
            ]
            self.dispatches[invocation_id] = "greet"

    @precondition(
        lambda self: not self.opened and not self.dropped and self.worker.state is State.OPEN
    )
    @rule(info=worker_infos)
    def open_sequence(self, info: WorkerInfo) -> None:
        self._open_sequence(info)

    @precondition(lambda self: self.dropped)
    @rule(info=worker_infos, namespace=namespaces, with_token=st.booleans())
    def reconnect(self, info: WorkerInfo, namespace: str | None, with_token: bool) -> None:
        previous_id = self.worker.worker_id
        token = self.worker.reattach_token if with_token else None
        assert previous_id is not None
        self._new_pair(namespace)
        self._open_sequence(info, previous=(previous_id, token))

    # --- registrations (worker → engine) ---------------------------------------------------

    @precondition(lambda self: self._worker_can_send_new())
    @rule(frame=register_functions | register_trigger_types | register_triggers)
    def register(self, frame: RegisterFunction | RegisterTriggerType | RegisterTrigger) -> None:
        self.registry.add(frame)
        events = self.to_engine(self.worker.register(frame))
        if isinstance(frame, RegisterFunction):
            assert events == [ev.FunctionRegistered(frame)]
        elif isinstance(frame, RegisterTriggerType):
            assert events == [ev.TriggerTypeRegistered(frame)]
        else:
            assert events == [ev.TriggerRegistered(frame)]

    @precondition(lambda self: self._worker_can_send_new())
    @rule(function_id=function_ids)
    def unregister_function(self, function_id: str) -> None:
        self.registry.remove_function(function_id)
        events = self.to_engine(self.worker.unregister(UnregisterFunction(id=function_id)))
        assert events == [ev.FunctionUnregistered(function_id)]

    @precondition(lambda self: self._worker_can_send_new())
    @rule(type_id=type_ids, namespace=namespaces, description=texts)
    def unregister_trigger_type(
        self, type_id: str, namespace: str | None, description: str | None
    ) -> None:
        self.registry.remove_trigger_type(type_id)
        frame = UnregisterTriggerType(id=type_id, namespace=namespace, description=description)
        events = self.to_engine(self.worker.unregister(frame))
        assert events == [ev.TriggerTypeUnregistered(type_id, namespace)]

    @precondition(lambda self: self._worker_can_send_new())
    @rule(trigger_id=trigger_ids, trigger_type=st.none() | type_ids)
    def unregister_trigger(self, trigger_id: str, trigger_type: str | None) -> None:
        self.registry.remove_trigger(trigger_id)
        frame = UnregisterTrigger(id=trigger_id, trigger_type=trigger_type)
        events = self.to_engine(self.worker.unregister(frame))
        assert events == [ev.TriggerUnregistered(trigger_id, trigger_type)]

    # --- calls (worker → engine) and their results (engine → worker) ------------------------

    @precondition(lambda self: self._worker_can_send_new())
    @rule(
        function_id=function_ids,
        value=EXACT_JSON,
        metadata=maybe_raw,
        traceparent=traceparents,
        baggage=texts,
        namespace=namespaces,
        queue=st.none() | st.sampled_from(["jobs", "mail"]),
        bad_id=st.integers(0, 9),
    )
    def call(
        self,
        function_id: str,
        value: Any,
        metadata: Raw | None,
        traceparent: str | None,
        baggage: str | None,
        namespace: str | None,
        queue: str | None,
        bad_id: int,
    ) -> None:
        if bad_id == 0:  # now and then, an id the Rust engine would refuse
            self._bad_counter += 1
            self._forced_ids.append(f"not-a-uuid-{self._bad_counter}")
        invocation_id, frame = self.worker.call(
            function_id,
            to_raw(value),
            metadata=metadata,
            traceparent=traceparent,
            baggage=baggage,
            namespace=namespace,
            enqueue=queue,
        )
        assert self.worker.pending_calls[invocation_id] == function_id
        events = self.to_engine(frame)
        self.calls[invocation_id] = function_id
        if not is_uuid(invocation_id):
            self.bad_calls += 1
            [invalid] = events
            assert isinstance(invalid, ev.InvalidCall)
            assert (invalid.invocation_id, invalid.function_id) == (invocation_id, function_id)
            return
        expected = InvokeFunction(
            function_id=function_id,
            invocation_id=invocation_id,
            data=to_raw(value),
            traceparent=traceparent,
            baggage=baggage,
            action=None if queue is None else EnqueueAction(queue=queue),
            metadata=absent_if_none(metadata),
            namespace=call_namespace(function_id, namespace, self.worker_namespace),
        )
        assert events == [ev.CallRequested(expected)]
        [requested] = events
        assert isinstance(requested, ev.CallRequested)
        assert decode_value(requested.call.data) == value

    @precondition(lambda self: self._worker_can_send_new())
    @rule(
        function_id=function_ids,
        value=EXACT_JSON,
        metadata=maybe_raw,
        traceparent=traceparents,
        namespace=namespaces,
    )
    def call_void(
        self,
        function_id: str,
        value: Any,
        metadata: Raw | None,
        traceparent: str | None,
        namespace: str | None,
    ) -> None:
        before = dict(self.worker.pending_calls)
        frame = self.worker.call_void(
            function_id,
            to_raw(value),
            metadata=metadata,
            traceparent=traceparent,
            namespace=namespace,
        )
        assert dict(self.worker.pending_calls) == before
        events = self.to_engine(frame)
        expected = InvokeFunction(
            function_id=function_id,
            data=to_raw(value),
            traceparent=traceparent,
            action=VoidAction(),
            metadata=absent_if_none(metadata),
            namespace=call_namespace(function_id, namespace, self.worker_namespace),
        )
        assert events == [ev.CallRequested(expected)]

    @precondition(lambda self: bool(self.calls) and not self.dropped)
    @rule(data=st.data())
    def forget_call(self, data: st.DataObject) -> None:
        invocation_id = data.draw(st.sampled_from(sorted(self.calls)))
        assert self.worker.forget_call(invocation_id)
        assert not self.worker.forget_call(invocation_id)
        self.forgotten[invocation_id] = self.calls.pop(invocation_id)

    def _awaited(self) -> list[str]:
        return sorted({**self.calls, **self.forgotten})

    def _take_awaited(self, invocation_id: str) -> tuple[str, bool]:
        """Remove a call from the model; returns its function id and whether it was late."""
        if invocation_id in self.calls:
            return self.calls.pop(invocation_id), False
        return self.forgotten.pop(invocation_id), True

    @precondition(
        lambda self: bool(self._awaited()) and self.engine.state in (State.OPEN, State.CLOSING)
    )
    @rule(data=st.data(), value=EXACT_JSON, traceparent=traceparents, baggage=texts)
    def deliver_result(
        self, data: st.DataObject, value: Any, traceparent: str | None, baggage: str | None
    ) -> None:
        invocation_id = data.draw(st.sampled_from(self._awaited()))
        result = to_raw(value)
        frame = self.engine.deliver_result(
            invocation_id, result, traceparent=traceparent, baggage=baggage
        )
        assert invocation_id not in self.engine.awaiting_results
        function_id, late = self._take_awaited(invocation_id)
        late_before = self.worker.late_results
        events = self.to_worker(frame)
        if late:
            assert events == [ev.LateResult(invocation_id, function_id)]
            assert self.worker.late_results == late_before + 1
            self.late_results += 1
            return
        assert events == [ev.CallCompleted(invocation_id, function_id, _expected_raw(result))]
        [completed] = events
        assert isinstance(completed, ev.CallCompleted)
        if value is not None:
            assert completed.result is not None
            assert decode_value(completed.result) == value

    @precondition(
        lambda self: bool(self._awaited()) and self.engine.state in (State.OPEN, State.CLOSING)
    )
    @rule(data=st.data(), error=error_bodies, also_result=st.booleans())
    def deliver_error(self, data: st.DataObject, error: ErrorBody, also_result: bool) -> None:
        invocation_id = data.draw(st.sampled_from(self._awaited()))
        result = to_raw({"ignored": True}) if also_result else None
        frame = self.engine.deliver_result(invocation_id, result, error=error)
        function_id, late = self._take_awaited(invocation_id)
        events = self.to_worker(frame)
        if late:
            assert events == [ev.LateResult(invocation_id, function_id)]
            self.late_results += 1
        else:
            # The error body is passed through unchanged, stack trace included.
            assert events == [ev.CallFailed(invocation_id, function_id, error)]

    # --- dispatches (engine → worker) and their answers (worker → engine) -----------------

    @precondition(lambda self: self._engine_can_send_new())
    @rule(
        data=st.data(),
        function_id=function_ids,
        value=EXACT_JSON,
        metadata=maybe_raw,
        traceparent=traceparents,
        baggage=texts,
        reuse_caller_id=st.booleans(),
    )
    def dispatch(
        self,
        data: st.DataObject,
        function_id: str,
        value: Any,
        metadata: Raw | None,
        traceparent: str | None,
        baggage: str | None,
        reuse_caller_id: bool,
    ) -> None:
        # The engine reuses the caller's id toward the callee (spec §5.1), so a worker that
        # calls its own function gets its own call's id dispatched back to it.
        reusable = sorted(
            i for i in self.engine.awaiting_results if i not in self.dispatches and is_uuid(i)
        )
        if reuse_caller_id and reusable:
            invocation_id = data.draw(st.sampled_from(reusable))
        else:
            invocation_id = self._fresh_dispatch_id()
        frame = self.engine.dispatch(
            invocation_id,
            function_id,
            to_raw(value),
            metadata=metadata,
            traceparent=traceparent,
            baggage=baggage,
        )
        self.dispatches[invocation_id] = function_id
        events = self.to_worker(frame)
        assert events == [
            ev.InvocationRequested(
                invocation_id=invocation_id,
                function_id=function_id,
                data=to_raw(value),
                metadata=_expected_raw(metadata),
                traceparent=traceparent,
                baggage=baggage,
            )
        ]

    @precondition(lambda self: bool(self.dispatches) and self.opened and not self.dropped)
    @rule(data=st.data(), value=EXACT_JSON | st.none(), traceparent=traceparents)
    def complete(self, data: st.DataObject, value: Any, traceparent: str | None) -> None:
        invocation_id = data.draw(st.sampled_from(sorted(self.dispatches)))
        result = None if value is None else to_raw(value)
        frame = self.worker.complete(invocation_id, result, traceparent=traceparent)
        function_id = self.dispatches.pop(invocation_id)
        events = self.to_engine(frame)
        expected = InvocationResult(
            invocation_id=invocation_id,
            function_id=function_id,
            result=absent_if_none(result),
            traceparent=traceparent,
        )
        assert events == [ev.ResultReceived(expected)]

    @precondition(lambda self: bool(self.dispatches) and self.opened and not self.dropped)
    @rule(data=st.data(), error=error_bodies)
    def fail(self, data: st.DataObject, error: ErrorBody) -> None:
        invocation_id = data.draw(st.sampled_from(sorted(self.dispatches)))
        frame = self.worker.fail(invocation_id, error)
        function_id = self.dispatches.pop(invocation_id)
        events = self.to_engine(frame)
        expected = InvocationResult(
            invocation_id=invocation_id, function_id=function_id, error=error
        )
        assert events == [ev.ResultReceived(expected)]

    # --- trigger bindings of a type the worker provides ------------------------------------

    @precondition(lambda self: self._engine_can_send_new())
    @rule(binding=register_triggers)
    def forward_binding(self, binding: RegisterTrigger) -> None:
        events = self.to_worker(self.engine.forward_binding(binding))
        assert events == [ev.TriggerBindingRequested(binding)]
        self.bindings[binding.id] = self.bindings.get(binding.id, 0) + 1

    @precondition(lambda self: bool(self.bindings) and self.opened and not self.dropped)
    @rule(data=st.data(), error=st.none() | error_bodies)
    def answer_binding(self, data: st.DataObject, error: ErrorBody | None) -> None:
        trigger_id = data.draw(st.sampled_from(sorted(self.bindings)))
        trigger_type = self.worker.awaiting_binding_answers[trigger_id]
        frame = self.worker.answer_binding(trigger_id, error)
        events = self.to_engine(frame)
        [answered] = events
        assert isinstance(answered, ev.BindingAnswered)
        assert answered.frame.id == trigger_id
        assert answered.frame.trigger_type == trigger_type
        assert answered.frame.error == error
        self.bindings[trigger_id] -= 1
        if not self.bindings[trigger_id]:
            del self.bindings[trigger_id]

    @precondition(lambda self: self._engine_can_send_new())
    @rule(trigger_id=trigger_ids, trigger_type=type_ids)
    def forward_unbinding(self, trigger_id: str, trigger_type: str) -> None:
        events = self.to_worker(self.engine.forward_unbinding(trigger_id, trigger_type))
        assert events == [ev.TriggerBindingRemoved(trigger_id, trigger_type)]

    @precondition(lambda self: self._engine_can_send_new())
    @rule(
        trigger_id=trigger_ids,
        trigger_type=type_ids,
        function_id=function_ids,
        error=st.none() | error_bodies,
    )
    def report_trigger_failure(
        self, trigger_id: str, trigger_type: str, function_id: str, error: ErrorBody | None
    ) -> None:
        result = TriggerRegistrationResult(
            id=trigger_id, trigger_type=trigger_type, function_id=function_id, error=error
        )
        events = self.to_worker(self.engine.report_trigger_failure(result))
        if error is None:
            assert events == []  # a success report needs no action
        else:
            assert events == [
                ev.TriggerRegistrationFailed(trigger_id, trigger_type, function_id, error)
            ]

    # --- rejections, closing, control --------------------------------------------------------

    @precondition(lambda self: self._engine_can_send_new())
    @rule(
        # Fatal codes end the worker's useful life until the link drops: keep them rarer.
        code=st.sampled_from(
            [FUNCTION_NAMESPACE_CONFLICT] * 4 + ["WORKER_NAMESPACE_CONFLICT", "SOMETHING_NEW"]
        ),
        namespace=st.sampled_from(["default", "shop"]),
        function_id=st.none() | function_ids,
        worker_name=texts,
        owner=st.sampled_from(["", str(uuid.UUID(int=0xCAFE, version=4))]),
    )
    def reject_registration(
        self,
        code: str,
        namespace: str,
        function_id: str | None,
        worker_name: str | None,
        owner: str,
    ) -> None:
        rejection = RegistrationRejected(
            code=code,
            namespace=namespace,
            function_id=function_id,
            worker_name=worker_name,
            owner_worker_id=owner,
        )
        was = self.worker.state
        events = self.to_worker(self.engine.reject_registration(rejection))
        fatal = code != FUNCTION_NAMESPACE_CONFLICT
        assert events == [
            ev.RegistrationRefused(
                code=code,
                namespace=namespace,
                owner_worker_id=owner,
                fatal=fatal,
                function_id=function_id,
                worker_name=worker_name,
            )
        ]
        assert self.worker.state is (State.CLOSING if fatal else was)

    @precondition(lambda self: self._worker_can_send_new() and not self.dropped)
    @rule()
    def worker_closes(self) -> None:
        self.worker.start_closing()
        assert self.worker.state is State.CLOSING

    @precondition(lambda self: self._engine_can_send_new())
    @rule()
    def engine_closes(self) -> None:
        self.engine.start_closing()
        assert self.engine.state is State.CLOSING

    @precondition(lambda self: self.opened and not self.dropped)
    @rule(worker_first=st.booleans())
    def ping_pong(self, worker_first: bool) -> None:
        if worker_first:
            assert self.to_engine(self.worker.ping()) == [ev.PingReceived()]
            assert self.to_worker(self.engine.pong()) == [ev.PongReceived()]
        else:
            assert self.to_worker(self.engine.ping()) == [ev.PingReceived()]
            assert self.to_engine(self.worker.pong()) == [ev.PongReceived()]

    @precondition(lambda self: self.opened and not self.dropped)
    @rule(data=st.data())
    def misuse_is_refused_without_side_effects(self, data: st.DataObject) -> None:
        """Answering what is not in flight, or starting what the state forbids, raises and
        changes nothing on either side (state, tables, counters)."""
        unknown = str(uuid.UUID(int=0xDEAD_0000 + data.draw(st.integers(0, 99)), version=4))
        before = (snapshot(self.worker), snapshot(self.engine))
        with pytest.raises(LocalProtocolError):
            self.worker.complete(unknown)
        with pytest.raises(LocalProtocolError):
            self.worker.answer_binding(unknown)
        with pytest.raises(LocalProtocolError):
            self.engine.deliver_result(unknown, to_raw(1))
        if self.dispatches:
            with pytest.raises(LocalProtocolError):
                self.engine.dispatch(sorted(self.dispatches)[0], "again")
        if self.worker.state is State.CLOSING:
            with pytest.raises(LocalProtocolError):
                self.worker.call("greet")
            with pytest.raises(LocalProtocolError):
                self.worker.register(RegisterFunction(id="late"))
        if self.engine.state is State.CLOSING:
            with pytest.raises(LocalProtocolError):
                self.engine.dispatch(unknown, "greet")
        if self.opened:
            with pytest.raises(LocalProtocolError):
                self.worker.open_sequence(self.registry, WorkerInfo(name="twice"))
        assert (snapshot(self.worker), snapshot(self.engine)) == before

    # --- the link drops ----------------------------------------------------------------------

    @precondition(lambda self: self.opened and not self.dropped)
    @rule(call_in_transit=st.booleans(), dispatch_in_transit=st.booleans())
    def link_drops(self, call_in_transit: bool, dispatch_in_transit: bool) -> None:
        """Both sides lose the transport, maybe with one frame each way never delivered."""
        lost_call: tuple[str, str] | None = None
        if call_in_transit and self._worker_can_send_new():
            invocation_id, _frame = self.worker.call("greet", to_raw({"lost": True}))
            lost_call = (invocation_id, "greet")
        lost_dispatch: tuple[str, str] | None = None
        if dispatch_in_transit and self.engine.state is State.OPEN:
            invocation_id = self._fresh_dispatch_id()
            self.engine.dispatch(invocation_id, "greet")
            lost_dispatch = (invocation_id, "greet")

        [worker_lost] = self.worker.receive(None)
        [engine_lost] = self.engine.receive(None)
        note(f"worker lost {worker_lost}; engine lost {engine_lost}")
        assert isinstance(worker_lost, ev.ConnectionLost)
        assert isinstance(engine_lost, ev.ConnectionLost)

        # Calls: every call the worker still waited for that reached the engine is one the
        # engine was still answering; the engine also awaits calls the worker forgot.
        worker_calls = set(worker_lost.calls)
        engine_calls = set(engine_lost.calls)
        in_transit = {lost_call} if lost_call else set()
        assert worker_calls == set(self.calls.items()) | in_transit
        assert engine_calls == set(self.calls.items()) | set(self.forgotten.items())
        assert worker_calls - in_transit <= engine_calls
        # Invocations: what the engine dispatched and the worker had received.
        worker_invocations = set(worker_lost.invocations)
        engine_invocations = set(engine_lost.invocations)
        assert worker_invocations == set(self.dispatches.items())
        assert engine_invocations == worker_invocations | (
            {lost_dispatch} if lost_dispatch else set()
        )
        # Bindings awaiting an answer: the same on both sides.
        assert {k for k, _ in worker_lost.bindings} == set(self.bindings)
        assert set(worker_lost.bindings) == set(engine_lost.bindings)

        assert self.worker.state is State.CLOSED
        assert self.engine.state is State.CLOSED
        for table in (*views(self.worker), *views(self.engine)):
            assert not table
        self.dropped = True
        self.calls.clear()
        self.forgotten.clear()
        self.dispatches.clear()
        self.bindings.clear()

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def calls_agree(self) -> None:
        # Every call the worker waits on is awaited by the engine under the same function id;
        # the engine also awaits the ones the worker forgot (their results will be late).
        assert dict(self.worker.pending_calls) == self.calls
        assert dict(self.engine.awaiting_results) == {**self.calls, **self.forgotten}
        assert set(self.worker.pending_calls).isdisjoint(self.forgotten)

    @invariant()
    def invocations_agree(self) -> None:
        assert dict(self.engine.executing) == self.dispatches
        assert dict(self.worker.in_flight) == self.dispatches

    @invariant()
    def bindings_agree(self) -> None:
        assert dict(self.worker.awaiting_binding_answers) == dict(self.engine.forwarded_bindings)
        assert set(self.engine.forwarded_bindings) == set(self.bindings)

    @invariant()
    def states_agree(self) -> None:
        if self.dropped:
            assert self.worker.state is State.CLOSED
            assert self.engine.state is State.CLOSED
        else:
            assert self.worker.state in (State.OPEN, State.CLOSING)
            assert self.engine.state in (State.OPEN, State.CLOSING)
            assert self.worker.worker_id == self.engine.worker_id
            assert self.worker.reattach_token == self.engine.reattach_token

    @invariant()
    def only_bad_ids_are_violations(self) -> None:
        # Nothing either side sent was refused, except the deliberately non-UUID call ids.
        assert self.worker.violations == 0
        assert self.engine.violations == self.bad_calls
        assert self.worker.late_results == self.late_results
        assert self.engine.late_results == 0


PairMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPairMachine = PairMachine.TestCase
