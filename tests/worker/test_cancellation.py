"""Cancellation at every await point, in httpcore's style (tests/test_cancellations.py).

A fake transport blocks forever at one chosen point (opening, sending, receiving, closing);
the test cancels there with a short `move_on_after` and then checks that nothing leaked:
no pending call, no running handler, the transport closed, and the `connect()` block left
within its bounds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
import pytest

import anyiii
from anyiii._protocol.frames import WorkerRegistered, encode_frame
from anyiii.engine import EmbeddedEngine

WORKER_ID = "3f2b8c1e-9d4a-4e7b-8c21-5a6f0d9e7b13"


class StallingTransport:
    """A Transport whose chosen operation never completes (until cancelled)."""

    def __init__(self, stall: str) -> None:
        self.stall = stall
        self.closed = False
        self.sent: list[bytes] = []
        self._inbox = [encode_frame(WorkerRegistered(worker_id=WORKER_ID))]

    async def send(self, message: bytes, *, deadline: float = float("inf")) -> None:
        if self.stall == "send":
            await anyio.sleep_forever()
        self.sent.append(message)

    def send_nowait(self, message: bytes) -> None:
        self.sent.append(message)

    def offer(self, message: bytes) -> bool:
        # Always "no room", so that every call goes through `send`, where `stall` applies.
        return False

    async def run_writer(self) -> None:
        await anyio.sleep_forever()

    async def receive(self) -> bytes:
        if self._inbox:
            return self._inbox.pop()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def receive_some(self) -> list[bytes]:
        return [await self.receive()]

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True
        if self.stall == "close":
            await anyio.sleep_forever()

    close_code: int | None = None
    close_reason: str | None = None
    path = "/"
    remote_address: str | None = None
    request_headers: Mapping[str, str] = {}

    async def __aenter__(self) -> StallingTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.move_on_after(0.5, shield=True):
            await self.aclose()


def opener_for(transport: StallingTransport, stall_open: bool = False):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def opener() -> AsyncIterator[StallingTransport]:
        if stall_open:
            await anyio.sleep_forever()
        async with transport:
            yield transport

    return opener


async def test_cancelled_while_opening() -> None:
    transport = StallingTransport("nothing")
    with anyio.fail_after(10):
        with anyio.move_on_after(0.05) as scope:
            async with anyiii.connect(transport=opener_for(transport, stall_open=True)):
                raise AssertionError("the block must not start")
        assert scope.cancelled_caught
        assert transport.sent == []  # nothing was ever sent


async def test_cancelled_while_a_call_is_being_sent() -> None:
    transport = StallingTransport("send")
    with anyio.fail_after(10):
        async with anyiii.connect(transport=opener_for(transport), close_timeout=0.2) as w:
            with anyio.move_on_after(0.05) as scope:
                await w.trigger_async({"function_id": "any::thing"})
            assert scope.cancelled_caught
            assert w.statistics().pending_calls == 0
    assert transport.closed


async def test_cancelled_while_waiting_for_the_result() -> None:
    transport = StallingTransport("nothing")
    with anyio.fail_after(10):
        async with anyiii.connect(transport=opener_for(transport), close_timeout=0.2) as w:
            with anyio.move_on_after(0.05) as scope:
                await w.trigger_async({"function_id": "any::thing"})
            assert scope.cancelled_caught
            assert w.statistics().pending_calls == 0
            assert any(b'"any::thing"' in frame for frame in transport.sent)  # it went out
    assert transport.closed


async def test_cancelled_while_closing_is_still_bounded() -> None:
    transport = StallingTransport("close")
    with anyio.fail_after(10):
        started = anyio.current_time()
        async with anyiii.connect(
            transport=opener_for(transport), drain_timeout=0.1, close_timeout=0.2
        ):
            pass
        assert anyio.current_time() - started < 5
    assert transport.closed


@pytest.mark.parametrize("point", ["right away", "once the handler runs"])
async def test_handler_cancelled_by_the_caller_scope_leaves_nothing_running(point: str) -> None:
    """A caller that gives up does not leak on either side (real engine and sockets)."""
    with anyio.fail_after(20):
        engine: EmbeddedEngine
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url, drain_timeout=0.2) as callee,
            anyiii.connect(engine.url) as caller,
        ):
            entered = anyio.Event()
            right_away = point == "right away"

            @callee.function("block")
            async def block(data: object) -> None:
                entered.set()
                await anyio.sleep_forever()

            await caller.trigger_async({"function_id": "engine::functions::list"})
            with anyio.move_on_after(0.05 if right_away else 5):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(
                        caller.trigger_async, {"function_id": "block", "timeout_ms": 60_000}
                    )
                    if not right_away:
                        await entered.wait()
                    tasks.cancel_scope.cancel()
            assert caller.statistics().pending_calls == 0
        assert callee.statistics().running_invocations == 0  # cancelled at the block's exit


@pytest.mark.parametrize("kind", ["call", "void", "void_batch"])
async def test_a_call_inside_an_already_cancelled_scope_is_never_sent(kind: str) -> None:
    # The call is cancelled before it starts: nothing may reach the engine, so the callee
    # must not run (a write queued without an await would otherwise still go out).
    ran: list[str] = []

    async def callee(payload: str) -> str:
        ran.append(payload)
        return payload

    request: dict[str, object] = {"function_id": "cancel::callee", "payload": "cancelled"}
    if kind == "void":
        request["action"] = anyiii.TriggerAction.Void()
    with anyio.fail_after(10):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            worker.register_function("cancel::callee", callee)
            assert await worker.trigger_async({"function_id": "cancel::callee", "payload": "a"})
            for _ in range(20):
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    if kind == "void_batch":
                        await worker.trigger_void_batch([request, request])
                    else:
                        await worker.trigger_async(request)
                assert scope.cancelled_caught
            # Frames of one connection are handled in order: had any been sent, the callee
            # would have seen it before this call.
            assert await worker.trigger_async({"function_id": "cancel::callee", "payload": "b"})
    assert ran == ["a", "b"]
