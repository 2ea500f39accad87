"""Function handles are typed by their signature: mypy checks every call site.

The sample is type-checked by mypy --strict in a subprocess; a call with a wrong argument
type, and one with a missing argument, must each be reported on their line, and the
correct calls must not be.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = textwrap.dedent(
    """
    import anyiii

    registry = anyiii.Registry("typed")


    @registry.function
    async def add(a: int, b: int = 1) -> int:
        return a + b


    @registry.function
    def shout(text: str) -> str:
        return text.upper()


    async def callers() -> None:
        total: int = await add(1, b=2)
        loud: str = await shout("hi")
        call: anyiii.Call = add.build_call(3)
        batch = registry.batch().add(add, 4)
        wrong = await add("one")  # error: str for int
        missing = await shout()  # error: no argument
        print(total, loud, call, batch, wrong, missing)
    """
)


@pytest.mark.timeout(300)
def test_mypy_checks_call_sites_of_function_handles(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(sample)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=280,
        check=False,
    )
    errors = [line for line in completed.stdout.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors})
    expected = [n for n, text in enumerate(SAMPLE.splitlines(), 1) if "# error:" in text]
    assert len(expected) == 2
    assert lines == expected, completed.stdout
    assert "incompatible type" in completed.stdout.lower()
