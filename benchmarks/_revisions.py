"""Another git revision's source tree, for benchmarks that compare this checkout with it.

`--baseline REV` on `runtime_cost.py` and `roundtrip.py` measures the working tree
(uncommitted changes included) against REV's `src/` in the same run, without the user
checking REV out by hand: `exported_revision` writes that revision's `src/` into a
temporary directory (`git archive`, so no worktree is registered and nothing in this
checkout changes) and removes it again when the comparison ends, whether it ends normally,
with an error or with Ctrl-C.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from _processes import THIS_SRC

__all__ = ["CHECKOUT", "exported_revision", "resolve_revision"]

CHECKOUT = os.path.dirname(THIS_SRC)
"""The git checkout these benchmarks belong to: revisions are looked up in its history."""


def _git(*args: str, checkout: str) -> subprocess.CompletedProcess[bytes]:
    """Run git in `checkout`; exits the benchmark with a clear message if git is missing."""
    try:
        return subprocess.run(
            ["git", "-C", checkout, *args], capture_output=True, check=False, timeout=120
        )
    except FileNotFoundError:
        sys.exit("--baseline needs git on PATH (or use --baseline-src DIR)")


def resolve_revision(revision: str, checkout: str = CHECKOUT) -> str:
    """The full commit id `revision` names (a commit id, `HEAD~1`, a branch, a tag).

    Exits the benchmark with a message, not a traceback, when it names no commit or
    `checkout` is not a git checkout: the benchmark cannot run without its baseline.
    """
    if revision.startswith("-"):  # not an option for git rev-parse
        sys.exit(f"--baseline {revision!r}: not a git revision")
    found = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", checkout=checkout)
    if found.returncode != 0:
        sys.exit(
            f"--baseline {revision!r}: no such commit in {checkout} "
            f"({found.stderr.decode(errors='replace').strip() or 'git rev-parse found none'})"
        )
    return found.stdout.decode().strip()


@contextmanager
def exported_revision(revision: str, checkout: str = CHECKOUT) -> Iterator[str]:
    """A temporary directory holding `revision`'s `src/` (so `<dir>/src` goes on
    PYTHONPATH); the directory is removed on the way out whatever happens.

    `git archive` reads the commit from the object store, so the working tree, the index
    and the list of worktrees stay as they are. Extraction uses the `data` filter: paths
    that would leave the directory are refused, not written.
    """
    commit = resolve_revision(revision, checkout)
    archived = _git("archive", "--format=tar", commit, "src", checkout=checkout)
    if archived.returncode != 0:
        sys.exit(
            f"--baseline {revision!r}: git archive of its src/ failed: "
            f"{archived.stderr.decode(errors='replace').strip()}"
        )
    with _terminate_as_exit(), tempfile.TemporaryDirectory(prefix="anyiii-baseline-") as tree:
        with tarfile.open(fileobj=io.BytesIO(archived.stdout)) as archive:
            archive.extractall(tree, filter="data")
        if not os.path.isfile(os.path.join(tree, "src", "anyiii", "__init__.py")):
            sys.exit(f"--baseline {revision!r}: its src/ holds no anyiii package")
        print(
            f"baseline: {revision} = {commit[:12]}, exported to a temporary directory", flush=True
        )
        yield tree


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit (status 143) like Ctrl-C raises
    KeyboardInterrupt, so a benchmark stopped by `kill` or a job's time limit still
    unwinds and removes its temporary tree; the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
