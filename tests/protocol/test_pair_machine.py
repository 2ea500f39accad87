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

The rules are split by purpose along the class hierarchy (Hypothesis collects rules and
invariants from base classes too, as for `protocol_model.CoreModel`): `PairHarness`
(`pair_harness.py`) holds the two cores, the model and the plumbing; `PairCalls`
(`pair_calls.py`) adds the rules for calls and dispatches; `PairMachine` here adds the
set-up, registrations, trigger bindings, rejections, closing and control, the link drop,
and the invariants.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule
from pair_calls import PairCalls
from pair_harness import (
    error_bodies,
    function_ids,
    namespaces,
    register_functions,
    register_trigger_types,
    register_triggers,
    registrations,
    texts,
    trigger_ids,
    type_ids,
    worker_infos,
)

from anyiii._errors import LocalProtocolError
from anyiii._protocol import events as ev
from anyiii._protocol.codes import FUNCTION_NAMESPACE_CONFLICT
from anyiii._protocol.frames import (
    NULL,
    ErrorBody,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    to_raw,
)
from anyiii._protocol.registry import WorkerInfo
from anyiii._protocol.state import State
from protocol_model import snapshot, views


class PairMachine(PairCalls):
    """The whole machine: the call and dispatch rules of `PairCalls`, and the rest."""

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
