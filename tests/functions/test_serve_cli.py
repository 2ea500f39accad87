"""`anyiii serve module:registry` as a real process against an embedded engine."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import anyiii
from anyiii.testing import running_engine

MODULE = textwrap.dedent(
    """
    import anyiii

    shop = anyiii.Registry("shop")


    @shop.function(id="shop::price")
    async def price(item: str, quantity: int) -> int:
        return {"tea": 3, "cake": 5}[item] * quantity
    """
)


def serve_env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("worker_backend", ["asyncio", "trio"])
async def test_serve_runs_a_registry_until_sigterm_then_exits_0(
    tmp_path: Path, worker_backend: str
) -> None:
    (tmp_path / "shopmod.py").write_text(MODULE)
    price = anyiii.Registry("shop-client").remote(id="shop::price")(_price_stub)
    with anyio.fail_after(60):
        async with running_engine(http_port=None) as engine:
            command = [sys.executable, "-m", "anyiii", "serve", "shopmod:shop"]
            command += ["--url", engine.url, "--backend", worker_backend]
            async with await anyio.open_process(command, cwd=tmp_path, env=serve_env()) as proc:
                assert proc.stdout is not None
                ready = b""
                while not ready.endswith(b"\n"):  # one line, however it is split
                    ready += await proc.stdout.receive()
                assert b"anyiii serve: 1 functions of 'shop'" in ready
                async with anyiii.Client(engine.url):
                    assert await price("cake", quantity=2) == 10
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0


async def _price_stub(item: str, quantity: int) -> int:
    raise AssertionError("a remote stub never runs")


async def test_serve_refuses_what_is_not_a_registry(tmp_path: Path) -> None:
    (tmp_path / "notreg.py").write_text("thing = 42\n")
    with anyio.fail_after(30):
        result = await anyio.run_process(
            [sys.executable, "-m", "anyiii", "serve", "notreg:thing"],
            cwd=tmp_path,
            env=serve_env(),
            check=False,
        )
    assert result.returncode == 2
    assert b"not an anyiii.Registry" in result.stderr
