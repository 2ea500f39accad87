"""`anyiii.get_context()`, trace propagation and the optional OpenTelemetry spans, through
the embedded engine on real sockets, on asyncio and trio."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from engine_peers import raw_worker
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import anyiii

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
BAGGAGE = "tenant=acme,plan=gold"


def exporter() -> InMemorySpanExporter:
    """One in-memory exporter behind the process-wide tracer provider (set only once)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        provider._anyiii_exporter = InMemorySpanExporter()  # type: ignore[attr-defined]
        provider.add_span_processor(SimpleSpanProcessor(provider._anyiii_exporter))  # type: ignore[attr-defined]
        trace.set_tracer_provider(provider)
    found: InMemorySpanExporter = provider._anyiii_exporter  # type: ignore[attr-defined]
    found.clear()
    return found


def test_outside_a_handler_there_is_no_context() -> None:
    with pytest.raises(anyiii.NoInvocationContext, match="only available while a function"):
        anyiii.get_context()
    assert issubclass(anyiii.NoInvocationContext, RuntimeError)


async def test_the_context_in_handlers_their_tasks_and_threads() -> None:
    seen: dict[str, Any] = {}

    async def in_child_task(into: dict[str, Any]) -> None:
        into["child"] = anyiii.get_context().invocation_id

    async def async_handler(data: Any) -> str:
        context = anyiii.get_context()
        seen["async"] = context
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(in_child_task, seen)
        seen["thread"] = await anyio.to_thread.run_sync(lambda: anyiii.get_context().function_id)
        return "ok"

    def sync_handler(data: Any) -> str:
        context = anyiii.get_context()
        seen["sync"] = (context.function_id, context.metadata, threading.current_thread().name)
        return "ok"

    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url, worker_name="ctx") as worker,
        ):
            worker.register_function("ctx::async", async_handler)
            worker.register_function("ctx::sync", sync_handler)
            await worker.trigger_async(
                {"function_id": "ctx::async", "payload": {}, "metadata": {"k": 1}}
            )
            await worker.trigger_async(
                {"function_id": "ctx::sync", "payload": {}, "metadata": {"k": 2}}
            )
            context = seen["async"]
            assert context.function_id == "ctx::async"
            assert context.metadata == {"k": 1}
            assert context.worker is worker
            assert isinstance(context.invocation_id, str)
            assert seen["child"] == context.invocation_id
            assert seen["thread"] == "ctx::async"
            assert seen["sync"][:2] == ("ctx::sync", {"k": 2})
            assert context.trace.traceparent is None
            assert context.trace.trace_id is None
        with pytest.raises(anyiii.NoInvocationContext):
            anyiii.get_context()  # nothing leaked into the caller


async def test_concurrent_invocations_never_see_each_others_context() -> None:
    mismatches: list[tuple[Any, Any]] = []

    async def handler(data: dict[str, int]) -> int:
        before = anyiii.get_context().invocation_id
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        after = anyiii.get_context()
        if after.invocation_id != before or after.metadata != {"n": data["n"]}:
            mismatches.append((before, after.invocation_id))
        return data["n"]

    with anyio.fail_after(30):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            worker.register_function("ctx::n", handler)
            results: list[int] = []

            async def call(n: int) -> None:
                results.append(
                    await worker.trigger_async(
                        {"function_id": "ctx::n", "payload": {"n": n}, "metadata": {"n": n}}
                    )
                )

            async with anyio.create_task_group() as tasks:
                for n in range(200):
                    tasks.start_soon(call, n)
            assert sorted(results) == list(range(200))
            assert mismatches == []


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_the_trace_is_carried_on_and_logged() -> None:
    """A raw caller sends a traceparent and baggage; the handler calls on; both hops share
    the trace id with new span ids, and the handler's log records carry the ids."""
    seen: dict[str, anyiii.Context] = {}
    records = Records()
    handler_logger = logging.getLogger("anyiii.handler")
    handler_logger.addHandler(records)
    handler_logger.setLevel(logging.INFO)

    async def first(data: Any) -> Any:
        context = anyiii.get_context()
        seen["first"] = context
        context.logger.info("first hop", extra={"step": 1})
        return await context.worker.trigger_async({"function_id": "trace::second", "payload": {}})

    async def second(data: Any) -> str:
        seen["second"] = anyiii.get_context()
        return "done"

    try:
        with anyio.fail_after(20):
            async with (
                anyiii.engine.run(http_port=None) as engine,
                anyiii.connect(engine.url) as worker,
                raw_worker(engine.url, "raw-caller") as caller,
            ):
                worker.register_function("trace::first", first)
                worker.register_function("trace::second", second)
                await worker.trigger_async(
                    {"function_id": "engine::functions::list", "payload": {}}
                )
                result = await caller.result(
                    "trace::first", {}, traceparent=TRACEPARENT, baggage=BAGGAGE
                )
                assert result == "done"
                bad = await caller.result("trace::second", {}, traceparent="not-a-traceparent")
                assert bad == "done"
                assert seen["second"].trace.traceparent == "not-a-traceparent"
                assert seen["second"].trace.trace_id is None
    finally:
        handler_logger.removeHandler(records)
        handler_logger.setLevel(logging.NOTSET)

    first_trace = seen["first"].trace
    assert first_trace.traceparent == TRACEPARENT
    assert (first_trace.trace_id, first_trace.span_id) == (TRACE_ID, "b7ad6b7169203331")
    assert first_trace.baggage == BAGGAGE
    [record] = [r for r in records.records if r.getMessage() == "first hop"]
    assert record.function_id == "trace::first"  # type: ignore[attr-defined]
    assert record.invocation_id == seen["first"].invocation_id  # type: ignore[attr-defined]
    assert record.trace_id == TRACE_ID  # type: ignore[attr-defined]
    assert record.step == 1  # type: ignore[attr-defined]


