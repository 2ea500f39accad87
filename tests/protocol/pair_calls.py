"""The invocation rules of `PairMachine` (`test_pair_machine.py`), both ways.

Calls the worker makes (sync, void, enqueued, now and then with an id the engine must
refuse), calls it gives up on, and the results or errors the engine delivers for them
(late ones for calls the worker forgot); then dispatches the engine makes (reusing a
caller's id toward the callee, as the engine does) and the worker's results and errors.
Each rule checks that the receiving side produces exactly the event the sender meant.
`PairMachine` adds the set-up, registration, binding and control rules and the invariants.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule
from msgspec import Raw
from pair_harness import (
    PairHarness,
    error_bodies,
    expected_raw,
    function_ids,
    maybe_raw,
    namespaces,
    texts,
    traceparents,
)

from anyiii._protocol import events as ev
from anyiii._protocol.frames import (
    EnqueueAction,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    VoidAction,
    absent_if_none,
    decode_value,
    to_raw,
)
from anyiii._protocol.ids import is_uuid
from anyiii._protocol.state import State
from protocol_model import call_namespace
from strategies import EXACT_JSON


class PairCalls(PairHarness):
    """The rules for calls (worker to engine) and dispatches (engine to worker)."""

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
        assert events == [ev.CallCompleted(invocation_id, function_id, expected_raw(result))]
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
                metadata=expected_raw(metadata),
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
