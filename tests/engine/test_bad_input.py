"""Bad input never hurts the engine (spec §1.1, §1.2, §15, §16.1 "never close the socket on a
bad frame").

Each test runs a real engine with a well-behaved worker ("good", a `RawWorker`) and abuses
it from another connection: junk and wrong-shaped frames, calls with bad invocation ids,
forged results, oversized messages, floods, a worker that never reads, half-open TCP
connections, plain HTTP and unknown paths on the worker port, the telemetry socket. After
each abuse the router's tables are checked through the good worker (`engine::workers::list`,
`engine::functions::list`) and the good worker must still be served, both ways.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from engine_peers import (
    Fail,
    RawWorker,
    assert_tables,
    barrier,
    call_frame,
    close_and_collect,
    decode,
    echo,
    encode,
    new_id,
    raw_client,
    raw_worker,
    read_to_eof,
    read_until_closed,
    register_frame,
    send_binary,
    send_fragments,
)
from websockets.exceptions import InvalidStatus

from anyiii._errors import ConnectError, ConnectionClosed
from anyiii._protocol.frames import decode_value, to_raw
from anyiii._transport import Transport, open_websocket
from anyiii.engine import EmbeddedEngine, EngineSettings, run

GOOD_FUNCTIONS = ["good::echo", "good::hold", "good::on_workers"]


@asynccontextmanager
async def engine_and_good_worker(
    settings: EngineSettings | None = None,
) -> AsyncIterator[tuple[EmbeddedEngine, RawWorker, anyio.Event]]:
    """An engine with the good worker connected; `good::hold` answers once the returned
    event is set."""
    release = anyio.Event()

    async def hold(frame: dict[str, Any]) -> Any:
        await release.wait()
        return {"held": frame["data"]}

    async with (
        run(http_port=None, settings=settings) as engine,
        raw_worker(
            engine.url, "good", {"good::echo": echo, "good::hold": hold}, watch_workers=True
        ) as good,
    ):
        yield engine, good, release


@asynccontextmanager
async def abuser(engine: EmbeddedEngine, good: RawWorker) -> AsyncIterator[tuple[Transport, str]]:
    """A raw connection that registered as worker "abuser" serving `abuser::fn`."""
    async with raw_client(engine.url) as (transport, worker_id):
        await transport.send(encode({"type": "registerfunction", "id": "abuser::fn"}))
        await transport.send(encode(register_frame("abuser")))
        await good.wait_for_worker_event("worker_metadata_updated", worker_id)
        yield transport, worker_id


async def tables_with_abuser(engine: EmbeddedEngine, good: RawWorker) -> None:
    await assert_tables(
        engine,
        good,
        workers=["good", "abuser"],
        functions=[*GOOD_FUNCTIONS, "abuser::fn"],
        connections=2,
    )


async def tables_without_abuser(engine: EmbeddedEngine, good: RawWorker) -> None:
    await assert_tables(engine, good, workers=["good"], functions=GOOD_FUNCTIONS, connections=1)


def assert_no_junk_dispatched(good: RawWorker) -> None:
    junk = [f for f in good.dispatched if isinstance(f["data"], dict) and "junk" in f["data"]]
    assert junk == []


# --- frames that must be dropped without an answer --------------------------------------------

_UUID = "0b7a9c2e-4f6d-4e1a-9a53-2f8c1d7e6b40"

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
        b'{"function_id":"good::echo","invocation_id":"' + _UUID.encode() + b'","data":{"junk":1}}',
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
        b'{"type":"workerregistered","worker_id":"' + _UUID.encode() + b'"}',
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


# --- bad calls that name an invocation: answered, never silence ---------------------------------


@pytest.mark.parametrize(
    "invocation_id",
    ["not-a-uuid", "", "42", "{" + _UUID + "}", _UUID + "0", _UUID.replace("-", "_")],
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


# --- connections the engine must end, without hurting anyone else ------------------------------


@pytest.mark.parametrize("how", ["one-frame", "fragments"])
async def test_oversized_message_closes_the_offender_with_1009(how: str) -> None:
    settings = EngineSettings(max_message_size=4096)
    with anyio.fail_after(20):
        async with (
            engine_and_good_worker(settings) as (engine, good, _),
            abuser(engine, good) as (t, worker_id),
        ):
            big = encode(call_frame("good::echo", {"junk": "x" * 5000}, invocation_id=new_id()))
            if how == "one-frame":
                await t.send(big)
            else:  # every fragment is under the limit, the message is not
                await send_fragments(t, [big[i : i + 1500] for i in range(0, len(big), 1500)])
            with pytest.raises(ConnectionClosed) as closed:
                await t.receive()
            assert closed.value.code == 1009
            assert t.close_code == 1009
            await good.wait_for_worker_event("worker_disconnected", worker_id)
            await tables_without_abuser(engine, good)
            assert_no_junk_dispatched(good)


async def test_a_flood_of_frames_is_all_answered_and_others_are_still_served() -> None:
    frames = 5000
    with anyio.fail_after(40):
        async with engine_and_good_worker() as (engine, good, _), abuser(engine, good) as (t, _):
            call_ids = [new_id() for _ in range(frames // 2)]
            answers: list[dict[str, Any]] = []
            echoed: list[Any] = []

            async def flood() -> None:
                for invocation_id in call_ids:
                    await t.send(encode({"type": "ping"}))
                    await t.send(
                        encode(call_frame("missing::fn", {"junk": 1}, invocation_id=invocation_id))
                    )

            async def read_answers() -> None:
                while len(answers) < frames:
                    answers.append(decode(await t.receive()))

            async def keep_calling() -> None:
                for n in range(50):
                    echoed.append(await good.result("good::echo", {"n": n}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_answers)
                tg.start_soon(keep_calling)
                tg.start_soon(flood)
            pongs = [a for a in answers if a["type"] == "pong"]
            results = [a for a in answers if a["type"] == "invocationresult"]
            assert len(pongs) == frames // 2
            assert [r["invocation_id"] for r in results] == call_ids
            assert {r["error"]["code"] for r in results} == {"function_not_found"}
            assert [e["n"] for e in echoed] == list(range(50))
            await barrier(t)
            await tables_with_abuser(engine, good)


@asynccontextmanager
async def slow_consumer_dropped(
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[tuple[EmbeddedEngine, RawWorker, Transport, list[dict[str, Any]]]]:
    """A worker ("slow") that stops reading while the good worker calls it with big
    payloads, until the engine drops it. Yields (engine, good, slow transport, answers to
    good's calls); on entry the engine has already disconnected the slow worker.

    The slow worker sends nothing after its registration, so nothing it sends can race
    with being dropped; it only stops reading.
    """
    settings = EngineSettings(max_queue_bytes=256 * 1024)
    payload = {"blob": "x" * 32 * 1024}
    caplog.set_level(logging.INFO, logger="anyiii.engine")
    async with (
        engine_and_good_worker(settings) as (engine, good, _),
        raw_client(engine.url) as (slow, slow_id),
    ):
        await slow.send(encode({"type": "registerfunction", "id": "slow::sink"}))
        await slow.send(encode(register_frame("slow")))
        await good.wait_for_worker_event("worker_metadata_updated", slow_id)
        # From here on "slow" never reads. Call it until the engine gives up on it.
        ids: list[str] = []
        while not any(good.has_result(i) for i in ids):
            assert len(ids) < 4000, "the engine never dropped the slow consumer"
            ids.append(new_id())
            await good.send(call_frame("slow::sink", payload, invocation_id=ids[-1]))
        await good.wait_until(lambda: all(good.has_result(i) for i in ids))
        answers = [good.take_result(i) for i in ids]
        await good.wait_for_worker_event("worker_disconnected", slow_id)
        yield engine, good, slow, [a for a in answers if a is not None]


async def test_worker_that_never_reads_is_disconnected_as_a_slow_consumer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(40):
        async with slow_consumer_dropped(caplog) as (engine, good, _, answers):
            # Every call the slow worker had been sent was stopped, none was lost; calls made
            # after it was gone found nobody serving the function.
            codes = [a["error"]["code"] for a in answers]
            stopped = codes.count("invocation_stopped")
            assert stopped > 0, codes
            assert codes == ["invocation_stopped"] * stopped + ["function_not_found"] * (
                len(codes) - stopped
            )
            warnings = [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING and "stopped reading" in r.getMessage()
            ]
            assert len(warnings) == 1, warnings
            await tables_without_abuser(engine, good)


async def test_slow_consumer_is_told_why_with_close_code_1008(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once dropped, the slow worker reads again: it gets what was already on its way, then
    the engine's close frame with 1008 (policy violation), as `SendQueueFull` documents
    ("ends the connection (close code 1008, policy violation)") and RFC 6455 §7.1.7 asks
    ("SHOULD send a Close frame with an appropriate status code")."""
    with anyio.fail_after(40):
        async with slow_consumer_dropped(caplog) as (engine, good, slow, _):
            pending = [decode(m) for m in await read_until_closed(slow)]
            assert pending
            assert {f["type"] for f in pending} == {"invokefunction"}
            await tables_without_abuser(engine, good)
            assert slow.close_code == 1008, (slow.close_code, slow.close_reason)


async def test_unfinished_websocket_handshakes_are_dropped() -> None:
    settings = EngineSettings(handshake_timeout=0.2)
    partial = [
        b"",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    ]
    with anyio.fail_after(20):
        async with engine_and_good_worker(settings) as (engine, good, _):
            streams = [await anyio.connect_tcp("127.0.0.1", engine.port) for _ in partial]
            try:
                for stream, data in zip(streams, partial, strict=True):
                    if data:
                        await stream.send(data)
                # While those hang, a new worker connects and everyone is served.
                async with raw_worker(engine.url, "late", {"late::fn": echo}) as late:
                    assert await late.result("good::echo", {"n": 1}) == {
                        "n": 1,
                        "_caller_worker_id": late.worker_id,
                    }
                    assert engine.worker_count == 2
                for stream in streams:
                    with anyio.fail_after(5):
                        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                            await stream.receive()
            finally:
                for stream in streams:
                    await stream.aclose()
            await tables_without_abuser(engine, good)


async def test_plain_http_on_the_worker_port_gets_a_4xx() -> None:
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _):
            async with httpx.AsyncClient() as client:
                for method in ("GET", "POST", "DELETE"):
                    response = await client.request(method, f"http://127.0.0.1:{engine.port}/")
                    assert 400 <= response.status_code < 500, response
            await tables_without_abuser(engine, good)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"HELLO\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    ],
    ids=["not-http", "no-target", "bad-version", "huge-target", "bad-header"],
)
async def test_unparsable_request_on_the_worker_port_gets_a_4xx(request_bytes: bytes) -> None:
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _):
            async with await anyio.connect_tcp("127.0.0.1", engine.port) as stream:
                await stream.send(request_bytes)
                answer = await read_to_eof(stream)
            status_line = answer.split(b"\r\n", 1)[0]
            assert status_line.startswith(b"HTTP/1.1 4"), answer
            await tables_without_abuser(engine, good)


