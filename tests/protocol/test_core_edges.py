"""Edge cases of the cores found by the state machines, pinned as plain tests."""

from __future__ import annotations

from anyiii._protocol import events as ev
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import RegisterTrigger, WorkerRegistered, encode_frame
from anyiii._protocol.state import State
from anyiii._protocol.worker import WorkerConnection

WORKER_ID = "3f2b8c1e-9d4a-4e7b-8c21-5a6f0d9e7b13"
TOKEN = "b7e4d2a9-1c3f-4a8e-9b60-2d7c5e8f1a04"


def test_a_handshake_arriving_while_closing_is_still_recorded() -> None:
    """The id and token are what let the next connection reattach, so a worker that began
    closing before `workerregistered` arrived must still keep them."""
    worker = WorkerConnection()
    worker.start_closing()
    events = worker.receive(
        encode_frame(WorkerRegistered(worker_id=WORKER_ID, reattach_token=TOKEN))
    )
    assert events == [ev.Registered(WORKER_ID, TOKEN, ())]
    assert (worker.worker_id, worker.reattach_token) == (WORKER_ID, TOKEN)
    assert worker.state is State.CLOSING


def test_a_second_handshake_is_a_violation_and_changes_nothing() -> None:
    worker = WorkerConnection()
    worker.receive(encode_frame(WorkerRegistered(worker_id=WORKER_ID, reattach_token=TOKEN)))
    other = "00000000-0000-4000-8000-000000000009"
    [violation] = worker.receive(encode_frame(WorkerRegistered(worker_id=other)))
    assert isinstance(violation, ev.ProtocolViolation)
    assert worker.worker_id == WORKER_ID


def test_an_unreadable_binding_answer_counts_as_a_refusal() -> None:
    """A provider's answer that cannot be decoded must not leave its binding waiting for an
    answer that already came."""
    engine = EngineConnection(WORKER_ID, TOKEN)
    engine.start()
    engine.forward_binding(RegisterTrigger(id="t-1", trigger_type="webhook", function_id="f"))
    events = engine.receive(
        b'{"type":"triggerregistrationresult","id":"t-1","trigger_type":"webhook",'
        b'"function_id":"f","error":{"code":5}}'
    )
    assert isinstance(events[0], ev.ProtocolViolation)
    [answered] = [e for e in events if isinstance(e, ev.BindingAnswered)]
    assert answered.frame.error is not None
    assert answered.frame.error.code == "malformed_frame"
    assert engine.forwarded_bindings == {}
    assert engine.state is State.OPEN
