"""Talking to the processes of `scaling.py` (the scripts of `_scaling_scripts.py`) over
stdin and stdout, with a deadline on every wait."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from _processes import process

# -- talking to the processes ---------------------------------------------------------------


class SanityError(Exception):
    """A sanity check failed: the benchmark would measure the wrong thing."""


class PhaseFailed(Exception):
    """A process died or went silent under load: reported, not hidden."""


class Lines:
    """A child's stdout, read by a thread, so that every wait has a deadline."""

    def __init__(self, child: subprocess.Popen[str], what: str) -> None:
        self.child, self.what = child, what
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def next(self, timeout: float = 120.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise PhaseFailed(f"{self.what} said nothing for {timeout:.0f} s") from None
        if line is None:
            self._lines.put(None)
            self.child.wait(timeout=10)
            raise PhaseFailed(f"{self.what} exited (code {self.child.returncode})")
        if line.startswith("FAIL"):
            raise SanityError(f"{self.what}: {line}")
        return line

    def expect(self, word: str, timeout: float = 120.0) -> list[str]:
        """The next line, which must start with `word`; its other words."""
        line = self.next(timeout)
        words = line.split()
        if not words or words[0] != word:
            raise PhaseFailed(f"{self.what} said {line[:200]!r} instead of {word!r}")
        return words[1:]

    def send(self, text: str) -> None:
        assert self.child.stdin is not None
        try:
            self.child.stdin.write(text + "\n")
            self.child.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise PhaseFailed(f"{self.what} is gone ({error})") from None


@contextmanager
def started(argv: Sequence[str], what: str) -> Iterator[Lines]:
    """A process, killed on the way out (`process()`); yields its lines at once."""
    with process(*argv) as child:
        yield Lines(child, what)


def wait_ready(*processes: Lines) -> None:
    """Wait until each of `processes` (started together) says READY."""
    for lines in processes:
        lines.expect("READY", timeout=90)


def warm_helper(helper: Lines, url: str) -> int:
    """One connection to the engine at `url` opened and closed by the helper, so that
    imports, caches and the engine's first-connection costs are paid; the helper's RSS
    after it, in KiB."""
    helper.send(f"warm {url}")
    return int(helper.expect("warm", timeout=60)[0])


@contextmanager
def idle_workers(helper: Lines, url: str, count: int, functions: int) -> Iterator[int]:
    """The helper holds `count` idle anyiii workers with `functions` functions in all on
    the engine at `url`, for the length of the block; yields its RSS in KiB once the engine
    lists every one of them (a sanity check)."""
    helper.send(f"open {url} {count} {functions}")
    rss, workers, listed = (int(w) for w in helper.expect("open", timeout=240))
    if (workers, listed) != (count, functions):
        raise SanityError(
            f"the engine lists {workers} idle workers and {listed} of their functions, "
            f"not {count} and {functions}"
        )
    yield rss
    helper.send("close")
    helper.expect("closed", timeout=120)
