"""Every Python example in docs/ runs, on asyncio and on trio, and prints what the page says.

A page's example is a ```python block; when a ```text block follows it ("It prints:"), the
example's output must be exactly that text. An async example ends with `anyio.run(main)`;
a blocking-facade example ends with `main()` and builds `anyiii.InitOptions(...)`, whose
background loop is switched to each backend in turn.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLE = re.compile(r"```python\n(.*?)```(?:\s*It prints:\s*```text\n(.*?)```)?", re.DOTALL)


def _is_blocking(source: str) -> bool:
    return source.rstrip().endswith("main()") and "anyiii.InitOptions(" in source


def _on_backend(source: str, backend: str) -> str:
    if _is_blocking(source):
        return source.replace("anyiii.InitOptions(", f'anyiii.InitOptions(backend="{backend}", ')
    return source.replace("anyio.run(main)", f'anyio.run(main, backend="{backend}")')


def _examples() -> list[object]:
    params = []
    for page in sorted(DOCS.glob("*.md")):
        for number, match in enumerate(EXAMPLE.finditer(page.read_text()), start=1):
            source, output = match.group(1), match.group(2)
            if "anyio.run(main)" not in source and not _is_blocking(source):
                continue  # a fragment, not a program
            for backend in ("asyncio", "trio"):
                params.append(
                    pytest.param(source, output, backend, id=f"{page.stem}-{number}-{backend}")
                )
    return params


def test_the_concept_pages_have_examples() -> None:
    pages = {param.id.split("-")[0] for param in _examples()}  # type: ignore[attr-defined]
    assert {
        "workers",
        "triggers",
        "http",
        "blocking",
        "cancellation",
        "timeouts",
        "backpressure",
        "engine",
        "functions",
        "channels",
    } <= pages


@pytest.mark.parametrize(("source", "output", "backend"), _examples())
def test_example_runs(source: str, output: str | None, backend: str) -> None:
    program = _on_backend(source, backend)
    completed = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    if output is not None:
        assert completed.stdout == output
