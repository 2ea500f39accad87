"""The one small interface between anyiii's runtimes and a message link to a peer.

The worker runtime and the embedded engine never see WebSocket libraries: they see a
`Transport`, which moves whole messages (UTF-8 JSON bytes) in both directions, and raises
`ConnectionClosed` once the link is over. Three implementations live beside this module
(websockets' Sans-I/O protocol over anyio streams, httpx-ws, and an in-memory pair); all of
them share the contract below, and one test suite checks it against each of them.

Contract, in short:

* `send` frames one text message. Writes are *group-committed*: the first sender writes,
  and messages sent while its write is in flight are queued and written by that same task
  as one joined write. So `send` often returns without awaiting; it only waits when
  it is the writer, or when the queue is above its high-water mark (backpressure).
* The physical write is shielded from the caller's cancellation (a cancelled caller must
  not tear a frame in half for every other user of the link) but bounded by
  `write_timeout`. If the write times out or fails, the transport is *broken*: it is
  closed, and every later call raises `ConnectionClosed`. A write is never silently
  abandoned part-way.
* `send_nowait` queues without awaiting, for the engine's router, which must never block
  on one slow worker; `run_writer` is the task that flushes what it queued.
* `receive` returns whole messages (fragments reassembled, text or binary payloads) and,
  after the link ended for any reason, raises `ConnectionClosed` on every call. A message
  that arrived as binary frames is a `BinaryMessage` (a `bytes` subclass); sending a
  `BinaryMessage` frames it as binary. The protocol's frames are text: only channels'
  data planes (spec §12) use binary.
* `aclose` is idempotent and always returns within about `close_timeout`.

Receiving is pull-driven: there is no background reader task. Control frames (pings,
the peer's close) are read and answered while some task is inside `receive` or `aclose`,
or, on a client, while the keepalive task waits for its pong. The runtimes always have a
reader task in `receive`; a peer's pings to a transport nobody receives from go unanswered,
as with websockets' own reader once its queue is full.

The bounds named here (`write_timeout`, `close_timeout`, the high-water mark,
`max_queue_bytes`, the message cap) are the fields of `TransportLimits`.

For throughput, `send` (when it only queues) and `receive` (when a message is already
buffered) return without a checkpoint; every call that waits for I/O is one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from anyiii._errors import ConnectionClosed
from anyiii._transport.budget import SharedBudget

__all__ = ["BinaryMessage", "SendQueueFull", "Transport", "TransportLimits"]


class BinaryMessage(bytes):
    """A message carried in binary WebSocket frames instead of text ones.

    A subclass of `bytes`, so everything that only wants the payload treats both kinds the
    same and the text path (every protocol frame) pays nothing: a transport frames a
    `BinaryMessage` as binary and hands out what arrived as binary as one. Channel data
    planes (spec §12) tell data (binary) from messages (text) by it.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """The bounds every transport enforces; `TransportLimits()` is the defaults.

    * `max_message_size`: largest message accepted from the peer, in bytes; a bigger one
      fails the connection with close code 1009 (default 64 MiB, the Rust engine's limit,
      spec §1.1).
    * `close_timeout`: seconds `aclose` waits for the peer's half of the closing handshake,
      and for writes still under way, its close frame's included (default 5).
    * `write_timeout`: seconds one physical write may take before the link is declared
      broken (default 30).
    * `queue_high_water`: queued bytes above which `send` waits for the writer, i.e.
      backpressure (default 4 MiB).
    * `max_queue_bytes`: queued bytes above which `send_nowait` gives up on the peer with
      `SendQueueFull` (default 64 MiB).
    * `receive_burst`: messages `receive` (or one `receive_some`) hands out from one read
      before it yields once to the event loop (default 64). Without that yield, a reader
      that got 100 requests in one read handled all of them before its writer sent the
      first answer, so the processes of a call chain took turns instead of overlapping
      (`benchmarks/chain_profile.py` measured each busy about a third of the time). 64
      rather than 16 once the per-message costs fell: fewer, larger writes, 5-7% more
      calls/s (docs/benchmarks.md).

    * `unfinished_budget`: shared by the transports of one server (the default transport
      counts against it; None: no shared bound), the bytes of messages not yet complete
      that all of them together may hold. When a read would pass it, the offender gives
      way (`budget.SharedBudget`: the largest holder of the peer address holding the
      most), closed with 1009.
    * `queue_budget`: likewise for bytes queued or being written to peers (every
      transport counts against it): the offender's queue is dropped and its connection
      ended with 1008; if that is the connection being sent to, the send raises
      `SendQueueFull`.

    Sizes must be positive ints and timeouts positive numbers; anything else raises
    ValueError naming the field.
    """

    max_message_size: int = 64 * 2**20
    close_timeout: float = 5.0
    write_timeout: float = 30.0
    queue_high_water: int = 4 * 2**20
    max_queue_bytes: int = 64 * 2**20
    receive_burst: int = 64
    unfinished_budget: SharedBudget | None = None
    queue_budget: SharedBudget | None = None

    def __post_init__(self) -> None:
        for name in ("max_message_size", "queue_high_water", "max_queue_bytes", "receive_burst"):
            size = getattr(self, name)
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ValueError(f"{name} must be a positive int, not {size!r}")
        # A zero close timeout means "do not wait for the handshake"; a zero write timeout
        # would fail every write, so it is refused. (Written as `not x >= 0` so NaN fails.)
        if not _is_seconds(self.close_timeout) or not self.close_timeout >= 0:
            raise ValueError(f"close_timeout must be seconds >= 0, not {self.close_timeout!r}")
        if not _is_seconds(self.write_timeout) or not self.write_timeout > 0:
            raise ValueError(f"write_timeout must be seconds > 0, not {self.write_timeout!r}")


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class SendQueueFull(ConnectionClosed):
    """`send_nowait` found more than `max_queue_bytes` waiting for a peer that is not reading.

    It is a `ConnectionClosed` because the connection is over for sending (close code 1008,
    policy violation): the peer is a slow consumer, its queued messages are dropped, and
    every later send raises `ConnectionClosed`. The owner then closes the transport with
    `aclose(1008, ...)`: a write already on the wire may finish, so the close frame can still
    tell the peer why (bounded by the close timeout) instead of cutting a frame in half. The
    engine catches it to log and drop the worker as a slow consumer. `queued_bytes` and
    `limit` say how far over it was; it is also raised when the send would pass the
    server's shared queue budget and this connection is the one to give way (`reason`
    says so).
    """

    def __init__(self, queued_bytes: int, limit: int, reason: str | None = None) -> None:
        super().__init__(
            1008, reason or f"send queue full: {queued_bytes} bytes queued, limit {limit}"
        )
        self.queued_bytes = queued_bytes
        self.limit = limit


