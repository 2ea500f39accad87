"""`anyiii.run`: Ctrl-C ends a worker script with status 130, cleanly, on both backends."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import anyio
    import anyiii

    async def main() -> None:
        async with anyiii.engine.run(http_port=None) as engine:
            async with anyiii.connect(engine.url) as worker:

                @worker.function("x")
                async def x(data: object) -> None:
                    return None

                print("READY", flush=True)
                await worker.serve_forever()

    anyiii.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_exits_with_130_and_no_traceback(backend: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip() == "interrupted"


def test_run_returns_the_result() -> None:
    import anyiii

    async def answer(value: int) -> int:
        return value * 2

    assert anyiii.run(answer, 21) == 42
    assert anyiii.run(answer, 4, backend="trio") == 8
