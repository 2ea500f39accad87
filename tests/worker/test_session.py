"""One connection's session: the core's state is the one answer to "is this link usable".

A fake transport whose writes fail stands in for a link that broke under us; the session
must mark its sans-IO core broken on every send path, so nothing else is ever sent on it.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from anyiii._errors import ConnectionClosed, InvocationError
from anyiii._protocol.codes import INVOCATION_STOPPED
from anyiii._protocol.frames import RegisterFunction
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.state import State
from anyiii._protocol.worker import WorkerConnection
from anyiii._worker.calls import PendingCalls, call_outcome, parse_request
from anyiii._worker.invocations import InvocationRunner, WorkerLimits
from anyiii._worker.session import Session

INFO = WorkerInfo(name="test", runtime="python", version="0", os="test", pid=1)


class BrokenTransport:
    """A transport whose every write fails, as after the peer vanished."""

    def __init__(self) -> None:
        self.writes = 0

    def send_nowait(self, message: bytes) -> None:
        self.writes += 1
        raise ConnectionClosed(1006, "gone")

    def offer(self, message: bytes) -> bool:
        self.writes += 1
        raise ConnectionClosed(1006, "gone")

    async def send(self, message: bytes, *, deadline: float = float("inf")) -> None:
        self.writes += 1
        raise ConnectionClosed(1006, "gone")


def session_on(transport: Any) -> tuple[Session, PendingCalls, list[Session]]:
    core = WorkerConnection(namespace=None)
    core.open_sequence(Registry(), INFO)
    pending = PendingCalls()
    lost: list[Session] = []
    session = Session(
        transport,
        core,
        runner=InvocationRunner({}, WorkerLimits()),
        pending=pending,
        trigger_handlers={},
        on_registered=lambda worker_id, token: None,
        on_fatal=lambda error: None,
        on_lost=lost.append,
    )
    return session, pending, lost


def test_a_failed_queued_write_marks_the_core_broken() -> None:
    transport = BrokenTransport()
    session, _, _ = session_on(transport)
    assert session.usable
    session.send_nowait(b"{}")
    assert session.core.state is State.ERROR
    assert not session.usable
    assert not session.open_for_new_work


def test_a_broken_session_sends_no_registration_and_no_answer() -> None:
    transport = BrokenTransport()
    session, _, _ = session_on(transport)
    session.send_nowait(b"{}")
    writes = transport.writes
    session.send_registration(lambda core: core.register(RegisterFunction(id="f")))
    session.answer("00000000-0000-4000-8000-000000000000", msgspec.Raw(b"1"), None)
    assert transport.writes == writes


async def test_a_failed_call_write_marks_the_core_broken_and_raises() -> None:
    transport = BrokenTransport()
    session, pending, _ = session_on(transport)
    request = parse_request({"function_id": "f", "payload": 1})
    with pytest.raises(ConnectionClosed):
        await session.call(request, (None, None))
    assert session.core.state is State.ERROR
    assert len(pending) == 0  # the call stopped waiting; nothing is left behind


def test_losing_the_connection_reports_it_and_fails_waiting_calls() -> None:
    session, pending, lost = session_on(BrokenTransport())
    slot = pending.open("a")
    session._lose()
    assert lost == [session]
    assert slot.resolved
    with pytest.raises(InvocationError) as caught:
        call_outcome(slot, "f", "a")
    assert caught.value.code == INVOCATION_STOPPED
    assert not session.usable


class RecordingTransport:
    """Records queued frames; its writer (not run here) would flush them together."""

    def __init__(self) -> None:
        self.queued: list[bytes] = []

    def send_nowait(self, message: bytes) -> None:
        self.queued.append(message)

    async def send(self, message: bytes, *, deadline: float = float("inf")) -> None:
        raise AssertionError("a batch must not write frame by frame")


def test_a_batch_of_void_calls_is_queued_whole_before_anything_is_written() -> None:
    """`queue_void_calls` is synchronous: every frame is queued before the writer can run,
    so the transport's writer sends them in one write (group commit)."""
    transport = RecordingTransport()
    session, _, _ = session_on(transport)
    session.core.receive(
        b'{"type":"workerregistered","worker_id":"00000000-0000-4000-8000-000000000001"}'
    )
    requests = [parse_request({"function_id": f"f{n}", "payload": n}) for n in range(3)]
    before = len(transport.queued)
    session.queue_void_calls(requests, (None, None))
    frames = [msgspec.json.decode(frame) for frame in transport.queued[before:]]
    assert [frame["function_id"] for frame in frames] == ["f0", "f1", "f2"]
    assert all(frame["action"] == {"type": "void"} for frame in frames)
