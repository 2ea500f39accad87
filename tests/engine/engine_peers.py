"""Helpers for the engine tests over real sockets: raw-transport workers and frame builders.

A `RawWorker` plays a well-behaved worker with nothing but a `Transport` and JSON: it reads
`workerregistered`, registers its functions and triggers, calls `engine::workers::register`
(void), answers every `invokefunction` it receives with an `invocationresult`, and makes
calls of its own. Everything it receives is kept, in order, so tests can assert on frames.
The engine tests use it instead of the worker runtime so that a runtime bug cannot hide (or
fake) an engine bug.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from anyiii._engine.router import Router
from anyiii._errors import ConnectionClosed
from anyiii._protocol.frames import decode_value, to_raw
from anyiii._transport import Transport, open_websocket
from anyiii.engine import EmbeddedEngine

ENGINE_WORKER = "anyiii-engine"
SERVICE_FUNCTIONS = tuple(Router().services.descriptions())
"""Functions the engine's own services serve, listed under the engine's worker name."""
"""The name the engine's own functions are listed under in `engine::workers::list`."""

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""Serves one `invokefunction` frame (the whole frame); returns the result or raises `Fail`."""


class Fail(Exception):
    """Raised by a handler: the invocation is answered with this error body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode(frame: Mapping[str, Any]) -> bytes:
    return json.dumps(frame).encode()


def decode(message: bytes) -> dict[str, Any]:
    value = json.loads(message)
    assert isinstance(value, dict), value
    return value


def new_id() -> str:
    return str(uuid.uuid4())


def call_frame(
    function_id: str, data: Any = None, *, invocation_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "invokefunction", "function_id": function_id, "data": data}
    if invocation_id is not None:
        frame["invocation_id"] = invocation_id
    frame.update(extra)
    return frame


def register_frame(name: str, **extra: Any) -> dict[str, Any]:
    """The void `engine::workers::register` call, with a `pid` so the worker is listed."""
    data = {"name": name, "runtime": "raw", "version": "0", "pid": os.getpid(), **extra}
    return call_frame("engine::workers::register", data, action={"type": "void"})


def http_binding(function_id: str, api_path: str, method: str = "GET", **extra: Any) -> dict:
    config = {"api_path": api_path, "http_method": method}
    frame = {
        "type": "registertrigger",
        "id": new_id(),
        "trigger_type": "http",
        "function_id": function_id,
        "config": config,
    }
    frame.update(extra)
    return frame


async def send_binary(transport: Transport, payload: bytes) -> None:
    """Send one *binary* WebSocket message (the `Transport` API only sends text)."""
    protocol = transport._protocol  # type: ignore[attr-defined]
    protocol.send_binary(payload)
    await transport._submit(protocol.data_to_send())  # type: ignore[attr-defined]


async def send_fragments(transport: Transport, fragments: list[bytes]) -> None:
    """Send one text message as several WebSocket frames."""
    protocol = transport._protocol  # type: ignore[attr-defined]
    for index, fragment in enumerate(fragments):
        last = index == len(fragments) - 1
        if index == 0:
            protocol.send_text(fragment, fin=last)
        else:
            protocol.send_continuation(fragment, fin=last)
    await transport._submit(protocol.data_to_send())  # type: ignore[attr-defined]


async def close_and_collect(transport: Transport) -> list[bytes]:
    """Start the closing handshake ourselves and return every message the peer sent first.

    The peer echoes our close only after it has read everything we sent before it, so
    whatever it answered to those messages arrives before the echo: an empty list proves
    it answered nothing, with no timing involved.
    """
    protocol = transport._protocol  # type: ignore[attr-defined]
    protocol.send_close(1000, "done")
    await transport._submit(protocol.data_to_send())  # type: ignore[attr-defined]
    return await read_until_closed(transport)


