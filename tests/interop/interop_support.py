"""Helpers for the interop tests: official-SDK workers as subprocesses, anyiii workers beside them.

The worker programs live in `workers/` and speak a line protocol on stdin/stdout (see
`workers/py_worker.py`). `official_worker()` starts one, waits for its ready event (it only
prints it once the engine lists its functions and its http binding), and always kills it
on the way out. `OfficialWorker.event()` reads its stdout until a matching JSON event shows
up; `OfficialWorker.request()` asks it to call a function through the engine.

`PEERS` describes each official SDK as data (`Peer`): how to start its worker, how to tell
whether it is installed, and where its answers differ, so one test module covers them all.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from anyiii._worker import Worker, connect

HERE: Final = Path(__file__).resolve().parent
WORKERS: Final = HERE / "workers"
NODE_DIR: Final = HERE / "node"
PY_WORKER: Final = WORKERS / "py_worker.py"
NODE_WORKER: Final = WORKERS / "node_worker.mjs"

#: How long a worker may take from spawn to ready (SDK import, connect, registrations).
READY_TIMEOUT: Final = 20.0
#: "Quickly", for errors the engine must answer at once instead of letting the 30 s
#: client-side invocation timeout expire.
PROMPT: Final = 5.0

_MAX_LINE: Final = 16 * 2**20
_ENV_DROPPED: Final = ("III_URL", "III_NAMESPACE", "III_WORKER_NAME", "III_TOKEN", "III_ISOLATION")


def worker_env() -> dict[str, str]:
    """The environment of an official worker: telemetry off, no ambient iii settings."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROPPED}
    env["OTEL_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def python_worker_argv(url: str, *extra: str) -> list[str]:
    """The official Python worker, run by this interpreter (whose env has `iii-sdk`)."""
    return [sys.executable, str(PY_WORKER), url, *extra]


def node_worker_argv(url: str, *extra: str) -> list[str]:
    """The official Node worker, run by the `node` on PATH (see `require_node`)."""
    node = shutil.which("node")
    assert node is not None
    return [node, str(NODE_WORKER), url, *extra]


def require_node() -> None:
    """Skip (fail under CI) unless node and the pinned npm `iii-sdk` are installed."""
    strict = bool(os.environ.get("CI"))
    if shutil.which("node") is None:
        if strict:
            pytest.fail("node is not installed, but CI is set: the Node interop tests must run")
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "iii-sdk" / "package.json").is_file():
        reason = (
            "the Node SDK is not installed: run `npm ci` in tests/interop/node "
            "(`python3 tasks.py test` does it when npm is on PATH)"
        )
        if strict:
            pytest.fail(reason)
        pytest.skip(reason)


def require_python_sdk() -> None:
    """Fail unless the official Python SDK is importable: it is a dev dependency, always there."""
    if importlib.util.find_spec("iii") is None:
        pytest.fail("the official Python SDK is missing: install the dev extra (iii-sdk==0.25.0)")


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no stderr captured)"
    return text[-limit:] or "(stderr is empty)"


class OfficialWorker:
    """A running official-SDK worker subprocess."""

    def __init__(self, process: anyio.abc.Process, stderr_path: Path, label: str) -> None:
        assert process.stdout is not None
        assert process.stdin is not None
        self.process = process
        self.label = label
        self.ready: dict[str, Any] = {}
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._stderr_path = stderr_path
        self._backlog: list[dict[str, Any]] = []
        self._tags = itertools.count(1)

    def stderr(self) -> str:
        """The end of what the worker wrote on stderr (for failure messages)."""
        return _tail(self._stderr_path)

    def _failure(self, what: str) -> AssertionError:
        return AssertionError(
            f"{self.label} worker: {what}\n"
            f"events not consumed yet: {self._backlog}\n"
            f"--- stderr ---\n{self.stderr()}"
        )

    async def event(self, *names: str, within: float = PROMPT, **fields: Any) -> dict[str, Any]:
        """The next stdout event named one of `names` whose fields equal `fields`.

        Events read on the way that do not match are kept for later calls. Non-JSON lines
        (the Node SDK prints debug text on stdout) are skipped. Waits at most `within`
        seconds (a deadline of its own rather than the caller's scope, so that running out
        fails with the worker's stderr in the message).
        """

        def matches(event: dict[str, Any]) -> bool:
            return event.get("event") in names and all(
                event.get(key) == value for key, value in fields.items()
            )

        for index, event in enumerate(self._backlog):
            if matches(event):
                return self._backlog.pop(index)
        try:
            with anyio.fail_after(within):
                while True:
                    line = await self._stdout.receive_until(b"\n", _MAX_LINE)
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if not isinstance(event, dict) or "event" not in event:
                        continue
                    if matches(event):
                        return event
                    self._backlog.append(event)
        except TimeoutError:
            raise self._failure(f"no {names} event with {fields} within {within} s") from None
        except (anyio.IncompleteRead, anyio.EndOfStream, anyio.ClosedResourceError):
            raise self._failure(
                f"stdout ended (exit code {self.process.returncode}) while waiting for "
                f"{names} with {fields}"
            ) from None

    async def send(self, command: Mapping[str, Any]) -> None:
        await self._stdin.send((json.dumps(command) + "\n").encode())

    async def request(
        self, function_id: str, payload: Any = None, *, op: str = "call", within: float = PROMPT
    ) -> dict[str, Any]:
        """Have the worker call `function_id` (`op` "call" or "void") through the engine;
        returns its `result`, `error` or `sent` event."""
        tag = next(self._tags)
        await self.send({"op": op, "tag": tag, "function_id": function_id, "payload": payload})
        return await self.event("result", "error", "sent", tag=tag, within=within)

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


