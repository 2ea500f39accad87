"""`PingingTransport`: a transport whose wire has pings, and the keepalive that uses them.

The socket transports (websockets' protocol, httpx-ws) can ping; the in-memory pair cannot
(a test's two ends never vanish half-open). The pinging lives with the transport because
it reads and writes through the transport's own machinery (`_submit`, `_read_turn`,
`_fail`); `keepalive.py` runs it as a task for the length of a block or a connection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import anyio

from anyiii._errors import ConnectionClosed
from anyiii._transport.base import TransportLimits
from anyiii._transport.common import TransportBase, logger

__all__ = ["PingingTransport"]

_KEEPALIVE_BUFFER = 32
"""Messages the keepalive may read ahead for an application that is not receiving."""


class PingingTransport(TransportBase):
    """A `TransportBase` whose `_frame_ping` works: it can keep its link alive."""

    def __init__(
        self,
        *,
        path: str,
        request_headers: Mapping[str, str],
        limits: TransportLimits,
    ) -> None:
        super().__init__(path=path, request_headers=request_headers, limits=limits)
        self._pings: dict[bytes, anyio.Event] = {}
        """Pings sent and not yet answered, by payload."""

    def _on_pong(self, payload: bytes) -> None:
        # Unknown payloads are unsolicited pongs, which RFC 6455 allows as heartbeats.
        waiter = self._pings.pop(payload, None)
        if waiter is not None:
            waiter.set()

    async def _keepalive(self, interval: float, pong_timeout: float | None) -> None:
        """Ping every `interval` s; fail the connection (1011) if a pong takes longer than
        `pong_timeout` s."""
        while True:
            await anyio.sleep(interval)
            if self._close_code is not None:
                return
            payload = os.urandom(4)
            pong = self._pings[payload] = anyio.Event()
            try:
                await self._submit(self._frame_ping(payload))
            except ConnectionClosed:
                return
            if pong_timeout is None:
                continue
            with anyio.move_on_after(pong_timeout):
                await self._await_pong(pong)
            self._pings.pop(payload, None)
            if not pong.is_set():
                if self._close_code is None:
                    logger.info("keepalive ping timed out after %s s; closing", pong_timeout)
                    await self._fail(1011, "keepalive ping timeout")
                return

    async def _await_pong(self, pong: anyio.Event) -> None:
        """Wait for `pong`, reading the link meanwhile if nobody else is.

        Reading is pull-driven, so without this an idle application that is not inside
        `receive` would never see the pong and lose its connection. Messages read here
        wait in `_messages` for the application, but only up to `_KEEPALIVE_BUFFER`:
        beyond that the application has stopped consuming, and (as in websockets, whose
        reader pauses when its queue is full) the pong is left unread and the ping fails.
        """
        while not pong.is_set() and self._close_code is None:
            if len(self._messages) >= _KEEPALIVE_BUFFER:
                await pong.wait()
            else:
                await self._read_turn()  # read once, or wait for whoever is reading
