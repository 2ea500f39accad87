"""Fault tests with a real engine process: killed mid-call, killed and restarted on the same
port, gone for good, stopped with SIGTERM; and a caller timeout across it.

The engine is `python -m anyiii engine` in a subprocess (on asyncio; the CLI's own tests
cover its trio backend); the workers are anyiii workers in this process, on asyncio and on
trio, talking to it over real sockets.
"""

from __future__ import annotations

import signal
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from engine_process import engine_process

import anyiii

FAST_RECONNECT = anyiii.ReconnectConfig(initial_delay=0.05, max_delay=0.2, jitter=0.0)
QUICK_EXIT: dict[str, Any] = {"drain_timeout": 1.0, "close_timeout": 1.0}


async def applied(worker: anyiii.Worker) -> None:
    """A round trip on `worker`'s connection: the engine has applied what it sent before."""
    await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})


async def test_an_engine_killed_mid_call_fails_the_call_at_once() -> None:
    started, handler_ended = anyio.Event(), anyio.Event()
    cancelled: list[bool] = []

    async def slow(data: Any) -> str:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        finally:
            handler_ended.set()
        return "never"

    with anyio.fail_after(30):
        async with engine_process("asyncio") as engine:
            async with (
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT, **QUICK_EXIT) as callee,
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT, **QUICK_EXIT) as caller,
            ):
                callee.register_function("slow::forever", slow)
                await applied(callee)
                outcome: list[BaseException] = []

                async def call() -> None:
                    try:
                        await caller.trigger_async(
                            {"function_id": "slow::forever", "payload": None, "timeout_ms": 30_000}
                        )
                    except anyiii.InvocationError as error:
                        outcome.append(error)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(call)
                    await started.wait()
                    began = anyio.current_time()
                    engine.process.kill()
                    with anyio.fail_after(5):  # far below the call's 30 s timeout
                        await handler_ended.wait()
                elapsed = anyio.current_time() - began
                [error] = outcome
                assert isinstance(error, anyiii.InvocationError)
                assert error.code == "invocation_stopped"
                assert elapsed < 5
                assert cancelled == [True]  # the callee's handler did not run on forever
                assert caller.statistics().pending_calls == 0
                assert callee.statistics().running_invocations == 0


async def test_a_restarted_engine_gets_the_functions_and_triggers_back() -> None:
    states: list[anyiii.ConnectionState] = []
    with anyio.fail_after(60):
        async with engine_process("asyncio") as first:
            port = first.url.rsplit(":", 1)[1]
            async with (
                anyiii.connect(first.url, reconnect=FAST_RECONNECT, **QUICK_EXIT) as server,
                anyiii.connect(first.url, reconnect=FAST_RECONNECT, **QUICK_EXIT) as client,
            ):
                server.on_connection_state_change(states.append)

                @server.function("shop::price")
                async def price(data: dict[str, int]) -> dict[str, int]:
                    return {"cents": data["n"] * 250}

                @server.function("shop::http")
                async def http_price(req: anyiii.ApiRequest) -> anyiii.ApiResponse:
                    cents = int(req.path_params["n"]) * 250
                    return anyiii.ApiResponse(statusCode=200, body={"cents": cents})

                await server.register_trigger(
                    "http", "shop::http", {"api_path": "price/:n", "http_method": "GET"}
                )
                await applied(server)
                assert await client.trigger_async(
                    {"function_id": "shop::price", "payload": {"n": 2}}
                ) == {"cents": 500}

                reconnected, lost_again = anyio.Event(), anyio.Event()

                def watch(state: anyiii.ConnectionState) -> None:
                    if state == "connected":
                        reconnected.set()
                    elif state == "reconnecting" and reconnected.is_set():
                        lost_again.set()

                server.on_connection_state_change(watch)
                first.process.kill()
                await first.process.wait()
                async with engine_process("asyncio", "--port", port) as second:
                    assert second.url == first.url
                    await reconnected.wait()
                    await applied(server)  # its replayed registrations are in
                    # The client reconnects on its own schedule: its calls wait for it.
                    result = await client.trigger_async(
                        {"function_id": "shop::price", "payload": {"n": 4}}
                    )
                    assert result == {"cents": 1000}
                    bound = await client.trigger_async(
                        {
                            "function_id": "engine::registered-triggers::list",
                            "payload": {"trigger_type": "http"},
                        }
                    )
                    assert [t["function_id"] for t in bound["registered_triggers"]] == [
                        "shop::http"
                    ]
                    async with httpx.AsyncClient(base_url=second.http_url) as http:
                        response = await http.get("/price/3")
                    assert (response.status_code, response.json()) == (200, {"cents": 750})
                # The second engine is gone: the worker notices before its block ends (how
                # soon is the scheduler's business, so the test waits for it).
                await lost_again.wait()
    # From the kill: reconnecting (however many attempts), connected to the new engine;
    # reconnecting again when the second engine went away at the end of its block, and
    # disconnected when the workers' block ended.
    expected = ["reconnecting", "connected", "reconnecting", "disconnected"]
    assert [str(state) for state in states] == expected


