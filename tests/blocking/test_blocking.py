"""The blocking facade (`anyiii.register_worker`) against the embedded engine.

Each test runs on asyncio and on trio twice over: the embedded engine runs on the test's
event loop, and the facade's background loop uses the same backend. The facade's blocking
calls are made from a plain thread (`anyio.to_thread.run_sync`), as a script would make
them; `trigger_async` is also awaited from the test's own loop.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx
import pytest
from http_target import target_server
from iii_helpers.http import HttpAuthBearer as OfficialBearer
from iii_helpers.http import HttpInvocationConfig as OfficialInvocation

import anyiii
from anyiii.engine import EmbeddedEngine, EngineSettings, HttpFunctionSettings

T = TypeVar("T")


@pytest.fixture
def facade_backend(anyio_backend: tuple[str, dict[str, Any]]) -> str:
    return anyio_backend[0]


@asynccontextmanager
async def engine() -> AsyncIterator[EmbeddedEngine]:
    async with anyiii.engine.run(settings=EngineSettings(shutdown_timeout=1.0)) as running:
        yield running


def options(backend: str, **more: Any) -> anyiii.InitOptions:
    return anyiii.InitOptions(backend=backend, drain_timeout=1.0, close_timeout=1.0, **more)  # type: ignore[arg-type]


def settle(client: anyiii.BlockingWorker) -> None:
    """A round trip on the client's connection: the engine has handled its registrations
    (frames of one connection are handled in order; other workers' calls are not)."""
    client.trigger({"function_id": "engine::functions::list", "payload": {}})


async def in_thread(function: Callable[[], T]) -> T:
    """Run blocking facade code in a plain thread, bounded."""
    with anyio.fail_after(30):
        return await anyio.to_thread.run_sync(function)


async def test_functions_calls_and_errors(facade_backend: str) -> None:
    async with engine() as running:

        def scenario() -> None:
            with (
                anyiii.register_worker(running.url, options(facade_backend)) as a,
                anyiii.register_worker(running.url, options(facade_backend)) as b,
            ):

                async def add(data: dict[str, int]) -> int:
                    return data["a"] + data["b"]

                def shout(text: str) -> str:  # a plain handler runs in a thread
                    assert threading.current_thread() is not threading.main_thread()
                    return text.upper()

                ref = a.register_function("m::add", add, description="adds")
                b.register_function("m::shout", shout)
                settle(a)
                settle(b)
                assert ref.id == "m::add"
                assert b.trigger({"function_id": "m::add", "payload": {"a": 2, "b": 3}}) == 5
                assert (
                    a.trigger(anyiii.TriggerRequest(function_id="m::shout", payload="hi")) == "HI"
                )
                void = {
                    "function_id": "m::add",
                    "payload": {"a": 1, "b": 1},
                    "action": {"type": "void"},
                }
                assert b.trigger(void) is None
                with pytest.raises(anyiii.InvocationError) as caught:
                    a.trigger({"function_id": "m::nobody", "payload": {}})
                assert caught.value.code == "function_not_found"
                ref.unregister()
                settle(a)
                with pytest.raises(anyiii.InvocationError):
                    b.trigger({"function_id": "m::add", "payload": {"a": 2, "b": 3}})

        await in_thread(scenario)


async def test_timeouts_use_the_invocation_timeout_option(facade_backend: str) -> None:
    async with engine() as running:

        def scenario() -> None:
            release = threading.Event()
            with anyiii.register_worker(
                running.url, options(facade_backend, invocation_timeout_ms=200)
            ) as client:
                client.register_function("slow::wait", lambda data: release.wait(10))
                with pytest.raises(anyiii.InvocationError) as caught:
                    client.trigger({"function_id": "slow::wait", "payload": None})
                assert caught.value.code == "TIMEOUT"
                release.set()

        await in_thread(scenario)


async def test_trigger_async_from_the_callers_own_loop(facade_backend: str) -> None:
    async with engine() as running:
        client = await in_thread(
            lambda: anyiii.register_worker(running.url, options(facade_backend))
        )
        try:

            async def double(n: int) -> int:
                return n * 2

            await in_thread(lambda: client.register_function("n::double", double))
            with anyio.fail_after(10):
                assert await client.trigger_async({"function_id": "n::double", "payload": 21}) == 42
        finally:
            await client.shutdown_async()


async def test_a_blocking_call_on_the_workers_own_loop_is_refused_not_a_deadlock(
    facade_backend: str,
) -> None:
    async with engine() as running:

        def scenario() -> None:
            with anyiii.register_worker(running.url, options(facade_backend)) as client:
                client.register_function("n::one", lambda data: 1)

                async def blocking_inside(data: Any) -> Any:
                    return client.trigger({"function_id": "n::one", "payload": None})

                async def async_inside(data: Any) -> Any:
                    return await client.trigger_async({"function_id": "n::one", "payload": None})

                client.register_function("n::blocking", blocking_inside)
                client.register_function("n::async", async_inside)
                with pytest.raises(anyiii.InvocationError, match="trigger_async"):
                    client.trigger({"function_id": "n::blocking", "payload": None})
                assert client.trigger({"function_id": "n::async", "payload": None}) == 1

        await in_thread(scenario)


async def test_connection_state_callbacks_and_function_discovery(facade_backend: str) -> None:
    async with engine() as running:

        def scenario() -> None:
            states: list[str] = []
            seen = threading.Event()
            lists: list[list[anyiii.FunctionInfo]] = []

            def on_functions(functions: list[anyiii.FunctionInfo]) -> None:
                lists.append(functions)
                if any(f.function_id == "d::new" for f in functions):
                    seen.set()

            with anyiii.register_worker(running.url, options(facade_backend)) as client:
                stop_states = client.add_connection_state_listener(states.append)
                assert states == ["connected"]
                assert client.get_connection_state() == "connected"
                client.on_functions_available(on_functions)
                client.register_function("d::new", lambda data: None)
                assert seen.wait(10)
                stop_states()
            assert client.get_connection_state() == "disconnected"
            assert states == ["connected"]  # stopped before the shutdown

        await in_thread(scenario)


async def test_register_trigger_both_shapes_serve_http(facade_backend: str) -> None:
    async with engine() as running:
        assert running.http_url is not None
        base = running.http_url

        def scenario() -> None:
            with anyiii.register_worker(running.url, options(facade_backend)) as client:

                async def hello(req: anyiii.ApiRequest) -> anyiii.ApiResponse:
                    return anyiii.ApiResponse(statusCode=201, body={"hi": req.path_params["n"]})

                client.register_function("h::hello", hello)
                client.register_function("h::plain", lambda data: {"status_code": 202})
                client.register_trigger(
                    {
                        "type": "http",
                        "function_id": "h::hello",
                        "config": {"api_path": "hello/:n", "http_method": "GET"},
                    }
                )
                plain = client.register_trigger(
                    "http", "h::plain", {"api_path": "plain", "http_method": "GET"}
                )
                client.trigger({"function_id": "engine::functions::list", "payload": {}})
                with httpx.Client(base_url=base) as http:
                    response = http.get("/hello/ada")
                    assert (response.status_code, response.json()) == (201, {"hi": "ada"})
                    assert http.get("/plain").status_code == 202
                    plain.unregister()
                    client.trigger({"function_id": "engine::functions::list", "payload": {}})
                    assert http.get("/plain").status_code == 404

        await in_thread(scenario)


async def test_a_trigger_type_provided_through_the_facade(facade_backend: str) -> None:
    async with engine() as running:

        class Handler:
            def __init__(self) -> None:
                self.bound = threading.Event()
                self.configs: list[anyiii.TriggerConfig] = []

            async def register_trigger(self, config: anyiii.TriggerConfig) -> None:
                self.configs.append(config)
                self.bound.set()

            async def unregister_trigger(self, config: anyiii.TriggerConfig) -> None:
                pass

        def scenario() -> None:
            handler = Handler()
            fired = threading.Event()
            with (
                anyiii.register_worker(running.url, options(facade_backend)) as provider,
                anyiii.register_worker(running.url, options(facade_backend)) as binder,
            ):
                provider.register_trigger_type({"id": "t::tick", "description": "ticks"}, handler)
                binder.register_function("app::on_tick", lambda data: fired.set())
                settle(binder)
                binder.register_trigger("t::tick", "app::on_tick", {"every": 1})
                assert handler.bound.wait(10)
                [config] = handler.configs
                assert (config.function_id, config.config) == ("app::on_tick", {"every": 1})
                provider.trigger({"function_id": config.function_id, "payload": {"tick": 1}})
                assert fired.wait(10)
                provider.unregister_trigger_type("t::tick")

        await in_thread(scenario)


async def test_a_background_failure_surfaces_on_the_next_call_and_in_serve_forever(
    facade_backend: str,
) -> None:
    stopped = anyio.Event()
    stop = anyio.Event()
    ready = anyio.Event()
    box: list[EmbeddedEngine] = []

    async def serve() -> None:
        async with engine() as running:
            box.append(running)
            ready.set()
            await stop.wait()
        stopped.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(serve)
        await ready.wait()
        no_retries = options(facade_backend, reconnection_config={"max_retries": 0})
        client = await in_thread(lambda: anyiii.register_worker(box[0].url, no_retries))
        try:
            stop.set()
            await stopped.wait()
            with pytest.raises(anyiii.ConnectionClosed):
                await in_thread(client.serve_forever)
            with pytest.raises(anyiii.ConnectionClosed):
                await in_thread(lambda: client.trigger({"function_id": "x", "payload": None}))
            assert client.get_connection_state() == "failed"
        finally:
            await client.shutdown_async()


async def test_shutdown_ends_serve_forever_joins_the_thread_and_refuses_later_calls(
    facade_backend: str,
) -> None:
    async with engine() as running:
        before = set(threading.enumerate())

        def scenario() -> None:
            client = anyiii.register_worker(running.url, options(facade_backend))
            client.register_function("s::x", lambda data: 1)
            stopper = threading.Timer(0, client.shutdown)  # shut down from another thread
            stopper.start()
            client.serve_forever()  # returns once shut down
            stopper.join()
            client.shutdown()  # idempotent
            with pytest.raises(anyiii.WorkerShutDown):
                client.trigger({"function_id": "s::x", "payload": None})
            with pytest.raises(anyiii.WorkerShutDown):
                client.register_function("s::y", lambda data: 2)

        await in_thread(scenario)
        left = [t for t in threading.enumerate() if t not in before and t.name.startswith("anyiii")]
        assert left == []


async def test_bad_options_are_clear_errors(facade_backend: str) -> None:
    with pytest.raises(ValueError, match="ws://"):
        anyiii.register_worker("http://127.0.0.1:1")
    with pytest.raises(TypeError, match="reconnection_config"):
        await in_thread(
            lambda: anyiii.register_worker(
                "ws://127.0.0.1:1", options(facade_backend, reconnection_config=42)
            )
        )
    with anyio.fail_after(20):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # nothing listens there now
        with pytest.raises(anyiii.ConnectError):
            await in_thread(
                lambda: anyiii.register_worker(
                    f"ws://127.0.0.1:{port}", options(facade_backend, open_timeout=1.0)
                )
            )


async def test_context_streams_and_the_otel_option_through_the_facade(facade_backend: str) -> None:
    class Store:
        def __init__(self) -> None:
            self.items: dict[str, Any] = {}

        async def get(self, input: anyiii.StreamGetInput) -> Any:
            return self.items.get(input.item_id)

        async def set(self, input: anyiii.StreamSetInput) -> anyiii.StreamSetResult[Any]:
            old, self.items[input.item_id] = self.items.get(input.item_id), input.data
            return anyiii.StreamSetResult(old_value=old, new_value=input.data)

        async def delete(self, input: anyiii.StreamDeleteInput) -> anyiii.StreamDeleteResult:
            return anyiii.StreamDeleteResult(old_value=self.items.pop(input.item_id, None))

        async def list(self, input: anyiii.StreamListInput) -> list[Any]:
            return [*self.items.values()]

        async def list_groups(self, input: anyiii.StreamListGroupsInput) -> list[str]:
            return ["g"] if self.items else []

    async with engine() as running:

        def scenario() -> None:
            otel = options(facade_backend, otel={"enabled": False})
            with anyiii.register_worker(running.url, otel) as client:

                async def who(data: Any) -> Any:
                    context = anyiii.get_context()
                    return [context.function_id, context.metadata, context.worker.name]

                client.register_function("ctx::who", who)
                stream = client.create_stream("kv", Store())
                assert stream.function_ids[0] == "stream::get(kv)"
                settle(client)
                answer = client.trigger({"function_id": "ctx::who", "payload": {}, "metadata": 7})
                assert answer[:2] == ["ctx::who", 7]
                item = {"stream_name": "kv", "group_id": "g", "item_id": "a"}
                client.trigger({"function_id": "stream::set(kv)", "payload": {**item, "data": 1}})
                assert client.trigger({"function_id": "stream::get(kv)", "payload": item}) == 1
                stream.unregister()
                settle(client)
                with pytest.raises(anyiii.InvocationError):
                    client.trigger({"function_id": "stream::get(kv)", "payload": item})

        await in_thread(scenario)


SCRIPT = """
import sys
import anyiii

client = anyiii.register_worker(sys.argv[1], anyiii.InitOptions(backend=sys.argv[2]))
client.register_function("s::ok", lambda data: "ok")
print("ready", flush=True)
if sys.argv[3] == "serve":
    client.serve_forever()
else:
    print("exiting without shutdown", flush=True)
"""


@pytest.mark.parametrize("ending", ["ctrl-c", "forgotten"])
async def test_a_script_ends_cleanly_on_ctrl_c_or_without_shutdown(
    facade_backend: str, ending: str
) -> None:
    """Ctrl-C during `serve_forever()` shuts the client down and ends the process; a script
    that never calls `shutdown()` still exits (the thread is a daemon, shut down at exit)."""
    import signal
    import subprocess
    import sys

    async with engine() as running:
        mode = "serve" if ending == "ctrl-c" else "exit"
        argv = [sys.executable, "-c", SCRIPT, running.url, facade_backend, mode]
        with anyio.fail_after(30):
            async with await anyio.open_process(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            ) as process:
                assert process.stdout is not None
                first = await process.stdout.receive()
                assert first.startswith(b"ready")
                if ending == "ctrl-c":
                    process.send_signal(signal.SIGINT)
                code = await process.wait()
        if ending == "ctrl-c":
            assert code in (130, -signal.SIGINT), code
        else:
            assert code == 0


async def test_an_http_invoked_function_registered_through_the_facade(
    facade_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECHO_TOKEN", "s3cret")  # read by the engine, in this process
    local = EngineSettings(
        http_functions=HttpFunctionSettings(require_https=False, block_private_ips=False),
        shutdown_timeout=1.0,
    )
    async with target_server() as server, anyiii.engine.run(settings=local) as running:

        def scenario() -> None:
            with anyiii.register_worker(running.url, options(facade_backend)) as client:
                handle = client.register_http_function(
                    "ext::echo", server.url, auth=anyiii.HttpAuthBearer(token_key="ECHO_TOKEN")
                )
                assert client.trigger({"function_id": "ext::echo", "payload": 7}) == {"echo": 7}
                handle.unregister()
                with pytest.raises(anyiii.InvocationError) as gone:
                    client.trigger({"function_id": "ext::echo", "payload": 8})
                assert gone.value.code == "function_not_found"
                # The official SDK's spelling: its config model in place of a handler.
                official = OfficialInvocation(
                    url=server.url, method="PUT", auth=OfficialBearer(token_key="ECHO_TOKEN")
                )
                client.register_function("ext::official", official)
                assert client.trigger({"function_id": "ext::official", "payload": 9}) == {"echo": 9}
                with pytest.raises(TypeError, match="callable or an HTTP invocation"):
                    client.register_function("ext::nothing", {"method": "GET"})

        await in_thread(scenario)
    first, second = server.requests
    assert first.header("authorization") == second.header("authorization") == "Bearer s3cret"
    assert (first.method, second.method) == ("POST", "PUT")
