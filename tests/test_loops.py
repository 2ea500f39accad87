"""`loop="uvloop"`: anyiii runs asyncio on uvloop when asked, and says clearly when it
cannot (trio, or uvloop missing); the engine CLI's and `anyiii serve`'s `--loop`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import anyio
import anyio.from_thread
import pytest
from engine_process import engine_process

import anyiii
from anyiii._loops import backend_options
from anyiii.testing import running_engine


def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


async def _which_loop() -> str:
    await anyio.lowlevel.checkpoint()
    return _loop_module()


def test_anyiii_run_runs_on_uvloop_when_asked() -> None:
    assert anyiii.run(_which_loop, loop="uvloop").startswith("uvloop")
    assert anyiii.run(_which_loop).startswith("asyncio")


def test_uvloop_with_trio_or_an_unknown_loop_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="backend='asyncio'"):
        anyiii.run(_which_loop, backend="trio", loop="uvloop")
    with pytest.raises(ValueError, match="unknown event loop"):
        backend_options("asyncio", "tokio")


def test_missing_uvloop_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "uvloop" else real(name)
    )
    with pytest.raises(ValueError, match=r"anyiii\[uvloop\]"):
        backend_options("asyncio", "uvloop")


def test_a_blocking_worker_on_uvloop() -> None:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_engine(http_port=None)) as e,
    ):
        client = anyiii.register_worker(e.url, anyiii.InitOptions(loop="uvloop"))
        try:
            client.register_function("loop::which", lambda _: "ok")
            assert client.trigger({"function_id": "loop::which", "payload": None}) == "ok"
        finally:
            client.shutdown()


async def test_the_engine_cli_serves_on_uvloop() -> None:
    with anyio.fail_after(30):
        async with engine_process("asyncio", "--loop", "uvloop") as engine:
            async with anyiii.connect(engine.url) as worker:
                state = anyiii.State(worker)
                await state.set("loop", "k", 1)
                assert await state.get("loop", "k") == 1
            assert await engine.stop(signal.SIGTERM) == 0


def test_the_command_lines_refuse_uvloop_on_trio() -> None:
    for command in (
        ["engine", "--backend", "trio", "--loop", "uvloop", "--in-memory"],
        ["serve", "nothing:here", "--backend", "trio", "--loop", "uvloop"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "anyiii", *command], capture_output=True, timeout=30
        )
        assert result.returncode == 2, result
        assert b"uvloop is an asyncio event loop" in result.stderr
