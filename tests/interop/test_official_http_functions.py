"""HTTP-invoked functions with the official Python SDK (PyPI `iii-sdk`) as a peer.

An official worker calls a function an anyiii worker registered as served by a local HTTP
server, and gets the server's answer (or its error code); the official worker registers
one itself with its `HttpInvocationConfig`, and an anyiii worker calls it. Either way the
embedded engine makes the request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from http_target import Recorded, Reply, target_server
from interop_support import PEERS, Peer, listed_functions

import anyiii
from anyiii.engine import EngineSettings, HttpFunctionSettings, run

LOCAL = EngineSettings(
    http_functions=HttpFunctionSettings(require_https=False, block_private_ips=False)
)
PYTHON: Peer = next(peer for peer in PEERS if peer.name == "python")


async def respond(request: Recorded) -> Reply:
    if request.target == "/broken":
        return Reply(500, b"boom", content_type="text/plain")
    payload = request.json()
    return Reply.of({"sum": sum(payload["numbers"]), "auth": request.header("authorization")})


async def test_an_official_worker_calls_an_http_function_an_anyiii_worker_registered(
    tmp_path: Path,
) -> None:
    PYTHON.require()
    with anyio.fail_after(60):
        async with (
            target_server(respond) as server,
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            worker.register_http_function("ext::sum", f"{server.url}/sum")
            worker.register_http_function("ext::broken", f"{server.url}/broken")
            assert {"ext::sum", "ext::broken"} <= await listed_functions(worker)
            async with PYTHON.start(engine.url, tmp_path) as official:
                reply = await official.request("ext::sum", {"numbers": [1, 2, 3]})
                failed = await official.request("ext::broken", {})
    assert reply == {"event": "result", "tag": reply["tag"], "value": {"sum": 6, "auth": None}}
    assert (failed["event"], failed["code"]) == ("error", "http_error")
    assert failed["message"] == "HTTP 500 Internal Server Error"
    body: dict[str, Any] = server.requests[0].json()
    assert body["numbers"] == [1, 2, 3]
    assert body["_caller_worker_id"] == official.ready["worker_id"]


async def test_an_anyiii_worker_calls_an_http_function_the_official_sdk_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    PYTHON.require()
    monkeypatch.setenv("ANYIII_INTEROP_TOKEN", "t0k")  # the engine (this process) reads it
    invocation = {
        "url": "",
        "method": "POST",
        "timeout_ms": 5000,
        "headers": {"X-From": "official"},
        "auth": {"type": "bearer", "token_key": "ANYIII_INTEROP_TOKEN"},
    }
    with anyio.fail_after(60):
        async with (
            target_server(respond) as server,
            run(http_port=None, settings=LOCAL) as engine,
            PYTHON.start(engine.url, tmp_path) as official,
            anyiii.connect(engine.url) as worker,
        ):
            invocation["url"] = f"{server.url}/sum"
            command = {"op": "register_http", "tag": "r", "function_id": "py::ext"}
            await official.send({**command, "invocation": invocation})
            registered = await official.event("result", tag="r", within=20)
            assert registered["value"] == "py::ext"
            result = await worker.trigger_async(
                {"function_id": "py::ext", "payload": {"numbers": [4, 5]}}
            )
    assert result == {"sum": 9, "auth": "Bearer t0k"}
    [request] = server.requests
    assert request.header("x-from") == "official"
    assert request.header("x-iii-function-path") == "py::ext"
