"""Leaving `connect()` is bounded by its documented waits, each of which is a setting.

A handler that never finishes holds the drain for `drain_timeout`; a trigger handler whose
`unregister_trigger` never returns holds the release for `release_timeout`. Leaving the
block must wait out both, and never more than the sum of the four documented waits.
"""

from __future__ import annotations

import anyio
import pytest

import anyiii

DRAIN, CANCEL, CLOSE, RELEASE = 0.3, 0.3, 0.3, 0.3
SLACK = 2.0  # scheduling on a loaded 2-core CI machine; far below what a missed bound costs


class StuckUnregister(anyiii.TriggerHandler):
    """Accepts every binding; dropping one never finishes."""

    def __init__(self) -> None:
        self.accepted = anyio.Event()

    async def register_trigger(self, config: anyiii.TriggerConfig) -> None:
        self.accepted.set()

    async def unregister_trigger(self, config: anyiii.TriggerConfig) -> None:
        await anyio.sleep_forever()


async def test_leaving_waits_for_drain_and_release_and_no_longer_than_the_sum() -> None:
    handler_started = anyio.Event()
    caller_errors: list[str] = []

    async def stuck(data: object) -> None:
        handler_started.set()
        await anyio.sleep_forever()

    async def call_stuck(caller: anyiii.Worker) -> None:
        with pytest.raises(anyiii.InvocationError) as caught:
            await caller.trigger_async({"function_id": "slow::stuck", "payload": {}})
        caller_errors.append(caught.value.code)

    trigger_handler = StuckUnregister()
    with anyio.fail_after(30):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url) as caller,
            anyio.create_task_group() as tasks,
        ):
            async with anyiii.connect(
                engine.url,
                drain_timeout=DRAIN,
                cancel_timeout=CANCEL,
                close_timeout=CLOSE,
                release_timeout=RELEASE,
            ) as worker:
                worker.register_function("slow::stuck", stuck)
                worker.register_trigger_type("stuck::type", trigger_handler)
                worker.register_function("app::target", lambda data: None)
                await worker.trigger_async(
                    {
                        "function_id": "engine::register_trigger",
                        "payload": {"trigger_type": "stuck::type", "function_id": "app::target"},
                    }
                )
                await trigger_handler.accepted.wait()
                tasks.start_soon(call_stuck, caller)
                await handler_started.wait()
                started = anyio.current_time()
            elapsed = anyio.current_time() - started
    assert caller_errors == ["invocation_cancelled"]
    assert elapsed >= DRAIN + RELEASE - 0.05, elapsed
    assert elapsed <= DRAIN + CANCEL + CLOSE + RELEASE + SLACK, elapsed


@pytest.mark.parametrize("name", ["drain", "cancel", "close", "release"])
async def test_a_negative_shutdown_timeout_is_refused_before_connecting(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}_timeout"):
        async with anyiii.connect("ws://127.0.0.1:9", **{f"{name}_timeout": -1.0}):
            pass  # pragma: no cover -- never entered
