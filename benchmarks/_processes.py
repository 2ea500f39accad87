"""Process plumbing shared by the multi-process benchmarks (engine, callee, caller)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "THIS_SRC",
    "cpu_seconds",
    "engine_process",
    "engine_url",
    "first_line",
    "process",
    "raise_fd_limit",
    "rss_kib",
    "script_env",
]


THIS_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def script_env(src: str = THIS_SRC) -> dict[str, str]:
    """The environment for benchmark subprocesses: anyiii imported from `src` (this
    checkout's by default), the official SDK's telemetry socket off, output unbuffered."""
    env = dict(os.environ, OTEL_ENABLED="false", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def process(*argv: str, src: str = THIS_SRC) -> Iterator[subprocess.Popen[str]]:
    """A subprocess with piped stdin/stdout, killed on the way out whatever happens;
    anyiii is imported from `src`."""
    child = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=script_env(src),
    )
    try:
        yield child
    finally:
        child.kill()
        child.wait(timeout=10)


def first_line(child: subprocess.Popen[str], what: str) -> str:
    """The next line `child` prints; exits the benchmark if it died instead."""
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        sys.exit(f"{what} exited early (code {child.poll()})")
    return line.strip()


@contextmanager
def engine_process(backend: str = "asyncio", src: str = THIS_SRC) -> Iterator[tuple[str, int]]:
    """Run `anyiii engine` (imported from `src`) on free ports, in memory, in a subprocess;
    yields its worker URL and pid."""
    argv = [sys.executable, "-m", "anyiii", "engine", "--port", "0", "--http-port", "0"]
    argv += ["--stream-port", "0", "--in-memory"]
    with process(*argv, "--backend", backend, "--log-level", "warning", src=src) as engine:
        # The first line reads "anyiii engine: workers ws://... http http://...".
        yield first_line(engine, "the engine").split()[3], engine.pid


@contextmanager
def engine_url(backend: str = "asyncio") -> Iterator[str]:
    """Run `anyiii engine` on free ports in a subprocess; yields its worker URL."""
    with engine_process(backend) as (url, _):
        yield url


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """A process's resident memory now (VmRSS from /proc), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit (children started
    afterwards inherit it); returns the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = hard if hard != resource.RLIM_INFINITY else 65_536
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def calls_so_far(caller: subprocess.Popen[str]) -> int:
    assert caller.stdin is not None
    caller.stdin.write("\n")
    caller.stdin.flush()
    return int(first_line(caller, "the caller"))
