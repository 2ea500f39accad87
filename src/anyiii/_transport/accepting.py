"""Accepting TCP connections for the engine's listeners: `serve_listener`.

Two things every listener of the engine (the worker WebSocket, the REST listener, the
stream subscriber socket) needs and anyio's `Listener.serve` does not give:

* **It survives a failed accept.** Running out of file descriptors (EMFILE/ENFILE), of
  buffer space or memory (ENOBUFS/ENOMEM), or a connection reset before it was accepted
  (ECONNABORTED) fails `accept()`. asyncio raises the `OSError`; trio's anyio backend wraps
  it in `anyio.BrokenResourceError`. Both are logged (one warning per run of failures) and
  retried after `ACCEPT_BACKOFF`, because other connections ending frees what was missing;
  only the listener's own closing stops the loop.
* **It caps connections** (`ConnectionLimits`): per listener and per peer address. A
  connection beyond a cap gets a short answer (the caller's `refusal`, an HTTP 503) and is
  closed, so one client, or a flood, cannot take every descriptor of the process.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from anyiii._transport.common import logger

__all__ = ["ACCEPT_BACKOFF", "ConnectionLimits", "http_refusal", "serve_listener"]

ACCEPT_BACKOFF: Final = 0.1
"""Seconds to wait after a failed `accept()` before the next one."""
REFUSAL_TIME: Final = 1.0
"""Seconds a refused connection is kept open to read its answer: closing at once could
reset it under the answer before the client has read it."""
REFUSING_AT_ONCE: Final = 64
"""Refused connections answered at the same time; beyond it, a surplus connection is
closed without an answer (the refusals must not take the descriptors the cap saves)."""

StreamHandler = Callable[[anyio.abc.SocketStream], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections one listener of the engine holds at once.

    `max_connections` (default 10,000) caps the open connections of each listener (the
    worker WebSocket, the REST listener and the stream socket each have their own);
    `max_per_peer` (default 1,000) caps those from one IP address. A connection beyond
    either cap is answered HTTP 503 and closed (the REST listener's answer carries the
    error envelope, code `TOO_MANY_CONNECTIONS`; a WebSocket is refused before the
    upgrade). The process's file descriptor limit (`ulimit -n`) should be above
    `max_connections` times the listeners in use, or `accept()` fails first: that too is
    survived, the listener waits until descriptors free up (docs/limits.md).
    """

    max_connections: int = 10_000
    max_per_peer: int = 1_000

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_peer"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")


def http_refusal(content_type: str, body: bytes) -> bytes:
    """A whole `503 Service Unavailable` HTTP/1.1 response that closes the connection."""
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"content-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _peer(stream: anyio.abc.SocketStream) -> object:
    """The address a connection comes from, without its port (None if unknown)."""
    address = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    return address[0] if isinstance(address, tuple) else address


class _Caps:
    """The open connections of one listener, in all and per peer."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = 0
        self.per_peer: dict[object, int] = {}
        self.refusing = 0

    def admit(self, peer: object) -> bool:
        """Count a new connection in, unless a cap is reached."""
        if self.total >= self.limits.max_connections:
            return False
        if self.per_peer.get(peer, 0) >= self.limits.max_per_peer:
            return False
        self.total += 1
        self.per_peer[peer] = self.per_peer.get(peer, 0) + 1
        return True

    def release(self, peer: object) -> None:
        self.total -= 1
        left = self.per_peer[peer] - 1
        if left:
            self.per_peer[peer] = left
        else:
            del self.per_peer[peer]


async def serve_listener(
    listener: anyio.abc.Listener[Any],
    on_stream: StreamHandler,
    task_group: anyio.abc.TaskGroup,
    *,
    limits: ConnectionLimits,
    refusal: Callable[[], bytes],
    label: str,
) -> None:
    """Accept connections from `listener` and run `on_stream(stream)` for each in
    `task_group`, until cancelled or the listener is closed (see the module docstring).

    `refusal()` is what a connection beyond `limits` is sent before it is closed; `label`
    names the listener in log lines. Each listener of a `MultiListener` gets its own loop,
    all sharing the caps. A listener that is not a socket listener is served by its own
    `serve()`, capped in total only.
    """
    caps = _Caps(limits)

    async def run(stream: anyio.abc.SocketStream, peer: object) -> None:
        try:
            await on_stream(stream)
        finally:
            caps.release(peer)

    async def refuse(stream: anyio.abc.SocketStream) -> None:
        try:
            with anyio.move_on_after(REFUSAL_TIME):
                await stream.send(refusal())
                await stream.send_eof()
                while True:  # until the client hangs up, or the time is up
                    await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            caps.refusing -= 1
            await anyio.aclose_forcefully(stream)

    async def take(stream: anyio.abc.SocketStream) -> None:
        peer = _peer(stream)
        if caps.admit(peer):
            task_group.start_soon(run, stream, peer)
        elif caps.refusing < REFUSING_AT_ONCE:
            logger.debug("%s: refused a connection from %r: too many connections", label, peer)
            caps.refusing += 1
            task_group.start_soon(refuse, stream)
        else:
            await anyio.aclose_forcefully(stream)

    async def loop(each: anyio.abc.SocketListener) -> None:
        failures = 0
        while True:
            try:
                stream = await each.accept()
            except anyio.ClosedResourceError:
                return
            except (OSError, anyio.BrokenResourceError) as exc:
                failures += 1
                if failures == 1:
                    logger.warning(
                        "%s: accept() failed (%s); retrying every %s s",
                        label,
                        _describe(exc),
                        ACCEPT_BACKOFF,
                    )
                await anyio.sleep(ACCEPT_BACKOFF)
                continue
            if failures:
                logger.warning("%s: accepting again after %d failed accept()", label, failures)
                failures = 0
            await take(stream)

    async def serve_one(each: anyio.abc.Listener[Any]) -> None:
        if isinstance(each, anyio.abc.SocketListener):
            await loop(each)
        else:  # another kind of listener: its own serve() accepts
            await each.serve(take, task_group=task_group)

    if isinstance(listener, MultiListener):
        for each in listener.listeners:
            task_group.start_soon(serve_one, each)
        return
    await serve_one(listener)


def _describe(error: BaseException) -> str:
    """The OS error behind a failed accept, named (`EMFILE: Too many open files`)."""
    cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
    if isinstance(cause, OSError) and cause.errno is not None:
        return f"{errno.errorcode.get(cause.errno, cause.errno)}: {cause.strerror}"
    return repr(error)
