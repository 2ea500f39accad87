"""The shared-token mode of the worker port (`EngineSettings.token`, `anyiii engine --token`).

Every worker handshake (`/`, and `/otel`) must carry `Authorization: Bearer <token>`, else
HTTP 401 before the upgrade; channel data-plane sockets are exempt (their access key
authorizes them, and the Node SDK sends no headers there).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from engine_process import engine_process

import anyiii
from anyiii import ConnectError
from anyiii._transport import open_websocket
from anyiii.engine import EngineSettings, run

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"


async def refused(url: str, **headers: str) -> int | None:
    with pytest.raises(ConnectError) as caught:
        async with open_websocket(url, headers=headers, ping_interval=None):
            pass
    return caught.value.status


async def test_a_handshake_without_the_token_is_refused_with_401() -> None:
    with anyio.fail_after(10):
        async with run(settings=EngineSettings(token=TOKEN), http_port=None) as engine:
            assert await refused(engine.url) == 401
            assert await refused(engine.url, Authorization="Bearer wrong") == 401
            assert await refused(engine.url, Authorization=TOKEN) == 401  # no scheme
            assert await refused(f"{engine.url}/otel") == 401
            good = {"Authorization": f"bearer {TOKEN}"}  # the scheme's case does not matter
            async with open_websocket(f"{engine.url}/otel", headers=good, ping_interval=None):
                pass
            with pytest.raises(ConnectError):
                async with anyiii.connect(engine.url, reconnect=False):
                    pass
            assert engine.worker_count == 0


async def test_a_worker_with_the_token_connects_and_channel_sockets_need_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("III_TOKEN", TOKEN)  # anyiii's worker sends it as a bearer token
    with anyio.fail_after(10):
        async with (
            run(settings=EngineSettings(token=TOKEN), http_port=None) as engine,
            anyiii.connect(engine.url, reconnect=False) as worker,
        ):
            refs: Any = await worker.trigger_async(
                {"function_id": "engine::channels::create", "payload": {}}
            )
            reader = refs["reader"]
            url = (
                f"{engine.url}/ws/channels/{reader['channel_id']}"
                f"?key={reader['access_key']}&dir=read"
            )
            async with open_websocket(url, ping_interval=None):  # no Authorization header
                pass
            # a wrong key is still refused (404), token or not
            assert await refused(url.replace(reader["access_key"], "nope")) == 404


async def test_the_cli_takes_the_token_from_a_flag_or_from_III_TOKEN(
    anyio_backend_name: str,
) -> None:
    with anyio.fail_after(30):
        async with engine_process(anyio_backend_name, "--token", TOKEN) as engine:
            assert await refused(engine.url) == 401
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with anyiii.connect(engine.url, headers=headers, reconnect=False) as worker:
                listed = await worker.trigger_async(
                    {"function_id": "engine::functions::list", "payload": {}}
                )
                assert listed["functions"]
        async with engine_process(anyio_backend_name, env={"III_TOKEN": TOKEN}) as engine:
            assert await refused(engine.url, Authorization="Bearer other") == 401
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with open_websocket(engine.url, headers=headers, ping_interval=None):
                pass
