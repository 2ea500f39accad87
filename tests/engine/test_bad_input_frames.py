"""Bad input never hurts the engine: frames it drops without an answer (spec §1.1, §1.2,
§15, §16.1 "never close the socket on a bad frame").

Junk and wrong-shaped text frames, binary junk, telemetry on the worker socket, JSON
frames sent as binary messages, and junk interleaved with a real call on the same
connection, all from an "abuser" connection beside a well-behaved worker
(`bad_input_support`); after each abuse the router's tables are checked and the good
worker must still be served, both ways.
"""

from __future__ import annotations

import random

import anyio
import pytest
from bad_input_support import (
    A_UUID,
    abuser,
    assert_no_junk_dispatched,
    engine_and_good_worker,
    tables_with_abuser,
)
from engine_peers import barrier, call_frame, decode, encode, new_id, send_binary

# --- frames that must be dropped without an answer --------------------------------------------

JUNK: dict[str, list[bytes]] = {
    "garbage-text": [
        b"hello engine",
        b"{",
        b"}{",
        b'{"type":"ping"',
        b'{"type":"ping"}}',
        b"\x00\x01\x02\x03",
        "é中文🙂".encode(),
        b"[" * 100_000,
        b'{"a":' * 50_000,
        b" \n\t ",
        b"",
    ],
    "json-not-an-object": [
        b"null",
        b"true",
        b"42",
        b"-1e999",
        b'"ping"',
        b"[]",
        b'[{"type":"ping"}]',
    ],
    "object-without-type": [
        b"{}",
        b'{"TYPE":"ping"}',
        b'{"function_id":"good::echo","invocation_id":"'
        + A_UUID.encode()
        + b'","data":{"junk":1}}',
    ],
    "wrong-field-types": [
        b'{"type":null}',
        b'{"type":5}',
        b'{"type":["ping"]}',
        b'{"type":{"is":"ping"}}',
        b'{"type":"registerfunction"}',
        b'{"type":"registerfunction","id":42}',
        b'{"type":"registerfunction","id":null}',
        b'{"type":"registerfunction","id":"abuser::bad","metadata":{},"description":7}',
        b'{"type":"unregisterfunction","id":[]}',
        b'{"type":"unregisterfunction"}',
        b'{"type":"registertrigger","id":"t1","trigger_type":"http"}',
        b'{"type":"registertrigger","id":1,"trigger_type":"http","function_id":"f","config":{}}',
        b'{"type":"unregistertrigger","id":{}}',
        b'{"type":"unregistertriggertype"}',
        b'{"type":"triggerregistrationresult","id":5}',
        b'{"type":"invocationresult"}',
        b'{"type":"invocationresult","invocation_id":5,"function_id":"good::echo"}',
        b'{"type":"reattach"}',
        b'{"type":"reattach","previous_worker_id":5,"reattach_token":[]}',
        b'{"type":"invokefunction","function_id":5,"data":{"junk":1}}',
        b'{"type":"invokefunction","function_id":"good::echo","invocation_id":7,"data":{"junk":1}}',
        b'{"type":"invokefunction","function_id":"good::echo","data":{"junk":1},"action":"void"}',
        b'{"type":"invokefunction","function_id":"good::echo","data":{"junk":1},"traceparent":1}',
    ],
    "unknown-types": [
        b'{"type":"frobnicate"}',
        b'{"type":"PING"}',
        b'{"type":""}',
        b'{"type":"observe","function_id":"good::echo"}',
        b'{"type":"error","error":{"code":"AUTH_ERROR","message":"no"}}',
        b'{"type":"invokefunction2","function_id":"good::echo","data":{"junk":1}}',
    ],
    "frames-only-the-engine-sends": [
        b'{"type":"workerregistered","worker_id":"' + A_UUID.encode() + b'"}',
        b'{"type":"registrationrejected","code":"WORKER_NAMESPACE_CONFLICT","namespace":"d",'
        b'"owner_worker_id":""}',
        b'{"type":"pong"}',
    ],
}


@pytest.mark.parametrize("kind", list(JUNK))
async def test_junk_text_frames_are_dropped_and_the_connection_stays_open(kind: str) -> None:
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            for message in JUNK[kind]:
                await t.send(message)
            await barrier(t)  # nothing was answered, and the abuser is still connected
            await tables_with_abuser(engine, good)
            assert_no_junk_dispatched(good)


BINARY_JUNK = [
    random.Random(1).randbytes(1000),
    b"\x00" * 64,
    b"\xff\xfe\xfd",
    b"OTL",
    b"otlp{}",
    b"\x89PNG\r\n\x1a\n",
]


async def test_binary_junk_is_dropped_and_the_connection_stays_open() -> None:
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            for payload in BINARY_JUNK:
                await send_binary(t, payload)
            await barrier(t)
            await tables_with_abuser(engine, good)


async def test_binary_telemetry_on_the_worker_socket_is_skipped() -> None:
    """Spec §1.1: binary frames starting with OTLP/MTRC/LOGS are telemetry, never protocol,
    even when what follows the prefix is a valid frame."""
    call = encode(call_frame("good::echo", {"junk": 1}, invocation_id=new_id()))
    payloads = [
        b'OTLP{"resourceSpans":[]}',
        b'MTRC{"resourceMetrics":[]}',
        b'LOGS{"resourceLogs":[]}',
        b"OTLP" + random.Random(2).randbytes(500),
        b'OTLP{"type":"ping"}',
        b"MTRC" + call,
        b"LOGS" + call,
        b"OTLP",
    ]
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            for payload in payloads:
                await send_binary(t, payload)
            await barrier(t)  # the prefixed ping was not answered, the calls were not run
            await tables_with_abuser(engine, good)
            assert_no_junk_dispatched(good)


async def test_json_protocol_frames_in_binary_messages_are_decoded() -> None:
    """Spec §1.1: the engine also decodes JSON frames sent as binary messages."""
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            await send_binary(t, encode({"type": "ping"}))
            assert decode(await t.receive()) == {"type": "pong"}
            invocation_id = new_id()
            await send_binary(
                t, encode(call_frame("good::echo", {"n": 1}, invocation_id=invocation_id))
            )
            answer = decode(await t.receive())
            assert answer["invocation_id"] == invocation_id
            assert answer["result"]["n"] == 1
            await tables_with_abuser(engine, good)


async def test_abuse_from_a_worker_with_calls_in_flight_does_not_lose_them() -> None:
    """Junk interleaved with a real call on the same connection: the call still completes."""
    with anyio.fail_after(20):
        async with (
            engine_and_good_worker() as (engine, good, release),
            abuser(engine, good) as (t, _),
        ):
            invocation_id = new_id()
            await t.send(encode(call_frame("good::hold", {"n": 7}, invocation_id=invocation_id)))
            for message in [m for junk in JUNK.values() for m in junk]:
                await t.send(message)
            for payload in BINARY_JUNK:
                await send_binary(t, payload)
            await barrier(t)
            release.set()
            answer = decode(await t.receive())
            assert answer["invocation_id"] == invocation_id
            assert answer["result"]["held"]["n"] == 7
            await tables_with_abuser(engine, good)
