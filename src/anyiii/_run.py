"""`anyiii.run(main)`: run a worker program the way a command-line program should end.

`anyio.run` lets Ctrl-C escape as a `KeyboardInterrupt`, which Python raises wherever the
program happens to be (even inside a library's parser), followed by a traceback. A worker
script wants what a shell expects instead: Ctrl-C (SIGINT) or SIGTERM *cancels* `main`, so
its `async with` blocks unwind in order (handlers drained, connection closed, within their
bounds), and the process exits with status 130 (SIGINT) or 143 (SIGTERM), no traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, TypeVarTuple

import anyio

from ._loops import backend_options

__all__ = ["run"]

T = TypeVar("T")
Args = TypeVarTuple("Args")

_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""What shells report for a program ended by a signal (128 + its number)."""


async def _until_signalled(
    main: Callable[[*Args], Awaitable[T]], args: tuple[*Args], received: list[int]
) -> T | None:
    result: list[T] = []
    async with anyio.create_task_group() as tasks:

        async def watch() -> None:
            with anyio.open_signal_receiver(*_EXIT_CODES) as signals:
                async for number in signals:
                    received.append(number)
                    tasks.cancel_scope.cancel()
                    return

        async def body() -> None:
            result.append(await main(*args))
            tasks.cancel_scope.cancel()

        tasks.start_soon(watch)
        tasks.start_soon(body)
    return result[0] if result else None


def run(
    main: Callable[[*Args], Awaitable[T]],
    *args: *Args,
    backend: str = "asyncio",
    loop: str = "default",
) -> T:
    """Run `main(*args)` on `backend` ("asyncio" or "trio") and return its result.

    `loop="uvloop"` runs asyncio on uvloop (the `uvloop` extra must be installed; a
    ValueError says so otherwise).

    SIGINT (Ctrl-C) and SIGTERM cancel `main`, let it clean up, then exit the process with
    status 130 or 143 and one short line instead of a traceback.
    """
    received: list[int] = []
    options = backend_options(backend, loop)
    try:
        result: Any = anyio.run(
            _until_signalled, main, args, received, backend=backend, backend_options=options
        )
    except KeyboardInterrupt:  # a second Ctrl-C while cleaning up
        received.append(signal.SIGINT)
    if received:
        print("interrupted", file=sys.stderr)
        sys.exit(_EXIT_CODES.get(signal.Signals(received[0]), 130))
    return result  # type: ignore[no-any-return]
