"""HTTP-invoked functions (spec §3.1 `invocation`) with the official SDKs as peers.

An official worker calls a function an anyiii worker registered as served by a local HTTP
server, and gets the server's answer (or its error code); the official worker registers
one itself, and an anyiii worker calls it. Either way the embedded engine makes the
request. The Python SDK registers one with `register_function(id, HttpInvocationConfig(...))`,
the Node SDK with `registerFunction(id, {url, method, timeout_ms, headers, auth})` (an
object instead of a handler: `dist/index.cjs`, `registerFunction`, which sends it as the
registration's `invocation`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from http_target import Recorded, Reply, target_server
from interop_support import Peer, listed_functions

import anyiii
from anyiii.engine import EngineSettings, HttpFunctionSettings, run

LOCAL = EngineSettings(
    http_functions=HttpFunctionSettings(require_https=False, block_private_ips=False)
)


async def respond(request: Recorded) -> Reply:
    if request.target == "/broken":
        return Reply(500, b"boom", content_type="text/plain")
    payload = request.json()
    return Reply.of({"sum": sum(payload["numbers"]), "auth": request.header("authorization")})


async def test_an_official_worker_calls_an_http_function_an_anyiii_worker_registered(
    peer: Peer, tmp_path: Path
) -> None:
    with anyio.fail_after(60):
        async with (
            target_server(respond) as server,
            run(http_port=None, settings=LOCAL) as engine,
            anyiii.connect(engine.url) as worker,
        ):
            worker.register_http_function("ext::sum", f"{server.url}/sum")
            worker.register_http_function("ext::broken", f"{server.url}/broken")
            assert {"ext::sum", "ext::broken"} <= await listed_functions(worker)
            async with peer.start(engine.url, tmp_path) as official:
                reply = await official.request("ext::sum", {"numbers": [1, 2, 3]})
                failed = await official.request("ext::broken", {})
    assert reply == {"event": "result", "tag": reply["tag"], "value": {"sum": 6, "auth": None}}
    assert (failed["event"], failed["code"]) == ("error", "http_error")
    # The Node SDK's InvocationError puts the code before the engine's message
    # (`${code}: ${message}`, dist/errors.cjs:6); the Python one keeps them apart.
    assert failed["message"].removeprefix("http_error: ") == "HTTP 500 Internal Server Error"
    body: dict[str, Any] = server.requests[0].json()
    assert body["numbers"] == [1, 2, 3]
    assert body["_caller_worker_id"] == official.ready["worker_id"]


async def test_an_anyiii_worker_calls_an_http_function_the_official_sdk_registered(
    peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
            peer.start(engine.url, tmp_path) as official,
            anyiii.connect(engine.url) as worker,
        ):
            invocation["url"] = f"{server.url}/sum"
            function_id = peer.function_id("ext")
            command = {"op": "register_http", "tag": "r", "function_id": function_id}
            await official.send({**command, "invocation": invocation})
            registered = await official.event("result", tag="r", within=20)
            assert registered["value"] == function_id
            result = await worker.trigger_async(
                {"function_id": function_id, "payload": {"numbers": [4, 5]}}
            )
    assert result == {"sum": 9, "auth": "Bearer t0k"}
    [request] = server.requests
    assert request.header("x-from") == "official"
    assert request.header("x-iii-function-path") == function_id
