"""The README's main job runs and reports success."""

from __future__ import annotations

import subprocess
import sys

from anyiii._demo import run_demo


def test_demo_passes_every_step() -> None:
    assert run_demo(exchanges=200) == 0


def test_demo_runs_as_a_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "anyiii", "demo", "--exchanges", "100"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "all steps passed" in completed.stdout
    assert "math::add(2, 3) = {'c': 5}" in completed.stdout
