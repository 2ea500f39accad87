"""`anyiii engine` as a real process, for tests that start, signal and kill it.

`engine_process(backend, *args)` starts `python -m anyiii engine --port 0 --http-port 0`
(later `--port N` arguments win, for restarts on a known port; in memory unless a
`--data-dir` is given or `in_memory=False`), parses the addresses
from its first stdout line, and reads stderr continuously so that waiting for a log line
is event driven.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

SRC = Path(__file__).resolve().parents[2] / "src"
ENGINE_BACKENDS = ["asyncio", "trio"]
_WITH_MAX_FILES = (
    "import os, resource, sys; limit = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)
"""Run the rest of the command line with at most `argv[1]` open files (RLIMIT_NOFILE)."""


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


def engine_command(
    backend: str, *args: str, in_memory: bool = True, free_stream_port: bool = True
) -> list[str]:
    """The CLI's command line: in memory (not the default ./data) unless a data directory
    is given or `in_memory=False`; the stream port free unless `free_stream_port=False`."""
    storage = ("--in-memory",) if in_memory and "--data-dir" not in args else ()
    stream = ("--stream-port", "0") if free_stream_port else ()
    return [
        sys.executable,
        "-m",
        "anyiii",
        "engine",
        "--backend",
        backend,
        *stream,
        *storage,
        *args,
    ]


def engine_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(SRC) + (os.pathsep + path if path else "")}


@asynccontextmanager
async def engine_process(
    backend: str,
    *args: str,
    in_memory: bool = True,
    free_ports: bool = True,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    max_files: int | None = None,
) -> AsyncIterator[EngineProcess]:
    """Start the engine CLI, on free ports unless `free_ports=False` (then the arguments or
    a config file choose), in `cwd`, with `env` added to the environment, with at most
    `max_files` open file descriptors if given; yield once it printed its addresses."""
    ports = ("--port", "0", "--http-port", "0") if free_ports else ()
    command = engine_command(
        backend, *ports, *args, in_memory=in_memory, free_stream_port=free_ports
    )
    if max_files is not None:
        command = [sys.executable, "-c", _WITH_MAX_FILES, str(max_files), *command[1:]]
    process = await anyio.open_process(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**engine_env(), **(env or {})},
        cwd=cwd,
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
