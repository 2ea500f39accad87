"""Bad input never hurts the engine: bad calls that name an invocation (spec §1.1, §1.2, §15,
§16.1 "never close the socket on a bad frame").

Calls with invocation ids that are not UUIDs and malformed calls naming a UUID are
answered (`invalid_invocation_id`, `malformed_frame`), never met with silence; results for
unknown invocations are dropped, a result forged for another worker's invocation is
ignored, a call reusing an id in flight steals nothing, and a handler's error reaches its
caller unchanged. The abuser is a raw connection beside a well-behaved worker
(`bad_input_support`); the router's tables are checked after each abuse.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from bad_input_support import (
    A_UUID,
    abuser,
    assert_no_junk_dispatched,
    engine_and_good_worker,
    tables_with_abuser,
    tables_without_abuser,
)
from engine_peers import Fail, barrier, call_frame, decode, encode, new_id, raw_worker

from anyiii._protocol.frames import decode_value, to_raw

# --- bad calls that name an invocation: answered, never silence ---------------------------------


@pytest.mark.parametrize(
    "invocation_id",
    ["not-a-uuid", "", "42", "{" + A_UUID + "}", A_UUID + "0", A_UUID.replace("-", "_")],
)
async def test_call_with_a_non_uuid_invocation_id_is_answered_invalid_invocation_id(
    invocation_id: str,
) -> None:
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            frame = call_frame("good::echo", {"junk": 1}, invocation_id=invocation_id)
            await t.send(encode(frame))
            answer = decode(await t.receive())
            assert answer["type"] == "invocationresult"
            assert answer["invocation_id"] == invocation_id
            assert answer["function_id"] == "good::echo"
            assert answer["error"]["code"] == "invalid_invocation_id"
            assert "result" not in answer
            await barrier(t)
            await tables_with_abuser(engine, good)
            assert_no_junk_dispatched(good)


MALFORMED_CALLS: dict[str, dict[str, Any]] = {
    "no-function-id": {"data": {"junk": 1}},
    "function-id-not-a-string": {"function_id": 5, "data": {"junk": 1}},
    "action-not-an-object": {"function_id": "good::echo", "data": {"junk": 1}, "action": "void"},
    "unknown-action": {
        "function_id": "good::echo",
        "data": {"junk": 1},
        "action": {"type": "teleport"},
    },
    "traceparent-not-a-string": {
        "function_id": "good::echo",
        "data": {"junk": 1},
        "traceparent": 1,
    },
    "namespace-not-a-string": {"function_id": "good::echo", "data": {"junk": 1}, "namespace": []},
}


@pytest.mark.parametrize("kind", list(MALFORMED_CALLS))
async def test_malformed_call_naming_a_uuid_is_answered_malformed_frame(kind: str) -> None:
    invocation_id = new_id()
    frame = {"type": "invokefunction", "invocation_id": invocation_id, **MALFORMED_CALLS[kind]}
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            await t.send(encode(frame))
            answer = decode(await t.receive())
            assert answer["type"] == "invocationresult"
            assert answer["invocation_id"] == invocation_id
            assert answer["error"]["code"] == "malformed_frame"
            assert "result" not in answer
            await barrier(t)
            await tables_with_abuser(engine, good)
            assert_no_junk_dispatched(good)


async def test_results_for_unknown_invocations_are_dropped() -> None:
    results = [
        {"invocation_id": new_id(), "function_id": "good::echo", "result": {"forged": True}},
        {
            "invocation_id": new_id(),
            "function_id": "nobody",
            "error": {"code": "x", "message": "y"},
        },
        {"invocation_id": "not-a-uuid", "function_id": "good::echo", "result": 1},
        {"invocation_id": "", "function_id": ""},
        {"invocation_id": new_id(), "function_id": "good::echo", "result": "x" * 100_000},
    ]
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            for result in results:
                await t.send(encode({"type": "invocationresult", **result}))
            await barrier(t)
            await tables_with_abuser(engine, good)


async def test_forged_result_for_another_workers_invocation_is_ignored() -> None:
    """Only the connection executing an invocation may answer it."""
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, release):
            async with abuser(engine, good) as (t, _), anyio.create_task_group() as tg:
                outcome: list[Any] = []

                async def engine_call() -> None:
                    outcome.append(await engine.invoke("good::hold", to_raw({"n": 1})))

                tg.start_soon(engine_call)
                await good.wait_until(
                    lambda: any(f["function_id"] == "good::hold" for f in good.dispatched)
                )
                held = next(f for f in good.dispatched if f["function_id"] == "good::hold")
                forged = {
                    "type": "invocationresult",
                    "invocation_id": held["invocation_id"],
                    "function_id": "good::hold",
                    "result": {"forged": True},
                }
                await t.send(encode(forged))
                await barrier(t)
                assert outcome == []  # still waiting for the real answer
                release.set()
            [(result, error)] = outcome
            assert error is None
            assert result is not None
            assert decode_value(result) == {"held": {"n": 1}}
            await tables_without_abuser(engine, good)


async def test_call_reusing_an_invocation_id_in_flight_does_not_steal_it() -> None:
    """A second call with the id of an invocation in flight is refused; the first one is
    answered to its own caller."""
    with anyio.fail_after(20):
        async with (
            engine_and_good_worker() as (engine, good, release),
            abuser(engine, good) as (t, _),
        ):
            invocation_id = new_id()
            await good.send(call_frame("good::hold", {"n": 1}, invocation_id=invocation_id))
            await good.wait_until(
                lambda: any(f["invocation_id"] == invocation_id for f in good.dispatched)
            )
            await t.send(encode(call_frame("good::echo", {"junk": 1}, invocation_id=invocation_id)))
            answer = decode(await t.receive())
            assert answer["invocation_id"] == invocation_id
            assert "error" in answer
            assert "result" not in answer
            assert not good.has_result(invocation_id)
            release.set()
            await good.wait_until(lambda: good.has_result(invocation_id))
            original = good.take_result(invocation_id)
            assert original is not None
            assert original["result"] == {"held": {"n": 1, "_caller_worker_id": good.worker_id}}
            await barrier(t)
            await tables_with_abuser(engine, good)
            assert_no_junk_dispatched(good)


async def test_failing_handler_does_not_hurt_the_engine() -> None:
    """A handler's error is passed through to the caller unchanged (spec §5.1)."""

    async def fail(frame: dict[str, Any]) -> Any:
        raise Fail("custom_code", "it went wrong")

    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _):
            async with raw_worker(engine.url, "failing", {"failing::fn": fail}) as failing:
                answer = await good.call("failing::fn", {"n": 1})
                assert answer["error"] == {"code": "custom_code", "message": "it went wrong"}
                assert await failing.result("good::echo", {}) == {
                    "_caller_worker_id": failing.worker_id
                }
            await good.wait_for_worker_event("worker_disconnected", failing.worker_id)
            await tables_without_abuser(engine, good)