@asynccontextmanager
async def official_worker(
    argv: list[str], stderr_path: Path, *, label: str
) -> AsyncIterator[OfficialWorker]:
    """Start an official worker, wait until it is ready, kill it when the block ends."""
    with _open_log(stderr_path) as stderr:
        process = await anyio.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=worker_env(),
        )
        async with process:
            worker = OfficialWorker(process, stderr_path, label)
            try:
                worker.ready = await worker.event("ready", within=READY_TIMEOUT)
                yield worker
            finally:
                worker.kill()


Handler = Callable[[Any], Awaitable[Any]]


async def listed_functions(worker: Worker) -> set[str]:
    """The function ids `engine::functions::list` reports, asked through `worker`."""
    listed = await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
    return {summary["function_id"] for summary in listed["functions"]}


@asynccontextmanager
async def anyiii_worker(
    url: str, functions: Mapping[str, Handler] | None = None, *, reconnect: bool = False
) -> AsyncIterator[Worker]:
    """An anyiii worker serving `functions`, entered once the engine has them.

    Registrations and calls share one connection, which the engine reads in order, so a
    single round trip after registering proves the registrations were applied.
    """
    async with connect(url, worker_name="anyiii-interop", reconnect=reconnect) as worker:
        for function_id, handler in (functions or {}).items():
            worker.register_function(function_id, handler)
        if functions:
            missing = set(functions) - await listed_functions(worker)
            assert not missing, f"the engine does not list {missing}"
        yield worker


def without_caller(payload: Any) -> Any:
    """`payload` minus the `_caller_worker_id` key the engine injects into object payloads."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != "_caller_worker_id"}
    return payload


@dataclass(frozen=True)
class Peer:
    """One official SDK as an interop peer: how to run its worker and how its answers differ.

    Both worker programs register the same functions under their own prefix, so a test
    names them through `function_id()` and compares SDK-specific text with the fields here.
    """

    #: The test id, the worker's label in failure messages, and the `worker` field its http
    #: handler answers with.
    name: str
    #: The prefix of the worker's function ids (`node::echo`, `py::echo`).
    prefix: str
    #: Text the stacktrace of its failing handler contains (each SDK formats its own).
    stacktrace_marker: str
    #: The worker's command line, given the engine URL and extra arguments.
    argv: Callable[..., list[str]]
    #: Skips or fails the test when the SDK is not installed.
    require: Callable[[], None]

    def function_id(self, name: str) -> str:
        """The id of one of the worker's functions: `echo`, `fail`, `slow`, `http`..."""
        return f"{self.prefix}::{name}"

    def start(
        self, url: str, tmp_path: Path, *extra: str
    ) -> AbstractAsyncContextManager[OfficialWorker]:
        """Start the peer's worker against `url` (see `official_worker`)."""
        return official_worker(
            self.argv(url, *extra), tmp_path / f"{self.name}_worker.stderr", label=self.name
        )


PEERS: Final = (
    # npm `iii-sdk` 0.22.1, installed by `npm ci` in tests/interop/node: optional locally.
    Peer("node", "node", "Error: boom", node_worker_argv, require_node),
    # PyPI `iii-sdk` 0.25.0, a dev dependency.
    Peer("python", "py", "ValueError", python_worker_argv, require_python_sdk),
)
