"""The function model with the real official SDKs (npm and PyPI `iii-sdk`) as peers.

An official worker calls a registry function with a plain JSON object and gets the typed
result back as JSON; a typed remote handle calls a function the official worker serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
from interop_support import Peer

import anyiii


class Quote(msgspec.Struct):
    item: str
    total: int


registry = anyiii.Registry("quotes")


@registry.function(id="quotes::quote")
async def quote(item: str, quantity: int, unit: int = 3) -> Quote:
    return Quote(item, quantity * unit)


async def test_an_official_worker_calls_a_registry_function_with_plain_json(
    peer: Peer, tmp_path: Path
) -> None:
    with anyio.fail_after(30):
        async with (
            anyiii.engine.run(http_port=None) as engine,
            anyiii.connect(engine.url, registry=registry) as server,
        ):
            await server.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            async with peer.start(engine.url, tmp_path) as official:
                reply = await official.request("quotes::quote", {"item": "tea", "quantity": 4})
                assert reply["event"] == "result", reply
                assert reply["value"] == {"item": "tea", "total": 12}


async def test_a_typed_remote_handle_calls_an_official_function(peer: Peer, tmp_path: Path) -> None:
    stubs = anyiii.Registry(f"official-{peer.name}")

    @stubs.remote(id=peer.function_id("echo"))
    async def echo(payload: list[int]) -> list[int]: ...

    with anyio.fail_after(30):
        async with anyiii.engine.run(http_port=None) as engine:
            async with peer.start(engine.url, tmp_path), anyiii.Client(engine.url):
                result: Any = await echo([1, 2, 3])
                assert result == [1, 2, 3]
                assert all(type(value) is int for value in result)
