"""Set up the development environment and run the project's two jobs.

    python3 tasks.py demo    # the main job: the anyiii demo
    python3 tasks.py test    # lint, type checks and the whole test suite

Needs only Python >= 3.11 with pip. The first run creates `.venv/` beside this file and
installs anyiii with its `dev` extra into it; later runs reinstall only when
`pyproject.toml` changed. Extra arguments after `test` go to pytest.

`test` also installs the official Node SDK the interop tests drive (`npm ci` in
`tests/interop/node`) when npm is available; without it those tests skip (or fail when the
`CI` environment variable is set).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".anyiii-installed"
NODE_INTEROP = ROOT / "tests" / "interop" / "node"


def _venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def _run(*argv: str | Path, cwd: Path = ROOT, required: bool = True) -> bool:
    """Run a command; a failure ends this script unless `required` is false."""
    print("+", " ".join(str(a) for a in argv), flush=True)
    completed = subprocess.run([str(a) for a in argv], cwd=cwd, check=False)
    if completed.returncode != 0 and required:
        sys.exit(completed.returncode)
    return completed.returncode == 0


def _install_fingerprint() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_environment() -> Path:
    """Create `.venv` and install `anyiii[dev]` into it unless it is already up to date."""
    if sys.version_info < (3, 11):  # noqa: UP036 -- this script may run on an older Python
        sys.exit(f"anyiii needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    python = _venv_python()
    if not python.exists():
        _run(sys.executable, "-m", "venv", VENV)
    fingerprint = _install_fingerprint()
    if not STAMP.exists() or STAMP.read_text() != fingerprint:
        _run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        _run(python, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
        STAMP.write_text(fingerprint)
    return python


def ensure_node_packages() -> None:
    """`npm ci` in `tests/interop/node` when its `node_modules` is missing or older than
    `package-lock.json`. Without npm, say so and go on; an install failure stops the job only
    under CI (elsewhere the Node interop tests then skip)."""
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: the Node interop tests will skip (or fail if CI is set)", flush=True)
        return
    modules = NODE_INTEROP / "node_modules"
    lock = NODE_INTEROP / "package-lock.json"
    if modules.is_dir() and modules.stat().st_mtime >= lock.stat().st_mtime:
        return
    ci = bool(os.environ.get("CI"))
    if not _run(npm, "ci", "--no-audit", "--no-fund", cwd=NODE_INTEROP, required=ci):
        print("npm ci failed: the Node interop tests will skip", flush=True)


def demo(python: Path, args: list[str]) -> None:
    """The main job: run `anyiii demo`."""
    _run(python, "-m", "anyiii", "demo", *args)


def example(python: Path, args: list[str]) -> None:
    """The example application (`examples/orders/app.py`): serves until interrupted."""
    _run(python, ROOT / "examples" / "orders" / "app.py", *args)


def test(python: Path, args: list[str]) -> None:
    """Lint, format check, strict type check, the Node packages of the interop tests, then
    the test suite (pytest last, so its summary is the closing line)."""
    _run(python, "-m", "ruff", "check", "src", "tests", "benchmarks", "examples", "tasks.py")
    _run(
        python,
        "-m",
        "ruff",
        "format",
        "--check",
        "src",
        "tests",
        "benchmarks",
        "examples",
        "tasks.py",
    )
    _run(python, "-m", "mypy", "--strict", "src", "examples")
    ensure_node_packages()
    _run(python, "-m", "pytest", *args)


JOBS = {"demo": demo, "example": example, "test": test}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in JOBS:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(JOBS)}}} [args...]")
    job, args = JOBS[sys.argv[1]], sys.argv[2:]
    job(ensure_environment(), args)


if __name__ == "__main__":
    main()
