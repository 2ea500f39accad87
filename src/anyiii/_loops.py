"""Which event loop runs a program anyiii starts: asyncio's own, uvloop (on request), or
trio.

uvloop is an optional extra (`pip install anyiii[uvloop]`), never a dependency: asking for
it without it installed is a clear error, not a silent fallback, so a benchmark or a
deployment that believes it runs on uvloop does.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Final, Literal, TypeAlias

__all__ = ["LOOPS", "Backend", "Loop", "backend_options"]

Backend: TypeAlias = Literal["asyncio", "trio"]
Loop: TypeAlias = Literal["default", "uvloop"]
LOOPS: Final = ("default", "uvloop")
"""The choices of `loop=` and of the command lines' `--loop`."""


def backend_options(backend: str, loop: str) -> dict[str, Any]:
    """`anyio.run`'s `backend_options` for `loop` on `backend`; raises ValueError when the
    pair cannot run (uvloop under trio, or uvloop not installed)."""
    if loop == "default":
        return {}
    if loop != "uvloop":
        raise ValueError(f"unknown event loop {loop!r}: choose one of {', '.join(LOOPS)}")
    if backend != "asyncio":
        raise ValueError("uvloop is an asyncio event loop: use it with backend='asyncio'")
    if importlib.util.find_spec("uvloop") is None:
        raise ValueError("uvloop is not installed: pip install 'anyiii[uvloop]'")
    return {"use_uvloop": True}
