"""The benchmark scripts still run, so they cannot rot between the times they are used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_codec_benchmark_quick_run() -> None:
    """`benchmarks/codec.py --quick` passes its sanity checks and prints its table."""
    path = [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "codec.py"), "--quick"],
        capture_output=True,
        encoding="utf-8",
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONIOENCODING": "utf-8"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "| measurement | median µs | per second | ratio (median of rounds) |" in completed.stdout
