"""Trigger types provided by a worker (spec §6.2), and function discovery (spec §9).

Everything runs through the embedded engine on real sockets, with a second worker binding
to the provider's type, on asyncio and trio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import pytest
from test_runtime import FAST_RECONNECT, stoppable_engine

import anyiii
from anyiii.engine import EngineSettings


@asynccontextmanager
async def provider_and_binder() -> AsyncIterator[tuple[anyiii.Worker, anyiii.Worker]]:
    """An engine with two workers: one to provide trigger types, one to bind to them."""
    async with (
        anyiii.engine.run(http_port=None) as engine,
        anyiii.connect(engine.url) as provider,
        anyiii.connect(engine.url) as binder,
    ):
        yield provider, binder


async def durable_binding(
    worker: anyiii.Worker, trigger_type: str, function_id: str, config: Any = None
) -> Any:
    """Bind through `engine::register_trigger`, which answers with the provider's decision."""
    payload = {"trigger_type": trigger_type, "function_id": function_id, "config": config}
    return await worker.trigger_async(
        {"function_id": "engine::register_trigger", "payload": payload}
    )


async def round_trip(worker: anyiii.Worker) -> None:
    """A call on the worker's connection: the engine has handled every frame sent before."""
    await worker.trigger_async({"function_id": "engine::triggers::list", "payload": {}})


