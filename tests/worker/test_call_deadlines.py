"""Call deadlines: the pending-call table times calls out (no cancel scope per call).

`trigger_async` sets no timer of its own once its frame is sent: `PendingCalls` keeps the
deadlines in a heap and one task per connection answers `TIMEOUT` when one passes. These
tests hold that design to the guarantees of the scope it replaced: the timeout fires on
time even behind a later deadline, the connection's core forgets the call (a late answer
is counted and dropped), and the heap stays bounded by the calls in flight.
"""

from __future__ import annotations

import math
import time

import anyio
import msgspec
import pytest

import anyiii
from anyiii._protocol.codes import TIMEOUT
from anyiii._protocol.frames import ErrorBody
from anyiii._worker.calls import PendingCalls, call_outcome


def test_expire_answers_only_the_calls_whose_deadline_passed() -> None:
    pending = PendingCalls()
    early, late, open_ended = (
        pending.open("a", 1.0, 1000),
        pending.open("b", 2.0, 2000),
        (pending.open("c")),
    )
    assert pending.expire(0.5) == 1.0
    assert not early.resolved
    assert pending.expire(1.0) == 2.0
    with pytest.raises(anyiii.InvocationError) as caught:
        call_outcome(early, "f", "a")
    assert caught.value.code == TIMEOUT
    assert "1000ms" in str(caught.value)
    assert not late.resolved
    assert not open_ended.resolved
    pending.resolve("b", msgspec.Raw(b"1"), None)  # answered before its deadline
    assert pending.expire(5.0) == math.inf
    assert late.error is None  # the answer stands; the expired entry did nothing
    assert not open_ended.resolved


def test_the_heap_stays_bounded_by_the_calls_in_flight() -> None:
    """Answered calls leave entries behind until their deadline; compaction keeps the heap
    within twice the open slots plus the slack, however many calls went through."""
    pending = PendingCalls()
    in_flight = 100
    for n in range(50_000):
        pending.open(str(n), 30.0, 30_000)
        if n >= in_flight:
            pending.close(str(n - in_flight))
        assert len(pending._deadlines) <= 2 * (in_flight + 1) + PendingCalls.COMPACT_SLACK
    assert len(pending) == in_flight


def test_losing_the_connection_forgets_every_deadline() -> None:
    pending = PendingCalls()
    slots = [pending.open(str(n), 10.0 + n, 1) for n in range(5)]
    pending.fail_all(ErrorBody("invocation_stopped", "lost"))
    assert all(slot.resolved for slot in slots)
    assert pending._deadlines == []


async def test_a_short_timeout_fires_on_time_behind_a_long_one() -> None:
    """The expiry task sleeps until the earliest deadline: a call with a short timeout,
    made while a long one waits, wakes it early."""
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:

            @w.function("never")
            async def never(data: object) -> None:
                await anyio.sleep_forever()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(w.trigger_async, {"function_id": "never", "timeout_ms": 60_000})
                while w.statistics().pending_calls == 0:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                started = time.monotonic()
                with pytest.raises(anyiii.InvocationError) as caught:
                    await w.trigger_async({"function_id": "never", "timeout_ms": 200})
                elapsed = time.monotonic() - started
                tasks.cancel_scope.cancel()
            assert caught.value.code == TIMEOUT
            assert caught.value.invocation_id is not None
            assert 0.15 <= elapsed < 5


async def test_a_timed_out_call_is_forgotten_and_its_late_answer_dropped() -> None:
    with anyio.fail_after(20):
        async with anyiii.engine.run(http_port=None) as engine, anyiii.connect(engine.url) as w:
            release = anyio.Event()

            @w.function("slow")
            async def slow(data: object) -> str:
                await release.wait()
                return "late"

            with pytest.raises(anyiii.InvocationError) as caught:
                await w.trigger_async({"function_id": "slow", "timeout_ms": 100})
            assert caught.value.code == TIMEOUT
            assert w.statistics().pending_calls == 0
            release.set()
            # The runtime has no event for its counters; poll, bounded by fail_after.
            while w.statistics().late_results == 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            assert w.statistics().late_results == 1
            assert await w.trigger_async({"function_id": "slow"}) == "late"
