"""`anyiii.run`: Ctrl-C or SIGTERM end a worker script cleanly (130 / 143), on both backends."""

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
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_program_cleanly(backend: str, signum: int, code: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "READY"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip() == "interrupted"


def test_run_returns_the_result() -> None:
    import anyiii

    async def answer(value: int) -> int:
        return value * 2

    assert anyiii.run(answer, 21) == 42
    assert anyiii.run(answer, 4, backend="trio") == 8