class Transport(Protocol):
    """A message link to one peer; see the module docstring for the shared contract."""

    async def send(self, message: bytes, *, deadline: float = math.inf) -> None:
        """Send `message` (UTF-8 JSON bytes) as one text message, in call order.

        Raises `ConnectionClosed` if the transport is closed or broken, or if the write this
        call performed failed. A message queued behind another task's write is reported as
        sent; if that write fails later, the failure shows up on the next call. If the send
        queue is above its high-water mark, `send` waits for room, and raises TimeoutError
        if `deadline` (clock seconds) passes first; the message stays queued.
        """
        ...

    def send_nowait(self, message: bytes) -> None:
        """Queue `message` without awaiting; `run_writer` (or the next `send`) writes it.

        Raises `ConnectionClosed` if closed, and `SendQueueFull` (which closes the
        transport) if the queue would grow past `max_queue_bytes`.
        """
        ...

    def offer(self, message: bytes) -> bool:
        """Queue `message` for `run_writer` if the send queue stays at or under its
        high-water mark, and return True; otherwise queue nothing and return False (then
        `send` waits for room).

        `send` without its await, for a sender that waits for something else next (a call
        waits for its result): no coroutine and no flush of its own, and the messages of
        every sender of one loop turn leave in the writer's one write. Raises
        `ConnectionClosed` if the transport is closed or broken.
        """
        ...

    async def run_writer(self) -> None:
        """Write whatever `send_nowait` queues, until the transport is closed or broken."""
        ...

    async def receive(self) -> bytes:
        """Return the payload of the next whole message (text or binary).

        Raises `ConnectionClosed(code, reason)` once the link has ended, on every call.
        """
        ...

    async def receive_some(self) -> list[bytes]:
        """Return the payloads of the messages already received, at least one, in order.

        The same messages `receive` would return one by one, for a reader that handles
        each read's messages in one go (the engine): one await per read instead of one per
        message. It returns at most `receive_burst` messages at a time and yields to the
        event loop between bursts, exactly as `receive` does. Raises `ConnectionClosed`
        like `receive`.
        """
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the link: closing handshake bounded by `close_timeout`, then drop it.

        Idempotent; shielded from the caller's cancellation, and bounded, so it is safe
        in `finally` blocks.
        """
        ...

    @property
    def closed(self) -> bool:
        """True once the link can no longer send: closed by either side, failed or broken."""
        ...

    @property
    def close_code(self) -> int | None:
        """The close code that ended the link (1006 if lost without one); None while open."""
        ...

    @property
    def close_reason(self) -> str | None:
        """The close reason that goes with `close_code`; None while open."""
        ...

    @property
    def path(self) -> str:
        """The request target the client asked for (server side); "/" on a client."""
        ...

    @property
    def remote_address(self) -> str | None:
        """The peer's address as "host:port" ("[v6]:port"), or None when there is none
        (the memory transport) or it is unknown."""
        ...

    @property
    def request_headers(self) -> Mapping[str, str]:
        """The handshake request's headers with lower-cased names (server side); empty on a
        client. Repeated headers are joined with ", "."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
