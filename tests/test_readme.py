"""The README's example runs, under asyncio and under trio."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "the README should have exactly one Python example"
    return blocks[0]


def test_the_example_is_short() -> None:
    code = [line for line in _example().splitlines() if line.strip()]
    assert len(code) <= 16  # the README promises a worker in about 15 lines


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_example_runs(backend: str) -> None:
    source = _example().replace("anyio.run(main)", f'anyio.run(main, backend="{backend}")')
    completed = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == ["{'sum': 5}", "hello, Ada"]
