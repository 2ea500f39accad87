"""`anyiii demo`: an embedded engine, one worker on trio, one on asyncio, and real HTTP.

Everything runs in this process on 127.0.0.1: the engine and the asyncio worker on the
main thread's asyncio loop, the trio worker on a trio loop in a second thread. They talk
only through the engine's WebSocket, as separate processes would. Each step is printed
with its duration; the first step that does not do what it should ends the demo with a
message naming it and exit status 1. Nothing outlives the demo: the trio thread is told to
stop and joined, the workers drain and close, the engine stops, also on failure or Ctrl-C.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import httpx

from ._concurrency import single_errors
from ._errors import InvocationError
from ._functions import Registry, race
from ._worker import ApiRequest, ApiResponse, Worker, connect

__all__ = ["DemoFailure", "run_demo"]

STEP_TIMEOUT: Final = 10.0
JOIN_TIMEOUT: Final = 30.0
FAIL_STEP_VARIABLE: Final = "ANYIII_DEMO_FAIL_STEP"
"""Tests set this to a step number to prove that a failing step is reported."""


class DemoFailure(Exception):
    """A step did not do what it should."""


@dataclass
class _Steps:
    """Numbers, times and prints the steps."""

    fail_at: int | None
    count: int = 0
    started: float = field(default_factory=time.perf_counter)

    @asynccontextmanager
    async def step(self, title: str, *, bounded: bool = True) -> AsyncIterator[list[str]]:
        """One step: the body appends result lines; the title is printed with its time.

        A bounded step fails after `STEP_TIMEOUT`. A step that enters a context that stays
        open after it (the engine, a worker) cannot sit in a cancel scope it outlives, so it
        is unbounded here and relies on that context's own open timeout.
        """
        self.count += 1
        number = self.count
        lines: list[str] = []
        began = time.perf_counter()
        try:
            with anyio.fail_after(STEP_TIMEOUT) if bounded else nullcontext():
                yield lines
                if number == self.fail_at:
                    raise DemoFailure(f"failure injected by {FAIL_STEP_VARIABLE}")
        except TimeoutError:
            raise DemoFailure(
                f"step {number} ({title}) took longer than {STEP_TIMEOUT:.0f} s"
            ) from None
        except DemoFailure as exc:
            raise DemoFailure(f"step {number} ({title}) failed: {exc}") from exc
        except Exception as exc:
            raise DemoFailure(f"step {number} ({title}) failed: {exc!r}") from exc
        took = (time.perf_counter() - began) * 1000
        print(f"  {number}. {title:<62} {took:7.1f} ms", flush=True)
        for line in lines:
            print(f"       {line}", flush=True)


def _backend() -> str:
    """Which event loop runs this code (sniffio comes with trio, which the demo needs)."""
    import sniffio

    return sniffio.current_async_library()


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


@dataclass
class _TrioSide:
    """The trio worker's thread: how to reach its loop, and how to stop it."""

    token: anyio.lowlevel.EventLoopToken | None = None
    worker: Worker | None = None
    stop: anyio.Event | None = None
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def run_on_trio(self, function: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        """From a plain thread: run `function(*args)` on the trio loop and wait for it."""
        assert self.token is not None
        return anyio.from_thread.run(function, *args, token=self.token)

    def stop_and_join(self) -> None:
        """From a plain thread: let the trio worker leave its block, and wait until it has."""
        if self.token is not None and self.stop is not None and not self.finished.is_set():
            with suppress(RuntimeError):  # its loop ended meanwhile
                anyio.from_thread.run_sync(self.stop.set, token=self.token)
        self.finished.wait(JOIN_TIMEOUT)


async def _trio_worker(url: str, side: _TrioSide) -> None:
    """Runs on trio: serves demo::greet until told to stop."""
    async with connect(url, worker_name="demo-trio", reconnect=False) as worker:

        @worker.function("demo::greet", description="greets someone, from trio")
        async def greet(data: dict[str, Any]) -> dict[str, Any]:
            return {"greeting": f"hello, {data['name']}", "served_on": _backend()}

        # Frames of one connection are handled in order: once this call returns, the
        # engine has the function, whatever the other worker asks it next.
        await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        side.worker = worker
        side.stop = anyio.Event()
        side.token = anyio.lowlevel.current_token()
        side.ready.set()
        await side.stop.wait()


def _run_trio_thread(url: str, side: _TrioSide) -> None:
    try:
        anyio.run(_trio_worker, url, side, backend="trio")
    except Exception as exc:  # reported by the step that needs the trio worker
        side.error = exc
    finally:
        side.ready.set()  # a trio side that failed to start must not leave anyone waiting
        side.finished.set()


async def _demo(steps: _Steps) -> None:
    side = _TrioSide()
    with single_errors():
        async with anyio.create_task_group() as threads, AsyncExitStack() as stack:
            try:
                await _run_steps(steps, side, threads, stack)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(side.stop_and_join)


async def _run_steps(
    steps: _Steps, side: _TrioSide, threads: anyio.abc.TaskGroup, stack: AsyncExitStack
) -> None:
    from . import engine as engine_api

    async with steps.step("start the embedded engine (asyncio)", bounded=False) as out:
        engine = await stack.enter_async_context(
            engine_api.run(host="127.0.0.1", port=0, http_port=0)
        )
        out.append(f"workers connect to {engine.url}, HTTP on {engine.http_url}")

    async with steps.step("start a worker on trio (its own thread and loop)") as out:
        threads.start_soon(anyio.to_thread.run_sync, _run_trio_thread, engine.url, side)
        await anyio.to_thread.run_sync(side.ready.wait)
        _expect(side.worker is not None, f"the trio worker did not start: {side.error!r}")
        out.append("demo-trio serves demo::greet")

    async with steps.step("connect a worker on asyncio", bounded=False) as out:
        worker = await stack.enter_async_context(
            connect(engine.url, worker_name="demo-asyncio", reconnect=False)
        )

        @worker.function("demo::add", description="adds two numbers, on asyncio")
        async def add(data: dict[str, Any]) -> dict[str, Any]:
            return {"sum": data["a"] + data["b"], "served_on": _backend()}

        @worker.function("demo::order", description="takes an order over HTTP")
        async def order(req: ApiRequest[dict[str, Any]]) -> ApiResponse[dict[str, Any]]:
            body = req.body or {}
            greeting = await worker.trigger_async(
                {"function_id": "demo::greet", "payload": {"name": body.get("customer")}}
            )
            return ApiResponse(
                statusCode=201,
                body={"order": body.get("item"), "note": greeting["greeting"]},
                headers={"x-served-on": _backend()},
            )

        listed = await worker.trigger_async(
            {"function_id": "engine::functions::list", "payload": {}}
        )
        ids = sorted(f["function_id"] for f in listed["functions"])
        _expect({"demo::add", "demo::greet", "demo::order"} <= set(ids), f"the engine lists {ids}")
        out.append(f"demo-asyncio serves demo::add and demo::order; the engine lists {ids}")

    async with steps.step("call from asyncio to the trio worker") as out:
        result = await worker.trigger_async(
            {"function_id": "demo::greet", "payload": {"name": "Ada"}}
        )
        _expect(result.get("served_on") == "trio", f"unexpected result {result}")
        out.append(f"demo::greet {{'name': 'Ada'}} -> {result}")

    async with steps.step("call from trio to the asyncio worker") as out:
        trio_worker = side.worker
        assert trio_worker is not None
        request = {"function_id": "demo::add", "payload": {"a": 2, "b": 3}}
        result = await anyio.to_thread.run_sync(
            side.run_on_trio, trio_worker.trigger_async, request
        )
        _expect(result == {"sum": 5, "served_on": "asyncio"}, f"unexpected result {result}")
        out.append(f"demo::add {{'a': 2, 'b': 3}} -> {result}")

    async with steps.step("bind an http trigger: POST /orders -> demo::order") as out:
        await worker.register_trigger(
            "http", "demo::order", {"api_path": "orders", "http_method": "POST"}
        )
        # Frames are handled in order: once a call returns, the route is bound.
        await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        out.append(f"route {engine.http_url}/orders")

    async with steps.step("send a real HTTP request to the trigger") as out:
        async with httpx.AsyncClient(base_url=str(engine.http_url)) as client:
            response = await client.post("/orders", json={"item": "green tea", "customer": "Grace"})
        _expect(response.status_code == 201, f"HTTP {response.status_code}: {response.text}")
        body = response.json()
        _expect(body.get("note") == "hello, Grace", f"unexpected body {body}")
        out.append(
            f"POST /orders -> {response.status_code} {body} "
            f"(x-served-on: {response.headers.get('x-served-on')}; the greeting came from trio)"
        )

    async with steps.step("call a function nobody serves (a clear error)") as out:
        began = time.perf_counter()
        try:
            await worker.trigger_async({"function_id": "demo::missing", "payload": {}})
        except InvocationError as exc:
            _expect(exc.code == "function_not_found", f"unexpected error {exc}")
            took = (time.perf_counter() - began) * 1000
            out.append(f"InvocationError {exc.code} after {took:.1f} ms: {exc.message}")
        else:
            raise DemoFailure("the call to a missing function succeeded")

    async with steps.step("typed registry functions: a call, a batch and a race") as out:
        counter = _demo_registry(worker)
        total = await counter.add(2, 3)  # like a Python function, checked by mypy
        _expect(total == 5, f"unexpected total {total}")
        ids = await counter.batch().add(counter.note, "one").add(counter.note, "two").dispatch()
        with anyio.fail_after(5):
            await counter.noted.wait()
        winner = await gather_race(counter)
        _expect(winner == "quick", f"unexpected race winner {winner}")
        out.append(
            f"await add(2, 3) -> {total}; a batch of {len(ids)} notes -> {sorted(counter.notes)};"
            f" race(slow, quick) -> {winner!r}, the loser cancelled"
        )

    async with steps.step("stop both workers and the engine", bounded=False) as out:
        await anyio.to_thread.run_sync(side.stop_and_join)
        _expect(side.finished.is_set(), "the trio worker's thread did not finish")
        _expect(side.error is None, f"the trio worker failed: {side.error!r}")
        await stack.aclose()
        out.append("each worker drained and closed its connection; the engine stopped")


class _DemoFunctions(Registry):
    """The demo's typed functions, declared once in a registry."""

    def __init__(self) -> None:
        super().__init__("demo-typed")
        self.notes: list[str] = []
        self.noted = anyio.Event()

        @self.function
        async def add(a: int, b: int) -> int:
            return a + b

        @self.function
        async def note(text: str) -> None:
            self.notes.append(text)
            if len(self.notes) == 2:
                self.noted.set()

        self.release = anyio.Event()

        @self.function
        async def slow() -> str:
            await self.release.wait()  # until the demo has seen the race end
            return "slow"

        @self.function
        async def quick() -> str:
            return "quick"

        self.add, self.note, self.slow, self.quick = add, note, slow, quick


def _demo_registry(worker: Worker) -> _DemoFunctions:
    functions = _DemoFunctions()
    worker.serve(functions)
    return functions


async def gather_race(functions: _DemoFunctions) -> str:
    """A race of two calls: the quick one wins, the slow one's call is cancelled (and its
    handler, which the protocol cannot cancel remotely, is then let go)."""
    winner: str = await race(functions.slow(), functions.quick())
    functions.release.set()
    return winner


def run_demo(*, verbose: bool = False) -> int:
    """Run the demo; returns the process exit status (0 when every step passed)."""
    fail_at = os.environ.get(FAIL_STEP_VARIABLE)
    steps = _Steps(fail_at=int(fail_at) if fail_at and fail_at.isdigit() else None)
    print("anyiii demo: an embedded engine, one worker on trio, one on asyncio", flush=True)
    try:
        anyio.run(_demo, steps, backend="asyncio")
    except DemoFailure as exc:
        if verbose:
            traceback.print_exception(exc)
        print(f"FAILED: {exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    total = (time.perf_counter() - steps.started) * 1000
    print(f"all {steps.count} steps passed in {total:.0f} ms", flush=True)
    return 0