class RecordingHandler(anyiii.TriggerHandler):
    """Accepts every binding (or refuses those whose config says so) and records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, anyiii.TriggerConfig]] = []
        self.active: dict[str, anyiii.TriggerConfig] = {}
        self.changed = anyio.Event()

    def _note(self, what: str, config: anyiii.TriggerConfig) -> None:
        self.calls.append((what, config))
        self.changed.set()
        self.changed = anyio.Event()

    async def register_trigger(self, config: anyiii.TriggerConfig) -> None:
        await anyio.lowlevel.checkpoint()
        if isinstance(config.config, dict) and config.config.get("refuse"):
            self._note("refused", config)
            raise ValueError(f"cannot watch {config.config['refuse']}")
        self.active[config.id] = config
        self._note("register", config)

    async def unregister_trigger(self, config: anyiii.TriggerConfig) -> None:
        self.active.pop(config.id, None)
        self._note("unregister", config)

    async def wait_for(self, what: str, count: int = 1) -> list[anyiii.TriggerConfig]:
        while sum(1 for w, _ in self.calls if w == what) < count:
            await self.changed.wait()
        return [c for w, c in self.calls if w == what]


async def test_a_binding_reaches_the_provider_which_fires_it_with_the_metadata() -> None:
    handler = RecordingHandler()
    fired: list[tuple[Any, Any]] = []
    got_event = anyio.Event()
    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url, worker_name="provider") as provider,
            anyiii.connect(engine.url, worker_name="binder") as binder,
        ):
            handle = provider.register_trigger_type(
                "ticks::every",
                handler,
                description="fires every N ticks",
                trigger_request_format={"type": "object"},
            )
            assert handle.id == "ticks::every"

            @binder.function("app::on_tick")
            async def on_tick(data: Any, metadata: Any) -> None:
                fired.append((data, metadata))
                got_event.set()

            trigger = await binder.register_trigger(
                "ticks::every", "app::on_tick", {"n": 3}, metadata={"tenant": "t1"}
            )
            [config] = await handler.wait_for("register")
            assert config.id == trigger.id
            assert config.trigger_type == "ticks::every"
            assert config.function_id == "app::on_tick"
            assert config.config == {"n": 3}
            assert config.metadata == {"tenant": "t1"}

            await provider.trigger_async(
                {
                    "function_id": config.function_id,
                    "payload": {"tick": 3},
                    "metadata": config.metadata,
                    "namespace": config.namespace,
                    "action": anyiii.TriggerAction.Void(),
                }
            )
            await got_event.wait()
            data, metadata = fired[0]
            assert data["tick"] == 3
            assert metadata == {"tenant": "t1"}

            types = await binder.trigger_async(
                {"function_id": "engine::triggers::info", "payload": {"id": "ticks::every"}}
            )
            assert types["description"] == "fires every N ticks"

            await trigger.unregister()
            [gone] = await handler.wait_for("unregister")
            assert gone.id == trigger.id
            assert handler.active == {}


class EventOnLog(logging.Handler):
    """Sets an event when a record containing `text` is logged (on the event loop thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = anyio.Event()
        self.record: logging.LogRecord | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.record = record
            self.seen.set()


async def test_a_refusal_reaches_the_binder_with_the_handlers_message() -> None:
    handler = RecordingHandler()
    with anyio.fail_after(20):
        async with provider_and_binder() as (provider, binder):
            provider.register_trigger_type("files::watch", handler)
            await round_trip(provider)
            binder.register_function("app::changed", lambda data: None)
            # The durable built-in waits for the provider's answer, so the refusal comes
            # back to the caller synchronously.
            with pytest.raises(anyiii.InvocationError) as caught:
                await durable_binding(binder, "files::watch", "app::changed", {"refuse": "/etc"})
            assert "trigger_registration_failed" in caught.value.message
            assert "cannot watch /etc" in caught.value.message
            assert handler.active == {}

            # A direct binding's refusal is reported to the binder, which logs it.
            logged = EventOnLog("cannot watch /x")
            worker_logger = logging.getLogger("anyiii.worker")
            worker_logger.addHandler(logged)
            try:
                await binder.register_trigger("files::watch", "app::changed", {"refuse": "/x"})
                await logged.seen.wait()
            finally:
                worker_logger.removeHandler(logged)
            assert logged.record is not None
            assert logged.record.levelno == logging.WARNING


async def test_plain_handler_methods_and_unknown_types_are_answered() -> None:
    """Plain methods run in a worker thread (like plain function handlers), never on the
    event loop's thread, where they would stall every invocation."""
    registered: list[str] = []
    threads: list[int] = []
    done = anyio.Event()
    loop_thread = threading.get_ident()

    class Plain:
        def register_trigger(self, config: anyiii.TriggerConfig) -> None:
            threads.append(threading.get_ident())
            registered.append(config.id)
            anyio.from_thread.run_sync(done.set)

        def unregister_trigger(self, config: anyiii.TriggerConfig) -> None:
            threads.append(threading.get_ident())
            registered.remove(config.id)

    with anyio.fail_after(20):
        async with provider_and_binder() as (provider, binder):
            provider.register_trigger_type("plain::type", Plain())
            await round_trip(provider)
            binder.register_function("app::f", lambda data: None)
            result = await durable_binding(binder, "plain::type", "app::f")
            await done.wait()
            assert registered == [result["id"]]
            assert threads
            assert loop_thread not in threads
            with pytest.raises(TypeError, match="register_trigger"):
                provider.register_trigger_type("bad::type", object())
            with pytest.raises(ValueError, match="empty"):
                provider.register_trigger_type("", Plain())


async def test_bindings_made_before_the_provider_exists_are_delivered_later() -> None:
    handler = RecordingHandler()
    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url) as binder,
        ):
            binder.register_function("app::f", lambda data: None)
            trigger = await binder.register_trigger("late::type", "app::f", {"k": 1})
            async with anyiii.connect(engine.url) as provider:
                provider.register_trigger_type("late::type", handler)
                [config] = await handler.wait_for("register")
                assert (config.id, config.config) == (trigger.id, {"k": 1})
            # The provider's connection ended: its handler was told to drop the binding.
            [gone] = await handler.wait_for("unregister")
            assert gone.id == trigger.id


async def test_unregistering_the_type_releases_its_bindings() -> None:
    handler = RecordingHandler()
    with anyio.fail_after(20):
        async with provider_and_binder() as (provider, binder):
            handle = provider.register_trigger_type("gone::type", handler)
            binder.register_function("app::f", lambda data: None)
            await binder.register_trigger("gone::type", "app::f")
            await handler.wait_for("register")
            await handle.unregister()
            await handler.wait_for("unregister")
            assert handler.active == {}
            listed = await binder.trigger_async(
                {"function_id": "engine::triggers::list", "payload": {}}
            )
            assert "gone::type" not in {t["id"] for t in listed["triggers"]}


