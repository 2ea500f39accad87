"""A hung engine (a real `anyiii engine` process stopped with SIGSTOP: alive, its sockets
open, answering nothing) is noticed by a worker with the default keepalive within a few
seconds, and the calls it was waiting on fail with `invocation_stopped`.

Before the defaults were shortened (pings every 20 s, 20 s to answer), this took ~39 s.
"""

from __future__ import annotations

import signal

import anyio
from engine_process import engine_process

import anyiii
from anyiii._worker.lifecycle import PING_INTERVAL, PING_TIMEOUT


async def test_a_stopped_engine_fails_pending_calls_within_the_keepalive_bound(
    anyio_backend: tuple[str, object],
) -> None:
    bound = PING_INTERVAL + PING_TIMEOUT
    assert bound <= 10, "'a few seconds' by default"
    started, failed = anyio.Event(), anyio.Event()
    failures: list[anyiii.InvocationError] = []
    retry = anyiii.ReconnectConfig(initial_delay=0.05, max_delay=0.2)
    async with (
        engine_process(anyio_backend[0]) as engine,
        anyiii.connect(engine.url, reconnect=retry) as callee,
        anyiii.connect(engine.url, reconnect=retry) as caller,
    ):

        async def hold(payload: object) -> None:
            started.set()
            await anyio.sleep_forever()

        callee.register_function("hung::hold", hold)
        await caller.trigger_async({"function_id": "engine::functions::list", "payload": {}})

        async def call() -> None:
            try:
                await caller.trigger_async(
                    {"function_id": "hung::hold", "payload": 1, "timeout_ms": 600_000}
                )
            except anyiii.InvocationError as error:
                failures.append(error)
            failed.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(call)
            await started.wait()
            engine.process.send_signal(signal.SIGSTOP)
            stopped_at = anyio.current_time()
            try:
                with anyio.fail_after(bound + 3):
                    await failed.wait()
                noticed_after = anyio.current_time() - stopped_at
            finally:
                engine.process.send_signal(signal.SIGCONT)
        # Resumed, the engine is reached again: the worker reconnected on its own.
        with anyio.fail_after(10):
            async for state in caller.connection_states():
                if state is anyiii.ConnectionState.CONNECTED:
                    break
    assert [error.code for error in failures] == ["invocation_stopped"]
    assert noticed_after <= bound + 1
