"""`anyiii demo`: two workers and an engine, wired together through the protocol core.

There is no socket here yet: the demo moves each frame from one core to the other by hand,
the way the runtime will move it over a WebSocket, and prints every step with its timing.
It exits non-zero with a clear message if any step does not produce what the protocol says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from ._protocol import events as ev
from ._protocol.codes import FUNCTION_NOT_FOUND
from ._protocol.engine import EngineConnection
from ._protocol.frames import ErrorBody, RegisterFunction, decode_value, to_raw
from ._protocol.ids import random_uuid
from ._protocol.registry import Registry, WorkerInfo
from ._protocol.worker import WorkerConnection

__all__ = ["run_demo"]

E = TypeVar("E", bound=ev.Event)


class DemoFailure(Exception):
    """A step did not do what the protocol promises."""


def _only(events: Sequence[ev.Event], kind: type[E]) -> E:
    found = [e for e in events if isinstance(e, kind)]
    if len(found) != 1:
        raise DemoFailure(f"expected one {kind.__name__}, got {list(events)!r}")
    return found[0]


def _show(direction: str, frame: bytes) -> None:
    text = frame.decode()
    print(f"      {direction} {text if len(text) <= 110 else text[:107] + '...'}")


def _step(number: int, title: str, body: Callable[[], None]) -> None:
    print(f"  {number}. {title}")
    started = time.perf_counter()
    body()
    print(f"      ok ({(time.perf_counter() - started) * 1e6:.0f} µs)")


def run_demo(*, exchanges: int = 20_000) -> int:
    """Run the walkthrough; returns the process exit code."""
    print("anyiii demo: the sans-IO protocol core (no sockets yet)\n")
    engine_a = EngineConnection(random_uuid(), random_uuid())
    engine_b = EngineConnection(random_uuid(), random_uuid())
    caller, callee = WorkerConnection(), WorkerConnection()

    def handshake() -> None:
        for engine, worker, name in ((engine_a, caller, "caller"), (engine_b, callee, "callee")):
            frame = engine.start()
            _show("E→W", frame)
            registered = _only(worker.receive(frame), ev.Registered)
            print(f"      {name} is worker {registered.worker_id}")

    def register() -> None:
        registry = Registry()
        registry.add(RegisterFunction(id="math::add", description="Adds a and b"))
        info = WorkerInfo(name="demo-callee", pid=1, version="demo")
        for frame in callee.open_sequence(registry, info):
            _show("W→E", frame)
            engine_b.receive(frame)

    def call_and_answer() -> None:
        invocation_id, frame = caller.call("math::add", to_raw({"a": 2, "b": 3}))
        _show("W→E", frame)
        request = _only(engine_a.receive(frame), ev.CallRequested).call
        dispatch = engine_b.dispatch(invocation_id, request.function_id, request.data)
        _show("E→W", dispatch)
        invocation = _only(callee.receive(dispatch), ev.InvocationRequested)
        data = decode_value(invocation.data)
        if not isinstance(data, dict):
            raise DemoFailure(f"payload arrived as {data!r}")
        answer = callee.complete(invocation_id, to_raw({"c": data["a"] + data["b"]}))
        _show("W→E", answer)
        result = _only(engine_b.receive(answer), ev.ResultReceived).result
        relay = engine_a.deliver_result(invocation_id, result.result)  # type: ignore[arg-type]
        _show("E→W", relay)
        completed = _only(caller.receive(relay), ev.CallCompleted)
        value = decode_value(completed.result) if completed.result is not None else None
        if value != {"c": 5}:
            raise DemoFailure(f"math::add(2, 3) returned {value!r}")
        print(f"      math::add(2, 3) = {value}")

    def unknown_function() -> None:
        invocation_id, frame = caller.call("math::nope")
        engine_a.receive(frame)
        message = "Function math::nope not found in namespace default"
        relay = engine_a.deliver_result(
            invocation_id, error=ErrorBody(code=FUNCTION_NOT_FOUND, message=message)
        )
        _show("E→W", relay)
        failed = _only(caller.receive(relay), ev.CallFailed)
        print(f"      the caller learns at once: {failed.error.code}: {failed.error.message}")

    def callee_dies() -> None:
        invocation_id, frame = caller.call("math::add", to_raw({"a": 1, "b": 1}))
        engine_a.receive(frame)
        engine_b.dispatch(invocation_id, "math::add", to_raw({"a": 1, "b": 1}))
        lost = _only(engine_b.receive(None), ev.ConnectionLost)
        _only(callee.receive(None), ev.ConnectionLost)
        stopped = [i for i, _ in lost.invocations]
        if stopped != [invocation_id]:
            raise DemoFailure(f"the engine lost track of {invocation_id}: {lost!r}")
        print(f"      the engine knows exactly which call to stop: {stopped[0]}")

    def throughput() -> None:
        engine_c = EngineConnection(random_uuid(), random_uuid())
        worker_c = WorkerConnection()
        worker_c.receive(engine_c.start())
        payload = to_raw({"a": 2, "b": 3})
        result = to_raw({"c": 5})
        started = time.perf_counter()
        for _ in range(exchanges):
            invocation_id, frame = caller.call("math::add", payload)
            engine_a.receive(frame)
            worker_c.receive(engine_c.dispatch(invocation_id, "math::add", payload))
            engine_c.receive(worker_c.complete(invocation_id, result))
            caller.receive(engine_a.deliver_result(invocation_id, result))
        elapsed = time.perf_counter() - started
        print(
            f"      {exchanges} routed invocations through four cores: "
            f"{elapsed / exchanges * 1e6:.1f} µs each, {exchanges / elapsed:,.0f}/s"
        )

    steps = [
        ("the engine greets each worker (workerregistered)", handshake),
        ("the callee replays its registrations (spec §4.2 order)", register),
        ("the caller calls math::add through the engine", call_and_answer),
        ("a call to a function nobody serves fails fast", unknown_function),
        ("the callee's connection drops mid-call", callee_dies),
        ("throughput of the cores alone", throughput),
    ]
    try:
        for number, (title, body) in enumerate(steps, start=1):
            _step(number, title, body)
    except Exception as exc:  # the demo reports any failure as its result
        print(f"\nFAILED: {type(exc).__name__}: {exc}")
        return 1
    print("\nall steps passed")
    return 0
