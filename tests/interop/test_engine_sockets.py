"""The embedded engine releases its sockets when its block ends.

The interop tests stop engines and start new ones (on the same port, for the reconnect
tests) many times per session; a socket left open by a stopped engine surfaces later as a
`ResourceWarning` in whichever test happens to trigger garbage collection. This test pins
that down deterministically.
"""

from __future__ import annotations

import gc
import warnings

import anyio
import httpx

import anyiii.engine


async def test_stopped_engine_leaves_no_socket_open() -> None:
    with anyio.fail_after(10):
        async with anyiii.engine.run(host="127.0.0.1", port=0, http_port=0) as engine:
            assert engine.http_url is not None
            async with httpx.AsyncClient(base_url=engine.http_url) as client:
                assert (await client.get("/nothing/here")).status_code == 404
            ports = {engine.port, engine.http_port}
    del engine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, f"left open after the engine stopped (its ports were {ports}): {leaks}"