async def test_the_second_hop_is_a_child_of_the_first() -> None:
    hops: list[anyiii.TraceContext] = []

    async def first(data: Any) -> Any:
        hops.append(anyiii.get_context().trace)
        return await anyiii.get_context().worker.trigger_async(
            {"function_id": "hop::second", "payload": {}}
        )

    async def second(data: Any) -> None:
        hops.append(anyiii.get_context().trace)

    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url) as worker,
            raw_worker(engine.url, "raw-caller") as caller,
        ):
            worker.register_function("hop::first", first)
            worker.register_function("hop::second", second)
            await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            await caller.result("hop::first", {}, traceparent=TRACEPARENT, baggage=BAGGAGE)
    outer, inner = hops
    assert inner.trace_id == outer.trace_id == TRACE_ID
    assert inner.span_id not in (None, outer.span_id)
    assert inner.sampled is True
    assert inner.baggage == BAGGAGE


async def test_opentelemetry_spans_when_turned_on() -> None:
    spans = exporter()

    async def first(data: Any) -> Any:
        return await anyiii.get_context().worker.trigger_async(
            {"function_id": "otel::second", "payload": {}}
        )

    async def second(data: Any) -> str:
        raise ValueError("second failed")

    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url, otel={"enabled": True, "service_name": "t"}) as worker,
            raw_worker(engine.url, "raw-caller") as caller,
        ):
            worker.register_function("otel::first", first)
            worker.register_function("otel::second", second)
            await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            frame = await caller.call("otel::first", {}, traceparent=TRACEPARENT)
            assert frame["error"]["message"].endswith("second failed")
    finished = {span.name: span for span in spans.get_finished_spans()}
    outer, inner = finished["otel::first"], finished["otel::second"]
    assert outer.context.trace_id == int(TRACE_ID, 16)
    assert outer.parent is not None
    assert outer.parent.span_id == int("b7ad6b7169203331", 16)
    assert inner.context.trace_id == outer.context.trace_id
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert inner.status.status_code is trace.StatusCode.ERROR
    assert outer.attributes is not None
    assert outer.attributes["iii.function_id"] == "otel::first"


async def test_opentelemetry_off_creates_no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = exporter()
    monkeypatch.setenv("OTEL_ENABLED", "false")
    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url, otel=True) as on_but_disabled,
            anyiii.connect(engine.url, otel={"enabled": False}) as off,
        ):
            on_but_disabled.register_function("o::a", lambda data: 1)
            off.register_function("o::b", lambda data: 2)
            for each in (on_but_disabled, off):  # their registrations are applied
                await each.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            assert await off.trigger_async({"function_id": "o::a", "payload": None}) == 1
            assert (
                await on_but_disabled.trigger_async({"function_id": "o::b", "payload": None}) == 2
            )
    assert spans.get_finished_spans() == ()