async def test_an_engine_restart_unregisters_then_registers_the_binding_again() -> None:
    handler = RecordingHandler()
    settings = EngineSettings(shutdown_timeout=1.0)
    with anyio.fail_after(60):
        async with stoppable_engine() as (engine, stop, stopped):
            port = engine.port
            async with (
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT) as provider,
                anyiii.connect(engine.url, reconnect=FAST_RECONNECT) as binder,
            ):
                provider.register_trigger_type("restart::type", handler)
                binder.register_function("app::f", lambda data: None)
                trigger = await binder.register_trigger("restart::type", "app::f", {"x": 1})
                await handler.wait_for("register")
                stop.set()
                await stopped.wait()
                [lost] = await handler.wait_for("unregister")
                assert lost.id == trigger.id
                async with anyiii.engine.run(port=port, http_port=None, settings=settings):
                    registered = await handler.wait_for("register", 2)
                    assert registered[-1].id == trigger.id
                    assert registered[-1].config == {"x": 1}
                    assert list(handler.active) == [trigger.id]


async def test_on_functions_available_reports_changes_until_stopped() -> None:
    seen: list[list[anyiii.FunctionInfo]] = []
    changed = anyio.Event()

    async def on_change(functions: list[anyiii.FunctionInfo]) -> None:
        seen.append(functions)
        changed.set()

    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url, worker_name="watcher") as watcher,
            anyiii.connect(engine.url, worker_name="other") as other,
        ):
            stop = watcher.on_functions_available(on_change)
            other.register_function("shop::checkout", lambda data: None, description="pay")
            while not any(
                f.function_id == "shop::checkout" for fs in seen for f in fs
            ):  # the first notification may predate the registration
                changed = anyio.Event()
                await changed.wait()
            info = next(f for f in seen[-1] if f.function_id == "shop::checkout")
            assert info.description == "pay"
            assert info.worker_name == "other"
            assert any(f.function_id == "engine::functions::list" for f in seen[-1])
            stop()
            listed = await watcher.trigger_async(
                {"function_id": "engine::registered-triggers::list", "payload": {}}
            )
            assert not [
                t
                for t in listed["registered_triggers"]
                if t["trigger_type"] == "engine::functions-available"
            ]


async def test_functions_available_as_an_async_iterator_and_a_plain_callback() -> None:
    from_thread: list[int] = []
    thread_saw = anyio.Event()
    token = anyio.lowlevel.current_token()

    def plain(functions: list[anyiii.FunctionInfo]) -> None:
        from_thread.append(len(functions))
        anyio.from_thread.run_sync(thread_saw.set, token=token)

    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url) as watcher,
            anyiii.connect(engine.url) as other,
        ):
            watcher.on_functions_available(plain)
            async with watcher.functions_available() as updates:
                other.register_function("inv::count", lambda data: 0)
                async for functions in updates:
                    if any(f.function_id == "inv::count" for f in functions):
                        break
            await thread_saw.wait()
            assert from_thread
        # The subscription ended with the worker; iterating it again finishes at once.
        assert [f async for f in updates] == []


async def test_a_malformed_functions_available_payload_is_an_error_result() -> None:
    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url) as watcher,
        ):
            watcher.on_functions_available(lambda functions: None)
            listed = await watcher.trigger_async(
                {"function_id": "engine::functions::list", "payload": {"include_internal": True}}
            )
            [function_id] = [
                f["function_id"]
                for f in listed["functions"]
                if f["function_id"].startswith("anyiii::functions-available::")
            ]
            with pytest.raises(anyiii.InvocationError, match="not a functions-available"):
                await watcher.trigger_async(
                    {"function_id": function_id, "payload": {"functions": "nope"}}
                )
