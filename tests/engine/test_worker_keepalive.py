"""The engine's keepalive on worker sockets: a peer that answers no pings (vanished
without closing, or stopped) is let go after `ping_interval + ping_timeout`; a live worker,
however idle, answers pings on its own and stays. Real sockets, both backends."""

from __future__ import annotations

import anyio
from transport_peers import raw_client

import anyiii
from anyiii.engine import EngineSettings, run

FAST = EngineSettings(ping_interval=0.2, ping_timeout=0.3)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def test_a_socket_that_answers_no_pings_is_closed_and_a_live_worker_stays() -> None:
    with anyio.fail_after(10):
        async with run(http_port=None, settings=FAST) as engine, anyiii.connect(engine.url) as live:
            silent = await raw_client(port_of(engine.url))
            started = anyio.current_time()
            # Read the bytes without handing them to the protocol, so no ping is answered.
            try:
                while True:
                    await silent.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            held_for = anyio.current_time() - started
            await silent.stream.aclose()
            # The idle worker went through the same pings and is still on its first
            # connection.
            listed = await live.trigger_async(
                {"function_id": "engine::workers::list", "payload": {}}
            )
            assert live.statistics().connections == 1
    assert held_for >= FAST.ping_interval  # type: ignore[operator]
    assert len(listed["workers"]) >= 1


async def test_pings_can_be_turned_off() -> None:
    settings = EngineSettings(ping_interval=None)
    with anyio.fail_after(10):
        async with run(http_port=None, settings=settings) as engine:
            silent = await raw_client(port_of(engine.url))
            with anyio.move_on_after(1.0) as waited:  # five of FAST's intervals
                while True:
                    await silent.stream.receive()
            assert waited.cancelled_caught  # still open: nobody pinged it away
            await silent.stream.aclose()
