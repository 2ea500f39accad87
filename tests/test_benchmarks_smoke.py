"""The benchmark scripts still run, so they cannot rot between the times they are used."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_quick(script: str, timeout: float, *args: str) -> subprocess.CompletedProcess[str]:
    path = [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONIOENCODING": "utf-8"},
    )


def _quick_run(script: str, timeout: float, *args: str) -> str:
    completed = _run_quick(script, timeout, *args)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_codec_benchmark_quick_run() -> None:
    """`benchmarks/codec.py --quick` passes its sanity checks and prints its table."""
    output = _quick_run("codec.py", 30)
    assert "| measurement | median µs | per second | ratio (median of rounds) |" in output


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fragment_cost_benchmark_quick_run(backend: str) -> None:
    """The three ways of sending 16 MiB each reach the server; the ratio is printed."""
    output = _quick_run("fragment_cost.py", 60, "--backend", backend)
    for way in ("whole:", "messages:", "fragments:", "fragments / messages:"):
        assert way in output


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
    a baseline revision (HEAD, exported to a temporary directory) is measured in the same
    rotation."""
    output = _quick_run("roundtrip.py", 230, "--baseline", "HEAD")
    assert "baseline: HEAD = " in output
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
def test_runtime_cost_guard_against_baseline_revision() -> None:
    """`--baseline HEAD`: the script exports HEAD's src/ itself and compares the working
    tree with it on both backends, in timing mode (no valgrind needed); `--max-ratio`
    adds one verdict line per backend. The limit is far above any noise of a quick run,
    so the verdict is OK and the exit status 0."""
    output = _quick_run("runtime_cost.py", 110, "--baseline", "HEAD", "--max-ratio", "50")
    assert "baseline: HEAD = " in output
    for backend in ("asyncio", "trio"):
        assert f"{backend}: this median" in output
        assert f"{backend} guard: this/baseline CPU per call = " in output
    assert output.count("(limit 50.0): OK") == 2


@pytest.mark.timeout(120)
def test_runtime_cost_guard_exits_1_above_the_limit() -> None:
    """A limit no run can meet: the verdict is REGRESSION and the exit status 1."""
    completed = _run_quick(
        "runtime_cost.py",
        110,
        "--baseline",
        "HEAD",
        "--backends",
        "asyncio",
        "--max-ratio",
        "0.001",
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "asyncio guard: this/baseline CPU per call = " in completed.stdout
    assert "(limit 0.001): REGRESSION" in completed.stdout


def test_bad_baseline_revision_is_a_clear_error() -> None:
    """A revision git does not know ends the benchmark with a message, not a traceback."""
    completed = _run_quick("runtime_cost.py", 60, "--baseline", "no-such-revision-anywhere")
    assert completed.returncode != 0
    assert "--baseline 'no-such-revision-anywhere': no such commit" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert "this median" not in completed.stdout


def test_revision_exporter_writes_src_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """`exported_revision` gives a temporary tree holding the revision's src/, removed
    when the block ends, also when it ends with an error; an unknown revision exits with
    a message naming it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    revisions = importlib.import_module("_revisions")
    with revisions.exported_revision("HEAD") as tree:
        assert (Path(tree) / "src" / "anyiii" / "__init__.py").is_file()
    assert not Path(tree).exists()
    seen: list[Path] = []

    def fail_inside() -> None:
        with revisions.exported_revision("HEAD") as tree:
            seen.append(Path(tree))
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        fail_inside()
    assert seen
    assert not seen[0].exists()
    with (
        pytest.raises(SystemExit, match="'HEAD~100000': no such commit"),
        revisions.exported_revision("HEAD~100000"),
    ):
        pass


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
    output = _quick_run("chain_profile.py", 110, "--backend", backend)
    assert f"backend {backend}:" in output
    for role in ("caller", "callee", "engine"):
        assert f"| {role} |" in output


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_engine_floor_benchmark_quick_run(backend: str) -> None:
    """anyiii and the floor programs carry the same load; calls complete through each."""
    output = _quick_run("engine_floor.py", 140, "--backend", backend)
    rows = [line for line in output.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| anyiii",
        "| anyiii workers, floor routing on anyiii's transport",
        "| anyiii workers, anyio floor relay",
        "| anyiii workers, asyncio floor relay",
        "| anyio floor caller, anyiii engine and callee",
        "| asyncio floor caller, anyiii engine and callee",
        "| anyio floor",
        "| asyncio floor",
    ]
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")[1:]]
        assert all(float(cell.replace(",", "")) > 0 for cell in cells), row


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


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("backend", "engine"), [("asyncio", "process"), ("trio", "inprocess")])
def test_soak_benchmark_quick_run(backend: str, engine: str) -> None:
    """Soak, scale, in flight and churn at tiny sizes (200 calls, 10 workers, 100 in flight,
    20 churn cycles), each backend and each engine mode once: every phase reported, every
    call answered, the fds back where they were after the scale workers and the churn
    closed; no chart (matplotlib is a benchmark extra, not a test dependency)."""
    output = _quick_run("soak.py", 80, "--backend", backend, "--engine", engine)
    rows = {
        cells[0]: cells
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")]
            for line in output.splitlines()
            if line.startswith("| ") and "---" not in line
        )
    }
    for phase, count in (
        ("soak", 200),
        ("scale (round 1): connect", 10),
        ("scale (round 1): one call each", 10),
        ("scale (round 2): connect", 10),
        ("in flight (round 1)", 100),
        ("in flight (round 2)", 100),
        ("churn", 20),
    ):
        cells = rows[phase]
        assert cells[2:5] == [str(count), str(count), "0"], cells  # count, answered, failed
    load = rows["churn: calls meanwhile"]
    assert int(load[2].replace(",", "")) > 0
    assert load[2] == load[3], load
    assert load[4] == "0", load
    assert "every call was answered" in output
    assert "NOT ANSWERED" not in output
    assert "FAILED" not in output
    fds = rows["churn"][10]  # this process: before → peak → after
    assert fds.split(" → ")[0] == fds.split(" → ")[-1], fds
    assert "chart:" not in output
