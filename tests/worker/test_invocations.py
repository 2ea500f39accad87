"""The invocation runner and the pending calls, without any connection.

Admission (not found, stopping, busy) is a plain function of the runner's state, so it is
tested synchronously; running is tested with a recording `answer` in place of a session.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import msgspec
import pytest

from anyiii._errors import InvocationError
from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NOT_FOUND,
    INVOCATION_CANCELLED,
    INVOCATION_FAILED,
    INVOCATION_STOPPED,
    WORKER_BUSY,
    WORKER_STOPPING,
)
from anyiii._protocol.frames import ErrorBody
from anyiii._worker.calls import PendingCalls, call_outcome
from anyiii._worker.handlers import Handler, adapt_handler
from anyiii._worker.invocations import InvocationRunner, WorkerLimits


class _Worker:
    """What `get_context().worker` shows: enough for the runner to build a context."""

    name = "test"
    worker_id = None

    async def trigger_async(self, request: Any) -> Any:
        raise NotImplementedError

    def trigger(self, request: Any) -> Any:
        raise NotImplementedError


def runner_for(handlers: dict[str, Handler], **limits: int) -> InvocationRunner:
    return InvocationRunner(handlers, WorkerLimits(**limits), worker=_Worker())


async def echo(data: Any) -> Any:
    return data


def invocation(function_id: str = "echo", invocation_id: str | None = "id-1") -> Any:
    return ev.InvocationRequested(
        invocation_id=invocation_id, function_id=function_id, data=msgspec.Raw(b'{"a":1}')
    )


# --- admission: synchronous --------------------------------------------------------------


def test_an_unknown_function_is_refused_with_function_not_found() -> None:
    runner = runner_for({})
    refused = runner.admit("nope")
    assert isinstance(refused, ErrorBody)
    assert refused.code == FUNCTION_NOT_FOUND
    assert refused.message == "Function 'nope' not found"
    assert runner.running == 0


def test_a_known_function_is_admitted_and_counted() -> None:
    handler = adapt_handler(echo)
    runner = runner_for({"echo": handler})
    assert runner.admit("echo") is handler
    assert runner.running == 1


def test_a_stopping_runner_refuses_with_worker_stopping() -> None:
    runner = runner_for({"echo": adapt_handler(echo)})
    runner.stopping = True
    refused = runner.admit("echo")
    assert isinstance(refused, ErrorBody)
    assert refused.code == WORKER_STOPPING
    assert runner.running == 0


def test_beyond_concurrency_and_queue_the_runner_is_busy() -> None:
    runner = runner_for({"echo": adapt_handler(echo)}, max_concurrency=2, max_queued=1)
    admitted = [runner.admit("echo") for _ in range(3)]
    assert all(isinstance(a, Handler) for a in admitted)
    refused = runner.admit("echo")
    assert isinstance(refused, ErrorBody)
    assert refused.code == WORKER_BUSY
    assert runner.rejected_busy == 1
    assert runner.running == 3


def test_not_found_wins_over_busy_and_stopping() -> None:
    """The order of the rules: a caller learns the function is missing first."""
    runner = runner_for({"echo": adapt_handler(echo)}, max_concurrency=1, max_queued=0)
    runner.admit("echo")
    runner.stopping = True
    refused = runner.admit("nope")
    assert isinstance(refused, ErrorBody)
    assert refused.code == FUNCTION_NOT_FOUND
    assert runner.rejected_busy == 0


# --- running -----------------------------------------------------------------------------


class Answers:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, ErrorBody | None]] = []

    def __call__(self, invocation_id: str, result: Any, error: ErrorBody | None) -> None:
        self.sent.append((invocation_id, result, error))


async def run_one(runner: InvocationRunner, function_id: str, **kw: Any) -> Answers:
    answers = Answers()
    handler = runner.admit(function_id)
    assert isinstance(handler, Handler)
    await runner.run(handler, invocation(function_id, **kw), answers)
    return answers


async def test_a_result_is_answered_once_and_the_runner_is_idle_again() -> None:
    runner = runner_for({"echo": adapt_handler(echo)})
    answers = await run_one(runner, "echo")
    assert [(i, bytes(r), e) for i, r, e in answers.sent] == [("id-1", b'{"a":1}', None)]
    assert runner.running == 0
    with anyio.fail_after(1):
        await runner.wait_idle()


async def test_an_exception_is_answered_as_invocation_failed_with_its_stacktrace() -> None:
    async def boom(data: Any) -> Any:
        raise KeyError("missing")

    answers = await run_one(runner_for({"boom": adapt_handler(boom)}), "boom")
    [(_, result, error)] = answers.sent
    assert result is None
    assert error is not None
    assert error.code == INVOCATION_FAILED
    assert "KeyError" in (error.stacktrace or "")


async def test_an_unencodable_result_is_an_error_not_a_crash() -> None:
    async def opaque(data: Any) -> Any:
        return object()

    answers = await run_one(runner_for({"opaque": adapt_handler(opaque)}), "opaque")
    [(_, _, error)] = answers.sent
    assert error is not None
    assert error.code == INVOCATION_FAILED
    assert "encoded as JSON" in error.message


async def test_a_void_invocation_gets_no_answer_even_when_it_fails() -> None:
    async def boom(data: Any) -> Any:
        raise ValueError("no")

    answers = await run_one(runner_for({"boom": adapt_handler(boom)}), "boom", invocation_id=None)
    assert answers.sent == []


async def test_plain_handlers_run_in_a_worker_thread() -> None:
    loop_thread = threading.get_ident()

    def where(data: Any) -> int:
        return threading.get_ident()

    answers = await run_one(runner_for({"where": adapt_handler(where)}), "where")
    [(_, result, _)] = answers.sent
    assert msgspec.json.decode(result) != loop_thread


async def test_drain_waits_for_running_handlers_then_cancels_within_its_bounds() -> None:
    started = anyio.Event()

    async def stuck(data: Any) -> Any:
        started.set()
        await anyio.sleep_forever()

    runner = runner_for({"stuck": adapt_handler(stuck)})
    answers = Answers()
    async with anyio.create_task_group() as tasks:
        handler = runner.admit("stuck")
        assert isinstance(handler, Handler)
        invocations = await tasks.start(runner.host)
        invocations.start_soon(runner.run, handler, invocation("stuck"), answers)
        await started.wait()
        with anyio.fail_after(5):
            await runner.drain(0.05, 1.0)
    assert [e.code for _, _, e in answers.sent if e is not None] == [INVOCATION_CANCELLED]
    assert runner.running == 0
    refused = runner.admit("stuck")
    assert isinstance(refused, ErrorBody)
    assert refused.code == WORKER_STOPPING


# --- pending calls -------------------------------------------------------------------------


def test_a_pending_call_takes_its_own_answer_and_ignores_a_second() -> None:
    pending = PendingCalls()
    first, second = pending.open("a"), pending.open("b")
    pending.resolve("b", msgspec.Raw(b"2"), None)
    pending.resolve("b", msgspec.Raw(b"3"), None)
    assert not first.resolved
    assert call_outcome(second, "f", "b") == 2
    assert len(pending) == 2
    pending.close("b")
    pending.resolve("b", msgspec.Raw(b"4"), None)  # late: nobody waits, nothing breaks
    assert len(pending) == 1


def test_losing_the_connection_fails_every_pending_call() -> None:
    pending = PendingCalls()
    slots = [pending.open(str(n)) for n in range(3)]
    pending.fail_all(ErrorBody(INVOCATION_STOPPED, "lost"))
    for n, slot in enumerate(slots):
        with pytest.raises(InvocationError) as caught:
            call_outcome(slot, "f", str(n))
        assert caught.value.code == INVOCATION_STOPPED
        assert caught.value.invocation_id == str(n)


async def test_drain_gives_cancelled_handlers_only_the_cancel_grace() -> None:
    """A handler that keeps working after its cancellation does not hold drain past its
    bound: drain returns after `grace + cancel_grace`, whatever the handler does."""
    started, release = anyio.Event(), anyio.Event()

    async def lingering(data: Any) -> Any:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await release.wait()

    runner = runner_for({"lingering": adapt_handler(lingering)})
    async with anyio.create_task_group() as tasks:
        handler = runner.admit("lingering")
        assert isinstance(handler, Handler)
        invocations = await tasks.start(runner.host)
        invocations.start_soon(runner.run, handler, invocation("lingering"), Answers())
        await started.wait()
        with anyio.fail_after(5):
            await runner.drain(0.01, 0.05)
        assert runner.running == 1  # drain gave up on it, as bounded
        release.set()
    assert runner.running == 0
