"""What one worker connection may cost the engine, and what it may pass on (issue 14):
unfinished messages under an engine-wide budget, text that is not UTF-8, frames nested too
deeply to decode. docs/limits.md lists the limits.

Each test runs a real engine on 127.0.0.1 with a well-behaved worker ("good"); the offender
is a hand-made WebSocket client writing frames byte by byte. After the abuse, the good
worker must still be served.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest
from engine_peers import RawWorker, echo, new_id, raw_worker
from transport_peers import TEXT, RawConnection, raw_client, raw_frame
from websockets.frames import Frame

import anyiii
from anyiii.engine import EmbeddedEngine, EngineSettings, MemoryBudget, run

MiB = 2**20


async def sink(frame: dict[str, Any]) -> None:
    """Takes a call and answers nothing: a big call's answer stays small."""


@asynccontextmanager
async def engine_with_good(
    settings: EngineSettings | None = None,
) -> AsyncIterator[tuple[EmbeddedEngine, RawWorker]]:
    async with (
        run(http_port=None, settings=settings) as engine,
        raw_worker(engine.url, "good", {"good::echo": echo, "good::sink": sink}) as good,
    ):
        yield engine, good


async def offender(engine: EmbeddedEngine) -> RawConnection:
    """A hand-made client that has read `workerregistered`."""
    peer = await raw_client(engine.port)
    first = await peer.next_frame()
    assert json.loads(first.data)["type"] == "workerregistered"
    return peer


async def assert_good_is_served(good: RawWorker) -> None:
    assert await good.result("good::echo", {"n": 1}) == {
        "n": 1,
        "_caller_worker_id": good.worker_id,
    }


def close_code(frame: Frame) -> int:
    return int.from_bytes(frame.data[:2], "big")


def test_memory_budget_defaults_and_validation() -> None:
    assert EngineSettings().memory == MemoryBudget(
        unfinished_messages=256 * MiB, send_queues=512 * MiB
    )
    with pytest.raises(ValueError, match="unfinished_messages"):
        MemoryBudget(unfinished_messages=0)
    with pytest.raises(ValueError, match="send_queues"):
        MemoryBudget(send_queues=-1)


# --- item 3: invalid UTF-8 -------------------------------------------------------------------


async def test_a_call_with_invalid_utf8_closes_the_sender_with_1007_and_is_not_forwarded() -> None:
    invocation_id = new_id()
    bad = (
        b'{"type":"invokefunction","invocation_id":"'
        + invocation_id.encode()
        + b'","function_id":"good::echo","data":{"s":"a\xffb"}}'
    )
    with anyio.fail_after(15):
        async with engine_with_good() as (engine, good):
            peer = await offender(engine)
            await peer.stream.send(raw_frame(TEXT, bad))
            frame = await peer.next_frame()
            assert frame.opcode.name == "CLOSE", frame
            assert close_code(frame) == 1007
            await assert_good_is_served(good)
            assert all(f.get("invocation_id") != invocation_id for f in good.dispatched)
            await anyio.aclose_forcefully(peer.stream)


# --- item 2: the engine-wide budget for unfinished messages ----------------------------------


async def test_the_connection_that_passes_the_engine_budget_is_closed_and_memory_returns() -> None:
    settings = EngineSettings(memory=MemoryBudget(unfinished_messages=3 * MiB))
    message = json.dumps(
        {"type": "invokefunction", "function_id": "good::sink", "data": "x" * (5 * MiB // 4)}
    ).encode()  # 1.25 MiB: two fit in the budget whole
    head = raw_frame(TEXT, message)[: -len(message)]
    sent = 11 * MiB // 10  # of each message before any is finished: three do not fit
    with anyio.fail_after(20):
        async with engine_with_good(settings) as (engine, good):
            peers = [await offender(engine) for _ in range(3)]
            closed: dict[int, int] = {}
            one_closed = anyio.Event()

            async def watch(index: int) -> None:
                frame = await peers[index].next_frame()
                assert frame.opcode.name == "CLOSE", frame
                closed[index] = close_code(frame)
                one_closed.set()

            async with anyio.create_task_group() as tg:
                for index, peer in enumerate(peers):
                    tg.start_soon(watch, index)
                    await peer.stream.send(head + message[:sent])
                await one_closed.wait()
                assert list(closed.values()) == [1009]
                # The survivors kept their part: they finish, and their void calls reach
                # the good worker; nobody else is closed.
                for index, peer in enumerate(peers):
                    if index not in closed:
                        await peer.stream.send(message[sent:])
                await good.wait_until(lambda: len(good.dispatched) == 2)
                await assert_good_is_served(good)  # after good's answers to those calls
                assert engine.unfinished.used == 0  # refused: released; finished: handed up
                assert len(closed) == 1
                tg.cancel_scope.cancel()
            for peer in peers:
                await anyio.aclose_forcefully(peer.stream)
    assert engine.unfinished.used == 0, "every connection gave its bytes back"


# --- item 4: frames nested too deeply to decode ----------------------------------------------

DEPTH = 1000


async def test_a_call_nested_too_deeply_is_answered_malformed_frame_by_a_raw_client() -> None:
    invocation_id = new_id()
    frame = (
        b'{"type":"invokefunction","function_id":"good::echo","data":'
        + b'{"a":[' * DEPTH
        + b"]}" * DEPTH
        + b',"invocation_id":"'
        + invocation_id.encode()
        + b'"}'
    )
    with anyio.fail_after(15):
        async with engine_with_good() as (engine, good):
            peer = await offender(engine)
            await peer.send_text(frame)
            answer = json.loads((await peer.next_frame()).data)
            assert answer["type"] == "invocationresult"
            assert answer["invocation_id"] == invocation_id
            assert answer["error"]["code"] == "malformed_frame"
            assert good.dispatched == []
            await assert_good_is_served(good)
            await anyio.aclose_forcefully(peer.stream)


async def test_an_anyiii_worker_calling_with_a_payload_nested_too_deeply_gets_malformed_frame() -> (
    None
):
    deep = msgspec.Raw(b"[" * DEPTH + b"]" * DEPTH)  # sent as is: the encoder would refuse it
    with anyio.fail_after(15):
        async with engine_with_good() as (engine, good), anyiii.connect(engine.url) as worker:
            with pytest.raises(anyiii.InvocationError) as failed:
                await worker.trigger_async({"function_id": "good::echo", "payload": deep})
            assert failed.value.code == "malformed_frame"
            assert good.dispatched == []
            # The caller's connection is fine: its next call is answered.
            assert await worker.trigger_async({"function_id": "good::echo", "payload": 1}) == 1
