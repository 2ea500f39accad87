"""The benchmark scripts still run, so they cannot rot between the times they are used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_run(script: str, timeout: float, *args: str) -> str:
    path = [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONIOENCODING": "utf-8"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_codec_benchmark_quick_run() -> None:
    """`benchmarks/codec.py --quick` passes its sanity checks and prints its table."""
    output = _quick_run("codec.py", 30)
    assert "| measurement | median µs | per second | ratio (median of rounds) |" in output


@pytest.mark.timeout(180)
def test_engine_routing_benchmark_quick_run() -> None:
    """Official SDK workers through the embedded engine, on both engine backends."""
    output = _quick_run("engine_routing.py", 170)
    assert "| engine backend |" in output
    assert "| asyncio |" in output
    assert "| trio |" in output


@pytest.mark.timeout(240)
def test_roundtrip_benchmark_quick_run() -> None:
    """anyiii and official workers through one engine: every SDK measured, ratios printed;
    a baseline tree (here this one again) is measured in the same rotation."""
    output = _quick_run("roundtrip.py", 230, "--baseline-src", str(ROOT / "src"))
    for sdk in (
        "official iii-sdk",
        "anyiii asyncio",
        "anyiii trio",
        "anyiii uvloop",
        "baseline trio",
    ):
        assert f"| {sdk} |" in output
    assert "anyiii asyncio / official at 100 in flight" in output
    assert "anyiii uvloop / official at 100 in flight" in output
    assert "trio: this / baseline callee CPU per call" in output


@pytest.mark.timeout(120)
def test_runtime_cost_benchmark_quick_run() -> None:
    """One process per sample, this tree against a baseline tree (here this one again)."""
    output = _quick_run("runtime_cost.py", 110, "--baseline-src", str(ROOT / "src"))
    assert "asyncio: this median" in output
    assert "trio: this median" in output
    assert "paired ratio median" in output


@pytest.mark.timeout(120)
def test_primitive_benchmark_quick_run() -> None:
    """A forwarding primitive function against a typed one, on both backends."""
    output = _quick_run("primitive.py", 110)
    assert "| asyncio |" in output
    assert "| trio |" in output


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_profile_benchmark_quick_run(backend: str) -> None:
    """The three processes under load, busy shares measured (no sampler: py-spy is a
    benchmark extra, not a test dependency)."""
    output = _quick_run("profile.py", 110, "--backend", backend)
    assert f"backend {backend}:" in output
    for role in ("caller", "callee", "engine"):
        assert f"| {role} |" in output


@pytest.mark.timeout(150)
def test_scaling_benchmark_quick_run() -> None:
    """All four scaling series at tiny sizes, sanity checks included, every table printed;
    no charts (matplotlib is a benchmark extra, not a test dependency)."""
    output = _quick_run("scaling.py", 140)
    for header in (
        "| SDK | in flight | calls/s | p50 µs |",
        "| payload | official iii-sdk MB/s | anyiii asyncio MB/s | anyiii trio MB/s |",
        "| engine also holds | connected workers | user functions | calls/s |",
        "| memory | process | count | KiB each (median) |",
    ):
        assert header in output
    for sdk in ("official iii-sdk", "anyiii asyncio", "anyiii trio"):
        assert f"| {sdk} | 100 |" in output
        assert f"| per pending call | {sdk} caller |" in output
    assert "chart:" not in output