async def read_until_closed(transport: Transport) -> list[bytes]:
    """Every message still to come, until the connection ends."""
    received: list[bytes] = []
    while True:
        try:
            received.append(await transport.receive())
        except ConnectionClosed:
            return received


async def read_to_eof(stream: anyio.abc.ByteStream) -> bytes:
    """Everything the peer sends until it closes (a reset ends it too)."""
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


async def barrier(transport: Transport) -> None:
    """App-level ping; the next message must be the pong, so every earlier frame was handled
    and none of them was answered."""
    await transport.send(encode({"type": "ping"}))
    assert decode(await transport.receive()) == {"type": "pong"}


@asynccontextmanager
async def raw_client(url: str, **options: Any) -> AsyncIterator[tuple[Transport, str]]:
    """A bare connection that has read `workerregistered`: (transport, worker_id)."""
    options.setdefault("ping_interval", None)
    async with open_websocket(url, **options) as transport:
        first = decode(await transport.receive())
        assert first["type"] == "workerregistered", first
        yield transport, first["worker_id"]


@dataclass(eq=False)
class RawWorker:
    """A worker played by hand over a raw transport (see the module docstring)."""

    transport: Transport
    worker_id: str
    name: str
    handlers: dict[str, Handler]
    tasks: anyio.abc.TaskGroup
    received: list[dict[str, Any]] = field(default_factory=list)
    """Every frame received after `workerregistered`, in order."""
    dispatched: list[dict[str, Any]] = field(default_factory=list)
    """Every `invokefunction` received."""
    worker_events: list[dict[str, Any]] = field(default_factory=list)
    """Payloads of `engine::workers-available` fires (when watching workers)."""
    closed: ConnectionClosed | None = None
    _results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.transport.send(encode(frame))

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; it is re-checked after every received frame."""
        while not predicate():
            if self.closed is not None:
                raise self.closed
            # Several tasks may wait at once: they share the event, and whoever finds it
            # already set (everyone re-checked after that change) arms a fresh one.
            if self._changed.is_set():
                self._changed = anyio.Event()
            await self._changed.wait()

    async def call(
        self, function_id: str, data: Any = None, *, invocation_id: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A synchronous call through the engine; returns the `invocationresult` frame."""
        invocation_id = invocation_id or new_id()
        await self.send(call_frame(function_id, data, invocation_id=invocation_id, **extra))
        await self.wait_until(lambda: invocation_id in self._results)
        return self._results.pop(invocation_id)

    async def result(self, function_id: str, data: Any = None, **extra: Any) -> Any:
        """A call that must succeed; returns its result value."""
        frame = await self.call(function_id, data, **extra)
        assert "error" not in frame, frame
        return frame.get("result")

    def take_result(self, invocation_id: str) -> dict[str, Any] | None:
        return self._results.pop(invocation_id, None)

    def has_result(self, invocation_id: str) -> bool:
        return invocation_id in self._results

    async def wait_for_worker_event(self, event: str, worker_id: str) -> None:
        await self.wait_until(
            lambda: {"event": event, "worker_id": worker_id} in self.worker_events
        )

    async def _read(self) -> None:
        while True:
            try:
                message = await self.transport.receive()
            except ConnectionClosed as exc:
                self.closed = exc
                self._changed.set()
                return
            frame = decode(message)
            self.received.append(frame)
            if frame["type"] == "invokefunction":
                self.dispatched.append(frame)
                self.tasks.start_soon(self._serve, frame)
            elif frame["type"] == "invocationresult":
                self._results[frame["invocation_id"]] = frame
            self._changed.set()

    async def _serve(self, frame: dict[str, Any]) -> None:
        function_id = frame["function_id"]
        answer: dict[str, Any] = {
            "type": "invocationresult",
            "invocation_id": frame["invocation_id"],
            "function_id": function_id,
        }
        handler = self.handlers.get(function_id)
        if handler is None:
            answer["error"] = {"code": "function_not_found", "message": function_id}
        else:
            try:
                result = await handler(frame)
            except Fail as failure:
                answer["error"] = {"code": failure.code, "message": failure.message}
            else:
                if result is not None:
                    answer["result"] = result
            finally:
                self._changed.set()  # the handler may have changed what waiters look at
        with suppress(ConnectionClosed):  # the engine may have dropped us meanwhile
            await self.send(answer)


