"""The state service used by the real official SDKs (npm and PyPI `iii-sdk`) and anyiii
through one embedded engine: writes from one are read by the other."""

from __future__ import annotations

from pathlib import Path

import anyio
from interop_support import Peer

import anyiii


async def test_an_official_worker_and_anyiii_share_state(peer: Peer, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with anyiii.engine.run(http_port=None) as engine:
            async with (
                peer.start(engine.url, tmp_path) as official,
                anyiii.connect(engine.url) as w,
            ):
                item = {"scope": "shared", "key": "from-official", "value": {"n": [1, 2]}}
                reply = await official.request("state::set", item)
                assert reply["event"] == "result", reply
                assert reply["value"] == {"old_value": None, "new_value": {"n": [1, 2]}}
                got = await w.trigger_async(
                    {
                        "function_id": "state::get",
                        "payload": {"scope": "shared", "key": "from-official"},
                    }
                )
                assert got == {"n": [1, 2]}
                await w.trigger_async(
                    {
                        "function_id": "state::set",
                        "payload": {"scope": "shared", "key": "from-anyiii", "value": 7},
                    }
                )
                listed = await official.request("state::list", {"scope": "shared"})
                assert listed["value"] == [7, {"n": [1, 2]}]
