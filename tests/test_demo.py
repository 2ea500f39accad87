"""The README's main job: `anyiii demo` runs every step and says so, or names the failing one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from anyiii._demo import FAIL_STEP_VARIABLE, run_demo


def _demo(*args: str, fail_step: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(FAIL_STEP_VARIABLE, None)
    if fail_step is not None:
        env[FAIL_STEP_VARIABLE] = str(fail_step)
    return subprocess.run(
        [sys.executable, "-m", "anyiii", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_demo_runs_as_a_command_and_reports_each_step() -> None:
    completed = _demo()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "all 10 steps passed" in out
    assert "{'greeting': 'hello, Ada', 'served_on': 'trio'}" in out
    assert "{'sum': 5, 'served_on': 'asyncio'}" in out
    assert "POST /orders -> 201 {'order': 'green tea', 'note': 'hello, Grace'}" in out
    assert "InvocationError function_not_found" in out
    assert completed.stderr == ""
    for number in range(1, 10):
        assert f"  {number}. " in out
    assert out.count(" ms") >= 10


def test_the_demo_in_process_leaves_no_thread_behind(capsys: pytest.CaptureFixture[str]) -> None:
    before = set(threading.enumerate())
    assert run_demo() == 0
    assert "all 10 steps passed" in capsys.readouterr().out
    left = [t for t in threading.enumerate() if t not in before and not t.daemon]
    assert left == []


@pytest.mark.parametrize("step", [1, 2, 5, 9, 10])
def test_a_failing_step_is_named_and_exits_non_zero(step: int) -> None:
    completed = _demo(fail_step=step)
    assert completed.returncode == 1
    failed = [line for line in completed.stdout.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1, completed.stdout
    assert failed[0].startswith(f"FAILED: step {step} (")
    assert "Traceback" not in completed.stdout + completed.stderr


def test_verbose_adds_the_traceback() -> None:
    completed = _demo("--verbose", fail_step=3)
    assert completed.returncode == 1
    assert "FAILED: step 3 (connect a worker on asyncio)" in completed.stdout
    assert "Traceback" in completed.stderr
