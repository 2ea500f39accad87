"""Drop-in proof: programs written for the official `iii-sdk` run unchanged on anyiii.

Each program in `programs/` is written for iii-sdk 0.25 and prints what it observes, one
JSON line at a time. It runs twice against a fresh embedded engine: as written (official
SDK), and with only its `from iii ...` imports switched to `from anyiii ...`. The two
outputs must be equal, and must be what the program is meant to observe.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from interop_support import worker_env

import anyiii

PROGRAMS = Path(__file__).resolve().parent / "programs"
IMPORT = re.compile(r"^from iii(?:\.triggers)? import ", re.MULTILINE)


def switched(source: str) -> str:
    """The program with only its imports switched to anyiii."""
    result, count = IMPORT.subn("from anyiii import ", source)
    assert count >= 1
    return result


def write_switched(program: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"anyiii_{program.name}"
    path.write_text(switched(program.read_text()))
    return path


async def run(program: Path, *, use_anyiii: bool, tmp_path: Path) -> list[dict[str, Any]]:
    """Run `program` against a fresh embedded engine; its observations, in order."""
    path = write_switched(program, tmp_path) if use_anyiii else program
    async with anyiii.engine.run(http_port=0) as engine:
        argv = [sys.executable, str(path), engine.url, str(engine.http_url)]
        completed = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                argv, capture_output=True, text=True, timeout=60, check=False, env=worker_env()
            )
        )
    label = "anyiii" if use_anyiii else "official"
    assert completed.returncode == 0, f"{label}: {completed.stdout}\n{completed.stderr}"
    if use_anyiii:
        assert "Traceback" not in completed.stderr, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]


async def both(name: str, tmp_path: Path) -> list[dict[str, Any]]:
    program = PROGRAMS / name
    official = await run(program, use_anyiii=False, tmp_path=tmp_path)
    ours = await run(program, use_anyiii=True, tmp_path=tmp_path)
    assert ours == official
    return ours


def test_the_switch_changes_only_the_iii_imports() -> None:
    source = (PROGRAMS / "custom_trigger.py").read_text()
    changed = switched(source)
    differing = [
        (a, b) for a, b in zip(source.splitlines(), changed.splitlines(), strict=True) if a != b
    ]
    assert differing == [
        (
            "from iii import InitOptions, InvocationError, register_worker",
            "from anyiii import InitOptions, InvocationError, register_worker",
        ),
        (
            "from iii.triggers import TriggerConfig, TriggerHandler",
            "from anyiii import TriggerConfig, TriggerHandler",
        ),
    ]


@pytest.mark.timeout(180)
async def test_functions_and_calls(tmp_path: Path) -> None:
    lines = await both("functions_and_calls.py", tmp_path)
    assert lines == [
        {"state": "connected"},
        {"add": {"sum": 42}},
        {"shout": {"in_thread": True, "text": "HI"}},
        {"fail": {"code": "invocation_failed", "message_ends": True}},
        {"missing": "function_not_found"},
        {"void_delivered": True},
        {"listed": ["dropin::add", "dropin::fail", "dropin::record", "dropin::shout"]},
        {"done": True},
    ]


@pytest.mark.timeout(180)
async def test_http_api(tmp_path: Path) -> None:
    lines = await both("http_api.py", tmp_path)
    assert lines == [
        {"create": [201, "orders", {"id": "1", "item": "tea", "shop": "north"}]},
        {"create_invalid": [400, None, {"error": "item is required"}]},
        {"get": [200, None, {"id": "1", "item": "tea", "shop": "north", "verbose": "yes"}]},
        {"get_missing": [404, None, {"error": "no such order"}]},
        {"crash": [500, "the database is down"]},
        {"no_route": 404},
        {"done": True},
    ]


@pytest.mark.timeout(180)
async def test_custom_trigger_type(tmp_path: Path) -> None:
    lines = await both("custom_trigger.py", tmp_path)
    assert lines == [
        {"bound": True},
        {
            "config": {
                "config": {"path": "/github"},
                "function_id": "app::on_hook",
                "metadata": {"team": "infra"},
            }
        },
        {"fired": True},
        {"received": {"event": "push", "metadata": {"team": "infra"}}},
        {"refused": True},
        {"unbound": True},
        {"done": True},
    ]
