"""`anyiii.run(main)`: run a worker program the way a command-line program should end.

`anyio.run` lets Ctrl-C escape as a `KeyboardInterrupt` traceback. A worker script wants
what a shell expects instead: on Ctrl-C the `async with` blocks unwind (handlers drained,
connection closed, within their bounds) and the process exits with status 130 and no
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple, Unpack

import anyio

__all__ = ["run"]

T = TypeVar("T")
Args = TypeVarTuple("Args")

INTERRUPTED_EXIT_CODE = 130
"""What shells report for a program ended by SIGINT (128 + 2)."""


def run(
    main: Callable[[Unpack[Args]], Awaitable[T]],
    *args: *Args,
    backend: str = "asyncio",
) -> T:
    """Run `main(*args)` on `backend` ("asyncio" or "trio") and return its result.

    Ctrl-C cancels `main` (so its `async with` blocks clean up) and then exits the process
    with status 130, printing one short line instead of a traceback.
    """
    try:
        return anyio.run(main, *args, backend=backend)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)
