"""The official SDKs (npm and PyPI `iii-sdk`) as workers of `anyiii engine --config` started
on the iii project's own SDK test config (`tests/data/iii-config-test.yaml`, on free ports:
see `config_fixture`): they connect to its worker port, use its state service, and their
`http` route answers on its HTTP port."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import httpx
from config_fixture import fixture_copy
from engine_process import engine_process
from interop_support import PROMPT, Peer


async def test_an_official_worker_runs_against_the_sdk_fixture_config(
    peer: Peer, tmp_path: Path, anyio_backend_name: str
) -> None:
    config, ports = fixture_copy(tmp_path)
    with anyio.fail_after(45):
        async with engine_process(
            anyio_backend_name,
            *("--config", str(config), "--host", "127.0.0.1"),
            in_memory=False,
            free_ports=False,
            cwd=tmp_path,
            env={"STREAMS_PORT": str(ports["stream"])},
        ) as engine:
            assert engine.url == f"ws://127.0.0.1:{ports['worker']}"
            async with peer.start(engine.url, tmp_path) as official:
                item = {"scope": "fixture", "key": peer.name, "value": [1, 2]}
                reply = await official.request("state::set", item)
                assert reply == {
                    "event": "result",
                    "tag": reply["tag"],
                    "value": {"old_value": None, "new_value": [1, 2]},
                }
                got = await official.request("state::get", {"scope": "fixture", "key": peer.name})
                assert got["value"] == [1, 2]
                api_path = official.ready["http_path"]
                async with httpx.AsyncClient(base_url=engine.http_url, timeout=PROMPT) as client:
                    response = await client.get(f"/{api_path}", params={"name": "ada"})
                assert response.status_code == 201, response.text
                assert response.json()["worker"] == peer.name
            assert engine.http_url == f"http://127.0.0.1:{ports['http']}"
            assert await engine.stop(signal.SIGTERM) == 0
    assert (tmp_path / "data" / "engine.sqlite3").is_file()
