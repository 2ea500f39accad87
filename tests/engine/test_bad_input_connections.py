"""Bad input never hurts the engine: connections it must end, and what is not a worker
(spec §1.1, §1.2, §15, §16.1 "never close the socket on a bad frame").

Oversized messages (close code 1009), a flood of frames, a worker that never reads
(dropped as a slow consumer, close code 1008), unfinished WebSocket handshakes (dropped
after `EngineSettings.handshake_timeout`), plain and unparsable HTTP and unknown paths on
the worker port, and the telemetry socket, which is never a worker. Everyone else must be
served throughout, and the router's tables are checked through a well-behaved worker
(`bad_input_support`).
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
from bad_input_support import (
    abuser,
    assert_no_junk_dispatched,
    engine_and_good_worker,
    tables_with_abuser,
    tables_without_abuser,
)
from engine_peers import (
    RawWorker,
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
from anyiii._transport import Transport, open_websocket
from anyiii.engine import EmbeddedEngine, EngineSettings

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
