"""`anyiii.engine.run()`: addresses, startup failures, and a bounded, orderly shutdown.

Leaving `run()` answers every call in flight with `invocation_stopped`, closes every worker
socket, and returns within `settings.shutdown_timeout`; a port already in use raises
`OSError` itself, not an exception group; leaving releases both listening sockets.
"""

from __future__ import annotations

import errno
import gc
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from engine_peers import Handler, RawWorker, call_frame, encode, new_id, raw_client, raw_worker

from anyiii._errors import ConnectError
from anyiii._protocol.frames import to_raw
from anyiii._transport import open_websocket
from anyiii.engine import EngineSettings, run

MARGIN = 1.5
"""Seconds allowed beyond `shutdown_timeout` for the scheduler and the test's own sockets."""


async def worker_until_closed(
    url: str,
    name: str,
    functions: Mapping[str, Handler] | None = None,
    *,
    task_status: anyio.abc.TaskStatus[RawWorker] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A raw worker living in its own task (so it can outlive the `run()` block's exit)
    until the engine closes its connection."""
    async with raw_worker(url, name, functions) as worker:
        task_status.started(worker)
        await worker.wait_until(lambda: worker.closed is not None)


async def test_leaving_run_stops_calls_in_flight_and_closes_workers() -> None:
    release = anyio.Event()

    async def hold(frame: dict[str, Any]) -> Any:
        await release.wait()
        return "too late"

    settings = EngineSettings(shutdown_timeout=2.0)
    answers: list[dict[str, Any]] = []
    outcomes: list[Any] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            async with run(http_port=None, settings=settings) as engine:
                callee: RawWorker = await tg.start(
                    worker_until_closed, engine.url, "callee", {"callee::hold": hold}
                )
                caller: RawWorker = await tg.start(worker_until_closed, engine.url, "caller")

                async def worker_call() -> None:
                    answers.append(await caller.call("callee::hold", {"from": "caller"}))

                async def engine_call() -> None:
                    outcomes.append(await engine.invoke("callee::hold", to_raw({"from": "e"})))

                tg.start_soon(worker_call)
                tg.start_soon(engine_call)
                await callee.wait_until(lambda: len(callee.dispatched) == 2)
                leaving = anyio.current_time()
            elapsed = anyio.current_time() - leaving
            release.set()
        assert elapsed < settings.shutdown_timeout + MARGIN, elapsed
        [answer] = answers
        assert answer["error"] == {"code": "invocation_stopped", "message": "Invocation stopped"}
        [(result, error)] = outcomes
        assert result is None
        assert error is not None
        assert error.code == "invocation_stopped"
        assert caller.closed is not None
        assert caller.closed.code == 1001
        assert callee.closed is not None
        assert callee.closed.code == 1001
        # The callee's late answer had nowhere to go: nothing more reached the caller.
        assert [f["type"] for f in caller.received].count("invocationresult") == 2


async def test_leaving_run_is_bounded_by_shutdown_timeout_when_a_worker_never_reads() -> None:
    """A worker that stopped reading never echoes the engine's close frame; the engine gives
    up on it after `shutdown_timeout` instead of waiting for it."""
    settings = EngineSettings(shutdown_timeout=1.0)
    done = anyio.Event()
    opened = anyio.Event()

    async def deaf_worker(url: str) -> None:
        async with raw_client(url) as (transport, _):
            call = call_frame("engine::workers::list", {}, invocation_id=new_id())
            await transport.send(encode(call))  # its answer is never read
            opened.set()
            await done.wait()  # never reads again

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            async with run(http_port=None, settings=settings) as engine:
                tg.start_soon(deaf_worker, engine.url)
                await opened.wait()
                async with raw_client(engine.url):
                    pass
                leaving = anyio.current_time()
            elapsed = anyio.current_time() - leaving
            done.set()
        assert elapsed < settings.shutdown_timeout + MARGIN, elapsed


async def test_leaving_run_with_nobody_connected_is_quick() -> None:
    with anyio.fail_after(20):
        async with run() as engine:
            leaving = anyio.current_time()
        assert anyio.current_time() - leaving < MARGIN
        assert engine.worker_count == 0
        gc.collect()


@pytest.mark.parametrize("which", ["worker", "http"])
async def test_occupied_port_raises_oserror(which: str) -> None:
    with anyio.fail_after(20):
        async with await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=0
        ) as listener:
            taken = listener.extra(anyio.abc.SocketAttribute.local_port)
            ports = {"port": taken} if which == "worker" else {"http_port": taken}
            with pytest.raises(OSError, match="in use") as raised:
                async with run(**ports):  # type: ignore[arg-type]
                    pytest.fail("the engine started on a port in use")
        assert type(raised.value) is not BaseExceptionGroup
        assert raised.value.errno == errno.EADDRINUSE
        gc.collect()  # a listener left open by the failed start would warn here


async def test_url_and_http_url_formats() -> None:
    with anyio.fail_after(20):
        async with run(host="127.0.0.1") as engine:
            assert engine.port > 0
            assert engine.http_port is not None
            assert engine.http_port > 0
            assert engine.port != engine.http_port
            assert engine.url == f"ws://127.0.0.1:{engine.port}"
            assert engine.http_url == f"http://127.0.0.1:{engine.http_port}"
            async with raw_client(engine.url) as (_, worker_id):
                assert worker_id
            async with httpx.AsyncClient() as client:
                response = await client.get(engine.http_url + "/")
            assert response.status_code == 404
        gc.collect()


async def test_ipv6_host_is_bracketed_in_urls() -> None:
    with anyio.fail_after(20):
        async with run(host="::1") as engine:
            assert engine.url == f"ws://[::1]:{engine.port}"
            assert engine.http_url == f"http://[::1]:{engine.http_port}"
            async with raw_client(engine.url) as (_, worker_id):
                assert worker_id
        gc.collect()


async def test_http_port_none_disables_http() -> None:
    with anyio.fail_after(20):
        async with run(http_port=None) as engine:
            assert engine.http_port is None
            assert engine.http_url is None
            assert engine.url == f"ws://127.0.0.1:{engine.port}"
            async with raw_worker(engine.url, "only") as worker:
                listed = (await worker.result("engine::functions::list", {}))["functions"]
                assert [f for f in listed if f["worker_name"] != "anyiii-engine"] == []


@pytest.mark.parametrize("which", ["worker", "http"])
async def test_leaving_run_releases_the_port(which: str) -> None:
    """Right after `run()` returns, its ports can be bound again (no socket left open)."""
    with anyio.fail_after(20):
        async with run() as engine:
            port = engine.port if which == "worker" else engine.http_port
            assert port is not None
        try:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        except OSError as exc:
            pytest.fail(f"the {which} port {port} is still bound after run() returned: {exc}")
        await listener.aclose()
        gc.collect()


async def test_worker_connecting_after_exit_is_refused() -> None:
    with anyio.fail_after(20):
        async with run(http_port=None) as engine:
            url = engine.url
        with pytest.raises(ConnectError):
            async with open_websocket(url, ping_interval=None, open_timeout=5):
                pass
