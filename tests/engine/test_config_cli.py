"""`anyiii engine --config` as a real process: the iii project's own SDK test config serves
its ports, flags override the file, the default data directory outlives a restart, and a
broken file exits 2 with a message and no traceback.

Each async test runs the engine on the test's own backend (asyncio or trio), so both engine
backends are covered without doubling the processes.

The SDK fixture's ports are chosen as `config_fixture.fixture_copy` explains: the file's
ports are still the ones served, without colliding with anything else on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import msgspec
import pytest
from config_fixture import fixture_copy
from engine_process import engine_command, engine_env, engine_process

import anyiii
from anyiii import ConnectError
from anyiii._engine import cli, configured
from anyiii._engine.config import ConfigError
from anyiii._transport import open_websocket


def skipped_in_the_fixture() -> list[str]:
    return [
        "iii-observability: OpenTelemetry export is not implemented (SDK telemetry sent to "
        "/otel is accepted and discarded)",
    ]


async def call(worker: anyiii.Worker, function_id: str, payload: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def test_the_sdk_fixture_loads_and_serves_its_ports(
    tmp_path: Path, anyio_backend_name: str
) -> None:
    config, ports = fixture_copy(tmp_path)

    async def hello(data: dict[str, Any]) -> Any:
        return {"status_code": 200, "body": {"hello": data["path_params"]["name"]}}

    with anyio.fail_after(30):
        async with engine_process(
            anyio_backend_name,
            *("--config", str(config), "--host", "127.0.0.1"),
            in_memory=False,
            free_ports=False,
            cwd=tmp_path,
            env={"STREAMS_PORT": str(ports["stream"])},
        ) as engine:
            assert engine.url == f"ws://127.0.0.1:{ports['worker']}"
            assert engine.http_url == f"http://127.0.0.1:{ports['http']}"
            # A worker connects to the worker port, and the file's iii-state serves it.
            async with anyiii.connect(engine.url, reconnect=False) as worker:
                await call(worker, "state::set", {"scope": "s", "key": "k", "value": 1})
                assert await call(worker, "state::get", {"scope": "s", "key": "k"}) == 1
                worker.register_function("hello", hello)
                await worker.register_trigger(
                    "http", "hello", {"api_path": "hello/:name", "http_method": "GET"}
                )
                await call(worker, "engine::functions::list", {})  # the route is bound now
                # HTTP answers on the file's http port.
                async with httpx.AsyncClient(base_url=engine.http_url) as client:
                    response = await client.get("/hello/ada")
                assert (response.status_code, response.json()) == (200, {"hello": "ada"})
            # What the embedded engine lacks is logged once each, as a warning.
            # The fixture's file-based stores are in ./data: so is the database.
            await engine.wait_for_log(rf"keeping data in {re.escape(str(tmp_path))}/data$")
            assert f"rbac port {ports['rbac']}" in engine.stdout_line
            # The file's RBAC listener is served; its auth function is not registered, so
            # it refuses every handshake, with AUTH_ERROR, as the real engine would.
            rbac_url = f"ws://127.0.0.1:{ports['rbac']}"
            async with open_websocket(rbac_url, ping_interval=None) as transport:
                refusal = msgspec.json.decode(await transport.receive())
            assert refusal["error"]["code"] == "AUTH_ERROR"
            for note in skipped_in_the_fixture():
                assert engine.stderr.count(note) == 1, engine.stderr
                assert f"WARNING anyiii.engine: config: {note}\n" in engine.stderr
            assert "Traceback" not in engine.stderr
            assert await engine.stop(signal.SIGTERM) == 0
    assert (tmp_path / "data" / "engine.sqlite3").is_file()


async def test_the_sdk_fixture_serves_its_stream_port(
    tmp_path: Path, anyio_backend_name: str
) -> None:
    config, ports = fixture_copy(tmp_path)
    with anyio.fail_after(30):
        async with engine_process(
            anyio_backend_name,
            *("--config", str(config), "--host", "127.0.0.1", "--in-memory"),
            in_memory=False,
            free_ports=False,
            cwd=tmp_path,
            env={"STREAMS_PORT": str(ports["stream"])},
        ) as engine:
            try:
                async with open_websocket(f"ws://127.0.0.1:{ports['stream']}/", open_timeout=5):
                    served = True
            except ConnectError:
                served = False
            assert await engine.stop(signal.SIGTERM) == 0
    assert served, f"nothing accepts a WebSocket on the stream port {ports['stream']}"


async def test_flags_override_the_file(tmp_path: Path, anyio_backend_name: str) -> None:
    """The file asks for a port already taken, for 0.0.0.0 and for a file-based store; the
    flags (`--port 0 --http-port 0 --stream-port 0 --host 127.0.0.1 --in-memory`) win."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as taken:
        port = taken.extra(anyio.abc.SocketAttribute.local_port)
        config = tmp_path / "config.yaml"
        config.write_text(
            f"""
workers:
  - name: iii-worker-manager
    config: {{port: {port}, host: 0.0.0.0}}
  - name: iii-http
    config: {{port: {port}, host: 0.0.0.0}}
  - name: iii-state
    config:
      adapter: {{name: kv, config: {{store_method: file_based, file_path: ./filedata/s.db}}}}
"""
        )
        with anyio.fail_after(30):
            async with engine_process(
                anyio_backend_name, "--config", str(config), "--host", "127.0.0.1", cwd=tmp_path
            ) as engine:
                assert engine.url.startswith("ws://127.0.0.1:")
                assert not engine.url.endswith(f":{port}")
                assert not engine.http_url.endswith(f":{port}")
                await engine.wait_for_log(r"keeping data in memory only")
                async with anyiii.connect(engine.url, reconnect=False) as worker:
                    await call(worker, "state::set", {"scope": "s", "key": "k", "value": 1})
                assert await engine.stop(signal.SIGTERM) == 0
    assert not (tmp_path / "filedata").exists()


