"""`anyiii engine` as a real process: addresses on stdout, logs on stderr, clean signal exits.

Each test starts `python -m anyiii engine --port 0 --http-port 0 --backend <backend>` (the
engine's own backend, independent of the test's), parses the addresses from the first
stdout line, and talks to the engine over real sockets. Stderr is read continuously, so
waiting for a log line is event driven, bounded by the test's `fail_after`.
"""

from __future__ import annotations

import signal
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from engine_peers import decode, raw_client, raw_worker
from engine_process import ENGINE_BACKENDS, engine_command, engine_env, engine_process


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
async def test_cli_prints_addresses_serves_workers_and_logs_them(backend: str) -> None:
    with anyio.fail_after(30):
        async with engine_process(backend) as engine:
            await engine.wait_for_log(r"INFO anyiii\.engine: anyiii engine listening")
            async with raw_client(engine.url) as (transport, worker_id):
                await engine.wait_for_log(rf"INFO anyiii\.engine: worker {worker_id} connected")
                await transport.send(b'{"type":"ping"}')
                assert decode(await transport.receive()) == {"type": "pong"}
            await engine.wait_for_log(rf"INFO anyiii\.engine: worker {worker_id} .*disconnected")
            # One line per connect and per disconnect.
            assert engine.stderr.count(worker_id) == 2, engine.stderr
            async with httpx.AsyncClient() as client:
                response = await client.get(engine.http_url + "/nothing/here")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "NOT_FOUND"
            assert await engine.stop(signal.SIGTERM) == 0
            await engine.wait_for_log(r"received SIGTERM; shutting down")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
async def test_signal_stops_the_engine_with_calls_in_flight(
    backend: str, signum: signal.Signals
) -> None:
    """Documented shutdown (`engine.run`): calls in flight are answered
    `invocation_stopped`, then every worker socket is closed (1001, going away), and the
    process exits 0."""
    release = anyio.Event()

    async def hold(frame: dict[str, Any]) -> Any:
        await release.wait()
        return "too late"

    with anyio.fail_after(30):
        async with (
            engine_process(backend) as engine,
            raw_worker(engine.url, "callee", {"callee::hold": hold}) as callee,
            raw_worker(engine.url, "caller") as caller,
            anyio.create_task_group() as tg,
        ):
            answers: list[dict[str, Any]] = []

            async def call() -> None:
                answers.append(await caller.call("callee::hold", {"n": 1}))

            tg.start_soon(call)
            await callee.wait_until(lambda: bool(callee.dispatched))
            assert await engine.stop(signum) == 0
            await caller.wait_until(lambda: caller.closed is not None)
            await callee.wait_until(lambda: callee.closed is not None)
            release.set()
        [answer] = answers
        assert answer["error"]["code"] == "invocation_stopped"
        assert "result" not in answer
        assert caller.closed is not None
        assert callee.closed is not None
        assert caller.closed.code == 1001
        assert callee.closed.code == 1001
        await engine.wait_for_log(rf"received {signum.name}; shutting down")


@pytest.mark.parametrize("backend", ENGINE_BACKENDS)
async def test_occupied_port_exits_1_with_a_message(backend: str) -> None:
    with anyio.fail_after(30):
        async with await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=0
        ) as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            result = await anyio.run_process(
                engine_command(backend, "--port", str(port), "--http-port", "0"),
                env=engine_env(),
                check=False,
            )
        assert result.returncode == 1
        assert b"cannot start the engine" in result.stderr
        assert result.stdout == b""
