"""The embedded engine with workers written with the official SDKs, one test per checklist
item, run against every peer in `interop_support.PEERS`.

Each test starts `anyiii.engine.run()` in-process on ephemeral ports, the official worker
(`workers/node_worker.mjs` or `workers/py_worker.py`) as a subprocess, and an anyiii worker,
and walks one item of the protocol spec's acceptance checklist (§16.6) across the two SDKs.

The Node worker runs with the SDK installed from `tests/interop/node` (`npm ci` there;
`python3 tasks.py test` does it). Without node or that install the Node tests skip, except
under CI (`CI` set), where they fail. The Python SDK is a dev dependency: missing, it fails.

Node differs from Python on the wire in ways the engine must tolerate (spec §16.6 item 8):
its `engine::workers::register` call may come before its registrations, and it adds
`message_type` keys to some frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from interop_support import (
    PROMPT,
    Handler,
    OfficialWorker,
    Peer,
    anyiii_worker,
    listed_functions,
    without_caller,
)

import anyiii.engine
from anyiii import InvocationError, Worker

PAYLOAD = {"x": 1, "nested": {"list": [1, "two", None, 3.5]}, "text": "héllo"}
#: Calls that must end promptly still get a deadline below the test's, so a missing answer
#: fails as a TIMEOUT error instead of a hang.
CALL_TIMEOUT_MS = 10_000


def local_engine(port: int = 0) -> AbstractAsyncContextManager[anyiii.engine.EmbeddedEngine]:
    """The embedded engine on loopback: worker port `port` (0: any free one), any http port."""
    return anyiii.engine.run(host="127.0.0.1", port=port, http_port=0)


@asynccontextmanager
async def engine_and_workers(
    peer: Peer, tmp_path: Path, functions: Mapping[str, Handler] | None = None
) -> AsyncIterator[tuple[OfficialWorker, Worker]]:
    """The embedded engine, `peer`'s official worker and an anyiii worker, torn down in reverse.

    An anyiii worker that serves `functions` joins first, so the official worker may call
    them as soon as it is ready; otherwise the official worker joins first, so its functions
    are listed by the time the anyiii worker calls them.
    """
    async with local_engine() as engine:
        if functions:
            async with (
                anyiii_worker(engine.url, functions) as worker,
                peer.start(engine.url, tmp_path) as official,
            ):
                yield official, worker
        else:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii_worker(engine.url) as worker,
            ):
                yield official, worker


async def anyiii_fail(data: Any) -> Any:
    raise ValueError("boom")


async def anyiii_echo(data: Any) -> Any:
    return {"echoed": data, "by": "anyiii"}


async def test_official_function_is_callable_from_anyiii(peer: Peer, tmp_path: Path) -> None:
    echo = peer.function_id("echo")
    with anyio.fail_after(30):
        async with engine_and_workers(peer, tmp_path) as (official, worker):
            result = await worker.trigger_async({"function_id": echo, "payload": PAYLOAD})
            assert result.pop("_caller_worker_id") == worker.worker_id
            assert result == PAYLOAD
            invoked = await official.event("invoked", function_id=echo)
            assert without_caller(invoked["payload"]) == PAYLOAD


async def test_anyiii_function_is_callable_from_official(peer: Peer, tmp_path: Path) -> None:
    serving = {"anyiii::echo": anyiii_echo}
    with anyio.fail_after(30):
        async with engine_and_workers(peer, tmp_path, serving) as (official, _):
            reply = await official.request("anyiii::echo", PAYLOAD)
            assert reply["event"] == "result", reply
            value = reply["value"]
            assert value["by"] == "anyiii"
            assert value["echoed"].pop("_caller_worker_id") == official.ready["worker_id"]
            assert value["echoed"] == PAYLOAD


async def test_void_call_from_official_reaches_anyiii(peer: Peer, tmp_path: Path) -> None:
    """The official caller's void call returns while the anyiii callee is still running."""
    received_send, received = anyio.create_memory_object_stream[Any](1)
    release = anyio.Event()

    async def record(data: Any) -> None:
        await received_send.send(data)
        await release.wait()

    with anyio.fail_after(30), received_send, received:
        async with engine_and_workers(peer, tmp_path, {"anyiii::record": record}) as (official, _):
            reply = await official.request("anyiii::record", PAYLOAD, op="void")
            assert reply["event"] == "sent", reply
            with anyio.fail_after(PROMPT):
                data = await received.receive()
            assert without_caller(data) == PAYLOAD
            release.set()


async def test_void_call_from_anyiii_reaches_official(peer: Peer, tmp_path: Path) -> None:
    slow = peer.function_id("slow")
    with anyio.fail_after(30):
        async with engine_and_workers(peer, tmp_path) as (official, worker):
            result = await worker.trigger_async(
                {"function_id": slow, "payload": PAYLOAD, "action": {"type": "void"}}
            )
            assert result is None  # returned although the slow handler never answers
            invoked = await official.event("invoked", function_id=slow)
            assert without_caller(invoked["payload"]) == PAYLOAD