_UPGRADE = (
    b"GET / HTTP/1.1\r\nhost: test\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
)


async def test_the_files_limits_and_every_rbac_listener_are_served(
    tmp_path: Path, anyio_backend_name: str
) -> None:
    """`anyiii:` on the worker manager entry caps connections per client; both RBAC entries
    are served, each on a port of its own, and the CLI prints both."""
    config = tmp_path / "config.yaml"
    config.write_text(
        """
workers:
  - name: iii-worker-manager
    anyiii: {connections: {max_per_peer: 1}}
  - name: iii-worker-manager
    config: {port: 0, rbac: {}}
  - name: iii-worker-manager
    config: {port: 0, rbac: {}}
  - name: iii-http
"""
    )
    with anyio.fail_after(30):
        async with engine_process(anyio_backend_name, "--config", str(config)) as engine:
            found = re.search(r"rbac ports (\d+), (\d+)$", engine.stdout_line)
            assert found is not None, engine.stdout_line
            rbac_ports = {int(found.group(1)), int(found.group(2))}
            assert len(rbac_ports) == 2
            assert 0 not in rbac_ports
            for port in rbac_ports:  # each accepts a worker (no auth function: no grants)
                async with open_websocket(f"ws://127.0.0.1:{port}", ping_interval=None) as ws:
                    first = msgspec.json.decode(await ws.receive())
                    assert first["type"] == "workerregistered"
            async with open_websocket(engine.url, ping_interval=None) as held:
                assert msgspec.json.decode(await held.receive())["type"] == "workerregistered"
                port = int(engine.url.rsplit(":", 1)[1])
                async with await anyio.connect_tcp("127.0.0.1", port) as second:
                    await second.send(_UPGRADE)
                    answer = b""
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                        while True:
                            answer += await second.receive()
                assert answer.startswith(b"HTTP/1.1 503 "), answer
            assert await engine.stop(signal.SIGTERM) == 0


async def test_the_default_data_dir_is_dot_data_and_outlives_a_restart(
    tmp_path: Path, anyio_backend_name: str
) -> None:
    with anyio.fail_after(40):
        async with engine_process(anyio_backend_name, in_memory=False, cwd=tmp_path) as engine:
            await engine.wait_for_log(rf"keeping data in {re.escape(str(tmp_path))}/data$")
            async with anyiii.connect(engine.url, reconnect=False) as worker:
                await call(worker, "state::set", {"scope": "s", "key": "k", "value": [1, 2]})
            assert await engine.stop(signal.SIGTERM) == 0
        assert (tmp_path / "data" / "engine.sqlite3").is_file()
        async with engine_process(anyio_backend_name, in_memory=False, cwd=tmp_path) as engine:
            async with anyiii.connect(engine.url, reconnect=False) as worker:
                assert await call(worker, "state::get", {"scope": "s", "key": "k"}) == [1, 2]
            assert await engine.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers: [\n", r"config\.yaml: not valid YAML: .*line 2, column 1"),
        ("workers:\n  - name: iii-http\n    config: {port: web}\n", r"`port` must be a port"),
        ("workers:\n  - name: ${WORKER_NAME_NOBODY_SETS}\n", r"WORKER_NAME_NOBODY_SETS \(line 2\)"),
        (None, r"config\.yaml: config file not found"),
        (
            "workers:\n  - name: iii-worker-manager\n    anyiii: {max_mesage_size: 1}\n",
            r"`anyiii\.max_mesage_size` is not a setting \(did you mean `max_message_size`\?\)",
        ),
    ],
    ids=["yaml", "type", "variable", "missing", "limits"],
)
def test_a_broken_config_exits_2_with_a_clear_message(
    tmp_path: Path, text: str | None, message: str
) -> None:
    config = tmp_path / "config.yaml"
    if text is not None:
        config.write_text(text)
    completed = subprocess.run(
        engine_command("asyncio", "--config", str(config)),
        capture_output=True,
        text=True,
        env=engine_env(),
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr.startswith(f"anyiii engine: error: {config}"), completed.stderr
    assert re.search(message, completed.stderr, re.DOTALL), completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_service_refusing_its_block_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Services raise `ConfigError` for a block they cannot use; the CLI reports it as for
    the file itself (the service is built before any socket is opened)."""

    class Picky:
        def __init__(self, context: object, config: Any = None) -> None:
            raise ConfigError(f"iii-state: cannot use {dict(config or {})}")

    monkeypatch.setitem(configured.SERVICE_CLASSES, "iii-state", Picky)  # type: ignore[arg-type]
    config = tmp_path / "config.yaml"
    config.write_text("workers:\n  - name: iii-state\n    config: {odd: 1}\n")
    parser = argparse.ArgumentParser()
    cli.add_engine_arguments(parser)
    args = parser.parse_args(["--config", str(config), "--port", "0", "--in-memory"])
    assert cli.run_engine_command(args) == 2
