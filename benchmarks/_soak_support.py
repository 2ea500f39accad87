"""What the phases of `soak.py` share: the echo function, latency arrays, error counting,
object counts, and waiting for the engine to list a worker's functions."""

from __future__ import annotations

import gc
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio

import anyiii

ECHO = "soak::echo"
LONG_MS = 600_000
"""Callers' invocation timeout: a stalled call shows as a failed phase (`--phase-timeout`),
not as a timeout of its own."""


class Latencies:
    """Seconds per call, in an array allocated up front for `capacity` of them, so that
    keeping them does not grow this process's memory during the phase it measures."""

    def __init__(self, capacity: int) -> None:
        self._values = array("d", bytes(8 * capacity))
        self._count = 0

    def append(self, seconds: float) -> None:
        if self._count < len(self._values):
            self._values[self._count] = seconds
        else:
            self._values.append(seconds)
        self._count += 1

    def values(self) -> array[float]:
        return self._values[: self._count]


class PhaseFailed(Exception):
    """A phase could not finish (workers did not connect, calls did not come back)."""


async def echo(data: Any) -> Any:
    return data


# Payloads are strings: the engine adds `_caller_worker_id` to an object payload (as the
# real engine does), so an object would not come back exactly as sent.


def count_error(errors: dict[str, int], error: BaseException) -> None:
    """A failed call or connection counts under its error code, else its type."""
    code = str(getattr(error, "code", None) or type(error).__name__)
    errors[code] = errors.get(code, 0) + 1


def failure_text(failure: BaseException) -> str:
    """What stopped a phase, with the exceptions of a task group spelled out."""
    if isinstance(failure, BaseExceptionGroup):
        return "; ".join(failure_text(inner) for inner in failure.exceptions)
    if isinstance(failure, TimeoutError):
        return "did not finish within --phase-timeout"
    return str(failure) or type(failure).__name__


def collected_objects() -> list[int]:
    """After a collection: the objects the garbage collector tracks (containers) and the
    blocks Python's allocator holds (every object, strings and bytes too)."""
    gc.collect()
    return [len(gc.get_objects()), sys.getallocatedblocks()]


def highest(samples: list[dict[str, Any]], roles: Iterable[str]) -> dict[str, dict[str, int]]:
    """Each role's highest RSS and fds over `samples`."""
    return {
        role: {
            "rss_kib": max(s[f"{role}_rss_kib"] for s in samples),
            "fds": max(s[f"{role}_fds"] for s in samples),
        }
        for role in roles
    }


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, limit: float, every: float = 0.05
) -> float:
    """Poll `condition` (a state kept elsewhere: the engine's lists, a worker's counters)
    until it holds; the seconds it took. PhaseFailed after `limit` seconds."""
    started = time.perf_counter()
    with anyio.move_on_after(limit):
        while True:
            if await condition():
                return time.perf_counter() - started
            await anyio.sleep(every)
    raise PhaseFailed(f"{what}: not after {limit:.0f} s")


async def listed(worker: anyiii.Worker, prefix: str) -> list[dict[str, Any]]:
    """The workers the engine lists whose name starts with `prefix`."""
    answer = await worker.trigger_async(
        {"function_id": "engine::workers::list", "payload": {"search": prefix}}
    )
    return [w for w in answer["workers"] if str(w.get("name", "")).startswith(prefix)]
