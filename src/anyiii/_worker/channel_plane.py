"""Where a worker's channel ends connect, and how they fail (spec §12).

A channel's data plane is a separate WebSocket on the engine's worker port, one per end:
`ws(s)://<engine>/ws/channels/<channel_id>?key=<access_key>&dir=read|write`. A worker's
`ChannelPlane` knows the engine URL it connected to and the handshake headers it used, and
opens such sockets with anyiii's own client transport. Nothing here runs until an end is
first used: ends are lazy.

The URL keeps the engine URL's path prefix and query (SDK 0.25 does the same: a `?token=`
on the engine URL also reaches the channels), then adds the channel's own `key` and `dir`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import anyio

from .._errors import AnyiiiError, ConnectError
from .._protocol.codes import CHANNELS_PATH
from .._protocol.frames import ChannelEndpoint, StreamChannelRef
from .._transport import TransportLimits, connect_websocket
from .._transport.websocket import WebSocketTransport

__all__ = ["ChannelEnd", "ChannelError", "ChannelPlane", "channel_url"]

_NOT_FOUND = 404


class ChannelError(AnyiiiError, anyio.BrokenResourceError):
    """A data channel's end cannot be used: the engine refused it (an unknown channel or a
    wrong key is HTTP 404), closed it with an error, the connection was lost, or an earlier
    operation broke it (a send cancelled part-way).

    It is an `anyio.BrokenResourceError` too, as anyio's own streams raise when broken, so
    code written for anyio streams handles it. `channel_id` names the channel; `code` is
    the WebSocket close code or HTTP status that said so, when there was one.
    """

    def __init__(self, message: str, *, channel_id: str, code: int | None = None) -> None:
        super().__init__(message)
        self.channel_id = channel_id
        self.code = code


def channel_url(engine_url: str, ref: StreamChannelRef) -> str:
    """The data-plane URL of `ref`'s end on the engine at `engine_url` (see the module)."""
    parts = urlsplit(engine_url)
    path = f"{parts.path.rstrip('/')}{CHANNELS_PATH}{quote(ref.channel_id, safe='')}"
    own = urlencode({"key": ref.access_key, "dir": ref.direction})
    query = f"{parts.query}&{own}" if parts.query else own
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


@dataclass(frozen=True, slots=True)
class ChannelPlane:
    """How one worker opens channel ends: its engine URL and handshake headers, and bounds.

    * `open_timeout`: seconds the TCP connection and WebSocket handshake of an end may take.
    * `close_timeout`: seconds a reader's closing waits for the engine to hang up.
    * `max_message_size`: the largest item a reader accepts (64 MiB, the engine's limit).

    A writer waits as long as its reader does not read (that is the backpressure), when it
    sends and when it ends the stream; there is no time limit: bound it with a cancel
    scope of your own.
    """

    engine_url: str
    headers: Sequence[tuple[str, str]] = ()
    open_timeout: float = 10.0
    close_timeout: float = 5.0
    max_message_size: int = 64 * 2**20

    def url_for(self, ref: StreamChannelRef) -> str:
        """The URL `ref`'s end is opened at."""
        return channel_url(self.engine_url, ref)

    def limits_for(self, ref: StreamChannelRef) -> TransportLimits:
        """The bounds of `ref`'s socket.

        A writer waits for its reader, whatever it takes: when it sends, and when it ends
        the stream (its close frame queues behind the unread data). Its user bounds that
        by cancelling, which drops the socket. A reader only writes small frames."""
        limits = TransportLimits(
            max_message_size=self.max_message_size, close_timeout=self.close_timeout
        )
        if ref.direction == "write":
            limits = replace(limits, close_timeout=math.inf, write_timeout=math.inf)
        return limits

    async def connect(self, ref: StreamChannelRef) -> WebSocketTransport:
        """Open `ref`'s end; raises `ChannelError` (with the cause chained) if it cannot be."""
        try:
            return await connect_websocket(
                self.url_for(ref),
                headers=list(self.headers),
                limits=self.limits_for(ref),
                open_timeout=self.open_timeout,
            )
        except ConnectError as exc:
            if exc.status == _NOT_FOUND:
                message = (
                    f"the engine does not know channel {ref.channel_id} with this key "
                    "(HTTP 404): it never existed, was dropped (its creator disconnected, or "
                    "it waited too long for its ends), or both its ends are taken"
                )
            else:
                message = f"could not open the {ref.direction} end of channel {ref.channel_id}"
                message += f": {exc}"
            raise ChannelError(message, channel_id=ref.channel_id, code=exc.status) from exc


class ChannelEnd(ChannelEndpoint):
    """What the reader and the writer share: the ref an end was made from and the plane it
    connects through. `connected` is each end's own."""

    _direction = ""
    """The ref direction this kind of end needs ("read" or "write")."""

    def __init__(self, ref: StreamChannelRef, plane: ChannelPlane) -> None:
        if ref.direction != self._direction:
            raise ValueError(
                f"a {type(self).__name__} needs a {self._direction} ref, not {ref.direction!r}"
            )
        self._ref = ref
        self._plane = plane

    @property
    def ref(self) -> StreamChannelRef:
        """The channel ref this end was made from."""
        return self._ref

    @property
    def channel_id(self) -> str:
        """The id of the channel."""
        return self._ref.channel_id

    @property
    def url(self) -> str:
        """The data-plane URL it connects to (it holds the access key: do not log it)."""
        return self._plane.url_for(self._ref)

    @property
    def connected(self) -> bool:
        """True once it opened (or began to open) its socket."""
        raise NotImplementedError

    def wire_ref(self) -> StreamChannelRef:
        if self.connected:
            role = "reader" if self._direction == "read" else "writer"
            raise TypeError(
                f"the {role} of channel {self.channel_id} was already used here, so its "
                "end is taken: it cannot be handed to another worker"
            )
        return self._ref