async def echo(frame: dict[str, Any]) -> Any:
    return frame["data"]


@asynccontextmanager
async def raw_worker(
    url: str,
    name: str,
    functions: Mapping[str, Handler] | None = None,
    triggers: Iterable[Mapping[str, Any]] = (),
    *,
    watch_workers: bool = False,
    **options: Any,
) -> AsyncIterator[RawWorker]:
    """Connect a `RawWorker`, register everything, and return once the engine applied it.

    With `watch_workers`, the worker also subscribes to `engine::workers-available` and
    records every fire in `worker_events`.
    """
    handlers = dict(functions or {})
    bindings = list(triggers)
    if watch_workers:
        watcher = f"{name}::on_workers"

        async def on_workers(frame: dict[str, Any]) -> None:
            worker.worker_events.append(frame["data"])

        handlers[watcher] = on_workers
        bindings.append(
            {
                "type": "registertrigger",
                "id": new_id(),
                "trigger_type": "engine::workers-available",
                "function_id": watcher,
                "config": {},
            }
        )
    async with (
        raw_client(url, **options) as (transport, worker_id),
        anyio.create_task_group() as tasks,
    ):
        worker = RawWorker(transport, worker_id, name, handlers, tasks)
        tasks.start_soon(worker._read)
        for function_id in handlers:
            await worker.send({"type": "registerfunction", "id": function_id})
        for binding in bindings:
            await worker.send(binding)
        await worker.send(register_frame(name))
        # Frames are handled in order: once this answer arrives, all of the above is in.
        await worker.result("engine::functions::list", {})
        refused = [
            f
            for f in worker.received
            if f["type"] in ("registrationrejected", "triggerregistrationresult")
        ]
        assert refused == [], refused
        try:
            yield worker
        finally:
            tasks.cancel_scope.cancel()


async def assert_tables(
    engine: EmbeddedEngine,
    good: RawWorker,
    *,
    workers: Iterable[str],
    functions: Iterable[str],
    connections: int,
) -> None:
    """The router's tables, as `engine::workers::list` / `engine::functions::list` show them
    through `good`, hold exactly these workers and functions, and `good` is still served:
    it answers the engine's calls and its own calls through the engine.

    `connections` counts every open worker connection, listed or not (a connection is
    listed only once it reported a `pid` in `engine::workers::register`).
    """
    listed = (await good.result("engine::workers::list", {}))["workers"]
    names = [w["name"] for w in listed]
    assert sorted(names) == sorted([ENGINE_WORKER, *workers]), listed
    assert len({w["id"] for w in listed}) == len(listed), listed
    summaries = (await good.result("engine::functions::list", {}))["functions"]
    # The engine's own services (state::*) are listed like a worker's functions.
    services = sorted(f["function_id"] for f in summaries if f["worker_name"] == ENGINE_WORKER)
    assert services == sorted(SERVICE_FUNCTIONS), summaries
    listed_ids = sorted(f["function_id"] for f in summaries if f["worker_name"] != ENGINE_WORKER)
    assert listed_ids == sorted(functions), summaries
    assert {f["worker_name"] for f in summaries} <= set(names), (summaries, names)
    assert engine.worker_count == connections, (engine.worker_count, connections)
    result, error = await engine.invoke("good::echo", to_raw({"from": "engine"}))
    assert error is None, error
    assert result is not None
    assert decode_value(result) == {"from": "engine"}, result
    echoed = await good.result("good::echo", {"from": "good"})
    assert echoed == {"from": "good", "_caller_worker_id": good.worker_id}, echoed