async def test_unknown_function_is_function_not_found_quickly(peer: Peer, tmp_path: Path) -> None:
    missing = peer.function_id("missing")
    with anyio.fail_after(30):
        async with engine_and_workers(peer, tmp_path) as (official, worker):
            started = anyio.current_time()
            with pytest.raises(InvocationError) as caught:
                await worker.trigger_async(
                    {"function_id": missing, "payload": {}, "timeout_ms": CALL_TIMEOUT_MS}
                )
            assert anyio.current_time() - started < PROMPT
            assert caught.value.code == "function_not_found"
            assert missing in caught.value.message

            started = anyio.current_time()
            reply = await official.request("anyiii::missing", {})
            assert anyio.current_time() - started < PROMPT
            assert reply["event"] == "error", reply
            assert reply["code"] == "function_not_found"
            assert "anyiii::missing" in reply["message"]


async def test_handler_exception_is_invocation_failed_both_ways(peer: Peer, tmp_path: Path) -> None:
    serving = {"anyiii::fail": anyiii_fail}
    with anyio.fail_after(30):
        async with engine_and_workers(peer, tmp_path, serving) as (official, worker):
            with pytest.raises(InvocationError) as caught:
                await worker.trigger_async({"function_id": peer.function_id("fail"), "payload": {}})
            assert caught.value.code == "invocation_failed"
            assert "boom" in caught.value.message
            assert peer.stacktrace_marker in (caught.value.stacktrace or "")

            reply = await official.request("anyiii::fail", {})
            assert reply["event"] == "error", reply
            assert reply["code"] == "invocation_failed"
            assert "boom" in reply["message"]


async def test_killing_official_callee_mid_call_stops_the_call(peer: Peer, tmp_path: Path) -> None:
    slow = peer.function_id("slow")
    outcome: list[BaseException] = []

    async def call_slow(worker: Any) -> None:
        try:
            # A bounded call: if the engine never stopped it, it fails with TIMEOUT, not a hang.
            await worker.trigger_async(
                {"function_id": slow, "payload": {}, "timeout_ms": CALL_TIMEOUT_MS}
            )
        except InvocationError as exc:
            outcome.append(exc)

    with anyio.fail_after(30):
        async with engine_and_workers(peer, tmp_path) as (official, worker):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call_slow, worker)
                await official.event("invoked", function_id=slow)
                official.kill()
                killed = anyio.current_time()
            assert anyio.current_time() - killed < PROMPT
            assert len(outcome) == 1
            error = outcome[0]
            assert isinstance(error, InvocationError)
            assert error.code == "invocation_stopped"
            # The engine, not the caller's connection, ended it: the anyiii worker is intact.
            assert peer.function_id("echo") not in await listed_functions(worker)


async def _check_http(peer: Peer, official: OfficialWorker, http_url: str) -> None:
    """A GET on the peer's http route reaches its handler and comes back as it answered."""
    api_path = official.ready["http_path"]
    async with httpx.AsyncClient(base_url=http_url, timeout=PROMPT) as client:
        response = await client.get(f"/{api_path}", params={"name": "ada"})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"ok": True, "worker": peer.name, "method": "GET", "name": "ada"}
    request = (await official.event("invoked", function_id=peer.function_id("http")))["payload"]
    assert request["method"] == "GET"
    assert request["path"] == api_path
    assert request["query_params"] == {"name": "ada"}
    assert request["trigger"] == {"type": "http", "path": api_path, "method": "GET"}


async def test_http_trigger_of_official_worker_answers(peer: Peer, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with local_engine() as engine, peer.start(engine.url, tmp_path) as official:
            assert engine.http_url is not None
            await _check_http(peer, official, engine.http_url)


async def test_official_worker_reconnects_after_engine_restart(peer: Peer, tmp_path: Path) -> None:
    """Stop the engine, start a new one on the same port: the official worker (with its
    SDK's backoff) reconnects, replays its registrations, and serves calls and its http
    route again."""
    echo = peer.function_id("echo")
    with anyio.fail_after(45):
        async with AsyncExitStack() as outliving:
            async with local_engine() as first:
                port = first.port
                official = await outliving.enter_async_context(peer.start(first.url, tmp_path))
                async with anyiii_worker(first.url) as worker:
                    result = await worker.trigger_async({"function_id": echo, "payload": 1})
                    assert result == 1

            async with local_engine(port) as second:
                assert second.port == port
                async with anyiii_worker(second.url) as worker:
                    with anyio.fail_after(15):
                        # Waiting for another process to reconnect: nothing to wait on but
                        # the engine's own view, so poll it.
                        while echo not in await listed_functions(worker):  # noqa: ASYNC110
                            await anyio.sleep(0.05)
                    result = await worker.trigger_async({"function_id": echo, "payload": PAYLOAD})
                    assert without_caller(result) == PAYLOAD
                assert second.http_url is not None
                await _check_http(peer, official, second.http_url)
