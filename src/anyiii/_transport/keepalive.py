"""`keepalive_running`: a transport's keepalive pings for the length of a block; and
`keep_alive`, the same pinging as a task of its own for a server's connections.

The pinging itself (`PingingTransport._keepalive`) lives with the transport, whose read and
write machinery it uses; this is the structured-concurrency wrapper the clients open a
transport with, apart so that `common.py` stays about the transport itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from anyiii._concurrency import reraise_unwrapped
from anyiii._transport.pinging import PingingTransport
from anyiii._transport.wire import exit_close_code

__all__ = ["keep_alive", "keepalive_running"]


@asynccontextmanager
async def keepalive_running(
    transport: PingingTransport, ping_interval: float | None, ping_timeout: float | None
) -> AsyncIterator[None]:
    """Run `transport`'s keepalive while the block runs; close the transport on the way out.

    The task group is an implementation detail, so an exception from the block comes out
    unwrapped (trio-websocket's policy): the keepalive task never raises, so a group can
    only hold the block's own exception.
    """
    try:
        async with anyio.create_task_group() as tg:
            if ping_interval is not None:
                tg.start_soon(transport._keepalive, ping_interval, ping_timeout)
            exc: BaseException | None = None
            try:
                yield
            except BaseException as caught:
                exc = caught
                raise
            finally:
                tg.cancel_scope.cancel()
                await transport.aclose(*exit_close_code(exc))
                del exc
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        reraise_unwrapped(group.exceptions[0])


async def keep_alive(transport: object, ping_interval: float, ping_timeout: float | None) -> None:
    """Ping `transport` every `ping_interval` s until it closes, failing it (1011) when a
    pong takes longer than `ping_timeout` s. For a server that holds connections from
    peers that may vanish without closing; a transport without pings (in memory) is left
    alone and this returns at once."""
    if isinstance(transport, PingingTransport):
        await transport._keepalive(ping_interval, ping_timeout)