async def test_an_engine_gone_for_good_ends_a_non_reconnecting_worker() -> None:
    with anyio.fail_after(30):
        async with engine_process("asyncio") as engine:

            async def serve_until_the_engine_dies() -> None:
                async with anyiii.connect(engine.url, reconnect=False, **QUICK_EXIT) as worker:
                    worker.register_function("idle::f", lambda data: None)
                    await applied(worker)
                    engine.process.kill()
                    with anyio.fail_after(5):
                        await worker.serve_forever()

            with pytest.raises(anyiii.ConnectionClosed):
                await serve_until_the_engine_dies()


async def test_a_caller_timeout_across_the_engine_drops_the_late_answer() -> None:
    release = anyio.Event()
    with anyio.fail_after(30):
        async with (
            engine_process("asyncio") as engine,
            anyiii.connect(engine.url, reconnect=False, **QUICK_EXIT) as callee,
            anyiii.connect(engine.url, reconnect=False, **QUICK_EXIT) as caller,
        ):

            async def held(data: Any) -> str:
                await release.wait()
                return "late"

            callee.register_function("slow::held", held)
            await applied(callee)
            with pytest.raises(anyiii.InvocationError) as caught:
                await caller.trigger_async(
                    {"function_id": "slow::held", "payload": None, "timeout_ms": 200}
                )
            assert caught.value.code == "TIMEOUT"
            assert caller.statistics().pending_calls == 0
            release.set()
            # The handler answers (synchronously, as it returns) before its invocation stops
            # counting as running; no event marks that moment, so look at the counter.
            while callee.statistics().running_invocations:
                await anyio.lowlevel.checkpoint()
            await applied(callee)  # its answer reached the engine and was routed on
            await applied(caller)  # ... and arrived here before this round trip's answer
            assert caller.statistics().late_results == 1
            assert callee.statistics().running_invocations == 0


async def test_sigterm_answers_calls_in_flight_then_exits_cleanly() -> None:
    started = anyio.Event()

    async def slow(data: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(30):
        async with engine_process("asyncio") as engine:
            async with (
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT, **QUICK_EXIT) as callee,
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT, **QUICK_EXIT) as caller,
            ):
                callee.register_function("slow::forever", slow)
                await applied(callee)
                errors: list[anyiii.InvocationError] = []

                async def call() -> None:
                    try:
                        await caller.trigger_async({"function_id": "slow::forever", "payload": 1})
                    except anyiii.InvocationError as error:
                        errors.append(error)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(call)
                    await started.wait()
                    assert await engine.stop(signal.SIGTERM) == 0
                [error] = errors
                assert error.code == "invocation_stopped"
            await engine.wait_for_log(r"received SIGTERM; shutting down")
