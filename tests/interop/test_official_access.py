"""The shared token and RBAC with workers written with the official SDKs.

* Token mode: the official worker is started with `--token` (the Python SDK 0.25 sends
  `$III_TOKEN` as `Authorization: Bearer` on all its sockets; the Node SDK 0.22.1 gets it
  as a handshake header and sends none on channel sockets, which are exempt). It connects,
  registers, binds and is ready, and a channel it makes carries data to an anyiii handler.
* RBAC: the official worker connects to the RBAC listener; a trusted anyiii worker on the
  main listener serves the auth function and the functions. The SDK's calls are allowed or
  answered `FORBIDDEN` as the real engine would, `engine::functions::list` shows it only
  what it may call (its own readiness check relies on that listing), and its registrations
  reach the engine.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
from interop_support import Peer, without_caller, worker_env

import anyiii
from anyiii._engine.rbac import RbacSettings, parse_filter
from anyiii.engine import EngineSettings, run

TOKEN = "interop-token"


async def test_an_official_worker_with_the_token_works_on_a_token_protected_port(
    peer: Peer, tmp_path: Path
) -> None:
    async def collect(payload: dict[str, Any]) -> Any:
        items = [item async for item in payload["body"]]
        return b"".join(item for item in items if isinstance(item, bytes)).decode()

    headers = {"Authorization": f"Bearer {TOKEN}"}
    with anyio.fail_after(45):
        async with (
            run(settings=EngineSettings(token=TOKEN), http_port=0) as engine,
            anyiii.connect(engine.url, headers=headers, reconnect=False) as worker,
        ):
            worker.register_function("anyiii::collect", collect)
            await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            async with peer.start(engine.url, tmp_path, "--token", TOKEN) as official:
                echoed = await worker.trigger_async(
                    {"function_id": peer.function_id("echo"), "payload": {"n": 1}}
                )
                assert without_caller(echoed) == {"n": 1}
                script = [{"data": "6869", "times": 2}]
                await official.send(
                    {
                        "op": "send_channel",
                        "tag": "c",
                        "function_id": "anyiii::collect",
                        "script": script,
                    }
                )
                result = await official.event("result", "error", tag="c", within=20)
    assert result["event"] == "result", result
    assert result["value"] == "hihi"  # the channel socket needed no token


def rbac(peer: Peer) -> RbacSettings:
    return RbacSettings(
        auth_function_id="auth::check",
        expose_functions=tuple(
            parse_filter(f'match("{pattern}")')
            for pattern in ("api::*", "engine::functions::list", "engine::registered-triggers::*")
        ),
    )


async def test_an_official_worker_on_the_rbac_listener_is_allowed_and_forbidden(
    peer: Peer, tmp_path: Path
) -> None:
    auth_inputs: list[Any] = []

    def auth(data: Any) -> Any:
        auth_inputs.append(data)
        if data["headers"].get("authorization") != f"Bearer {TOKEN}":
            raise ValueError("who are you?")
        return {
            # its own functions: its readiness check finds them with `engine::functions::list`
            # (which shows a session only what it may call), and its http binding targets one
            "namespaces": {"default": [peer.function_id("*")]},
            "forbidden_functions": ["api::drop"],
        }

    with anyio.fail_after(60):
        async with (
            run(settings=EngineSettings(rbac=rbac(peer)), http_port=0) as engine,
            anyiii.connect(engine.url, reconnect=False) as trusted,
        ):
            trusted.register_function("auth::check", auth)
            trusted.register_function("api::echo", lambda data: {"echo": data})
            trusted.register_function("api::drop", lambda data: "dropped")
            trusted.register_function("secret::fn", lambda data: "secret")
            await trusted.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            rbac_url = f"ws://127.0.0.1:{engine.rbac_port}"
            async with peer.start(rbac_url, tmp_path, "--token", TOKEN) as official:
                allowed = await official.request("api::echo", {"n": 1})
                listed = await official.request("engine::functions::list", {})
                denied = await official.request("secret::fn", {})
                dropped = await official.request("api::drop", {})
                await official.send(
                    {
                        "op": "bind",
                        "tag": "b",
                        "trigger_type": "http",
                        "function_id": "secret::fn",
                        "config": {"api_path": "sneaky", "http_method": "GET"},
                    }
                )
                await official.event("bound", tag="b")
                await official.request("api::echo", {})  # a round trip after the binding
                assert engine.http_routes.match("GET", "/sneaky") is None
                # what it registered through the RBAC listener is callable from the other
                echoed = await trusted.trigger_async(
                    {"function_id": peer.function_id("echo"), "payload": {"n": 2}}
                )
                assert without_caller(echoed) == {"n": 2}
    assert allowed["event"] == "result", allowed
    assert without_caller(allowed["value"]["echo"]) == {"n": 1}
    for answer in (denied, dropped):
        assert answer["event"] == "error", answer
        assert answer["code"] == "FORBIDDEN", answer
    assert "add to rbac.expose_functions" in denied["message"]
    # the listing shows the session what it may call, and nothing else
    assert listed["event"] == "result", listed
    shown = {f["function_id"] for f in listed["value"]["functions"]}
    assert {"api::echo", peer.function_id("echo"), peer.function_id("http")} <= shown
    assert {f for f in shown if not f.startswith(f"{peer.prefix}::")} == {"api::echo"}
    assert "remove from rbac.forbidden_functions" in dropped["message"]
    assert auth_inputs[0]["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert set(auth_inputs[0]) == {"headers", "query_params", "ip_address"}


async def test_an_official_worker_with_a_bad_token_is_refused_by_the_auth_function(
    peer: Peer, tmp_path: Path
) -> None:
    refused = anyio.Event()
    tokens: list[str | None] = []

    async def auth(data: Any) -> Any:
        tokens.append(data["headers"].get("authorization"))
        refused.set()
        raise ValueError("who are you?")

    with anyio.fail_after(30):
        async with (
            run(settings=EngineSettings(rbac=rbac(peer)), http_port=None) as engine,
            anyiii.connect(engine.url, reconnect=False) as trusted,
        ):
            trusted.register_function("auth::check", auth)
            await trusted.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            rbac_url = f"ws://127.0.0.1:{engine.rbac_port}"
            stderr = (tmp_path / "refused.stderr").open("wb")
            argv = peer.argv(rbac_url, "--token", "wrong")
            with stderr:
                async with await anyio.open_process(
                    argv, stdin=subprocess.PIPE, stderr=stderr, env=worker_env()
                ) as process:
                    try:
                        await refused.wait()
                        # refused after the upgrade: the SDK never got a worker id
                        assert engine.worker_count == 1  # the trusted worker only
                    finally:
                        process.kill()
    assert tokens[0] == "Bearer wrong"
