"""The example application (`examples/orders/app.py`) as a user runs it: one command, a
real process, real sockets. An order posted over HTTP goes through the durable queue to
the worker, lands in state and is pushed to a browser-style stream subscriber; with a data
directory it survives a `kill -9` of the whole application."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import msgspec

from anyiii._transport import open_websocket

APP = Path(__file__).resolve().parents[1] / "examples" / "orders" / "app.py"


@asynccontextmanager
async def running_app(data_dir: Path) -> AsyncIterator[tuple[anyio.abc.Process, dict[str, str]]]:
    """The app on free ports; yields the process and the addresses it printed."""
    command = [sys.executable, str(APP), "--data-dir", str(data_dir)]
    command += ["--port", "0", "--http-port", "0", "--stream-port", "0"]
    async with await anyio.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as process:
        assert process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive(1)
            line += chunk
        try:
            yield process, json.loads(line)
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def receive_json(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = msgspec.json.decode(await ws.receive())
    return message


async def test_an_order_flows_from_http_through_the_queue_to_state_and_the_stream(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(60):
        async with running_app(tmp_path / "data") as (process, urls):
            async with (
                httpx.AsyncClient(base_url=urls["http"]) as http,
                open_websocket(urls["streams"]) as browser,
            ):
                join = {"subscriptionId": "b1", "streamName": "orders", "groupId": "all"}
                await browser.send(msgspec.json.encode({"type": "join", "data": join}))
                synced = await receive_json(browser)  # the group as it is: empty
                assert synced["event"]["type"] == "sync"

                refused = await http.post("/orders", json={"item": "rocks", "quantity": 1})
                assert refused.status_code == 400
                created = await http.post("/orders", json={"item": "tea", "quantity": 2})
                assert created.status_code == 202, created.text
                order_id = created.json()["id"]
                assert created.json()["receipt"]

                pushed = await receive_json(browser)
                assert pushed["id"] == order_id
                assert pushed["event"]["data"]["status"] == "fulfilled"
                assert pushed["event"]["data"]["total"] == 7.0

                got = await http.get(f"/orders/{order_id}")
                assert got.status_code == 200
                assert got.json()["status"] == "fulfilled"
                assert (await http.get("/orders/nope")).status_code == 404
            process.send_signal(signal.SIGKILL)
            await process.wait()
        async with running_app(tmp_path / "data") as (_, urls):
            async with httpx.AsyncClient(base_url=urls["http"]) as http:
                again = await http.get(f"/orders/{order_id}")
                assert again.status_code == 200
                assert again.json()["total"] == 7.0
