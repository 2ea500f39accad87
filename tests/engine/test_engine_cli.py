"""`anyiii engine` as a real process: addresses on stdout, logs on stderr, clean signal exits.

Each test starts `python -m anyiii engine --port 0 --http-port 0 --backend <backend>` (the
engine's own backend, independent of the test's), parses the addresses from the first
stdout line, and talks to the engine over real sockets. Stderr is read continuously, so
waiting for a log line is event driven, bounded by the test's `fail_after`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from engine_peers import decode, raw_client, raw_worker

SRC = Path(__file__).resolve().parents[2] / "src"
ENGINE_BACKENDS = ["asyncio", "trio"]


@dataclass(eq=False)
class EngineProcess:
    process: anyio.abc.Process
    stdout_line: str = ""
    stderr: str = ""
    url: str = ""
    http_url: str = ""
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _stderr_done: bool = False

    async def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        try:
            async for chunk in self.process.stderr:
                self.stderr += chunk.decode(errors="replace")
                self._changed.set()
        finally:
            self._stderr_done = True
            self._changed.set()

    async def wait_for_log(self, pattern: str) -> re.Match[str]:
        """Wait until stderr has a line matching `pattern`; return the match."""
        while True:
            found = re.search(pattern, self.stderr, re.MULTILINE)
            if found is not None:
                return found
            assert not self._stderr_done, f"no {pattern!r} in stderr:\n{self.stderr}"
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()

    async def read_first_line(self) -> str:
        assert self.process.stdout is not None
        data = b""
        while b"\n" not in data:
            try:
                data += await self.process.stdout.receive()
            except anyio.EndOfStream:
                raise AssertionError(
                    f"the engine printed no line; stdout {data!r}, stderr:\n{self.stderr}"
                ) from None
        return data.split(b"\n", 1)[0].decode()

    async def stop(self, signum: int) -> int:
        """Send `signum`; return the exit code, which must come within a few seconds."""
        self.process.send_signal(signum)
        with anyio.fail_after(10):
            return await self.process.wait()


def _command(backend: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "anyiii", "engine", "--backend", backend, *args]


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(SRC) + (os.pathsep + path if path else "")}


@asynccontextmanager
async def engine_process(backend: str, *args: str) -> AsyncIterator[EngineProcess]:
    """Start the engine CLI on free ports; yield once it printed its addresses."""
    command = _command(backend, "--port", "0", "--http-port", "0", *args)
    process = await anyio.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    async with process, anyio.create_task_group() as tg:
        engine = EngineProcess(process)
        tg.start_soon(engine._pump_stderr)
        try:
            engine.stdout_line = await engine.read_first_line()
            ws = re.search(r"\bws://127\.0\.0\.1:(\d+)\b", engine.stdout_line)
            http = re.search(r"\bhttp://127\.0\.0\.1:(\d+)\b", engine.stdout_line)
            assert ws is not None, engine.stdout_line
            assert http is not None, engine.stdout_line
            assert int(ws.group(1)) > 0
            assert int(http.group(1)) > 0
            engine.url, engine.http_url = ws.group(0), http.group(0)
            yield engine
        finally:
            if process.returncode is None:
                process.kill()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await process.wait()
            tg.cancel_scope.cancel()


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
                _command(backend, "--port", str(port), "--http-port", "0"),
                env=_env(),
                check=False,
            )
        assert result.returncode == 1
        assert b"cannot start the engine" in result.stderr
        assert result.stdout == b""