@pytest.mark.parametrize(
    "path", ["/nope", "/workers", "/otelx", "/otel/extra", "/ws/channels/abc?key=k&dir=read"]
)
async def test_websocket_to_an_unknown_path_gets_404(path: str) -> None:
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _):
            with pytest.raises(ConnectError) as refused:
                async with open_websocket(engine.url + path, ping_interval=None):
                    pass
            cause = refused.value.__cause__
            assert isinstance(cause, InvalidStatus)
            assert cause.response.status_code == 404
            await tables_without_abuser(engine, good)


@pytest.mark.parametrize("path", ["/otel", "/otel?service=x"])
async def test_otel_socket_accepts_binary_telemetry_and_is_never_a_worker(path: str) -> None:
    with anyio.fail_after(20):
        async with engine_and_good_worker() as (engine, good, _):
            async with open_websocket(engine.url + path, ping_interval=None) as otel:
                for prefix in (b"OTLP", b"MTRC", b"LOGS"):
                    await send_binary(otel, prefix + b'{"resourceSpans":[]}')
                await send_binary(otel, b"OTLP" + random.Random(3).randbytes(2000))
                await otel.send(encode({"type": "ping"}))  # text frames are ignored here
                await otel.send(encode(register_frame("otel-impostor")))
                await otel.send(b"garbage")
                # Listed while the telemetry socket is open: only the good worker.
                await tables_without_abuser(engine, good)
                # Not even `workerregistered` was sent: nothing at all came back.
                assert await close_and_collect(otel) == []
            await tables_without_abuser(engine, good)


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
