"""Every exception anyiii raises, in one tree.

```text
AnyiiiError(Exception)
├── ConnectError            the transport to the engine could not be opened
├── ConnectionClosed        the engine closed the connection, or the link was lost
├── ProtocolError           abstract: somebody broke the wire protocol
│   ├── LocalProtocolError  we (or code driving the core) misused the protocol: a bug
│   └── RemoteProtocolError the peer sent something malformed or out of place
└── InvocationError         a call we made failed; carries the engine's error body
NoWorker(RuntimeError)      a call was made where no worker is there to make it
TimeoutError                builtin, from anyio's fail_after (connect and close timeouts)
```

This module imports nothing but the standard library so that the sans-IO core
(`anyiii._protocol`) can raise these without pulling in any I/O library.
"""

from __future__ import annotations

__all__ = [
    "AnyiiiError",
    "ConnectError",
    "ConnectionClosed",
    "InvocationError",
    "LocalProtocolError",
    "NoWorker",
    "ProtocolError",
    "RemoteProtocolError",
]


class AnyiiiError(Exception):
    """Base class of every error anyiii raises on purpose."""


class ConnectError(AnyiiiError):
    """The WebSocket to the engine could not be opened (refused, bad URL, handshake failed).

    `status` is the HTTP status the server refused the upgrade with (404, say), when that is
    what happened; None otherwise.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(AnyiiiError):
    """The connection to the engine ended while it was in use.

    `code` and `reason` are the WebSocket close code and reason when the peer sent a close
    frame; `code` is 1006 when the link was lost without one.
    """

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"connection closed (code {code}){': ' + reason if reason else ''}")
        self.code = code
        self.reason = reason


class ProtocolError(AnyiiiError):
    """Abstract: the wire protocol was broken. Raise one of the two subclasses instead."""

    def __new__(cls, *args: object, **kwargs: object) -> ProtocolError:
        if cls is ProtocolError:
            raise TypeError("raise LocalProtocolError or RemoteProtocolError, not ProtocolError")
        return super().__new__(cls, *args, **kwargs)


class LocalProtocolError(ProtocolError):
    """Our side asked the protocol core for something the protocol does not allow.

    Examples: completing an invocation that is not in flight, completing one twice, sending
    after the connection was closed or broken. It always indicates a bug in the caller.
    """


class RemoteProtocolError(ProtocolError):
    """The peer sent input that is malformed or not allowed in the current state.

    `frame_type` is the frame's `type` when it could be read; `invocation_id` (and
    `frame_id`, the `id` of registration frames) are set when a malformed frame still named
    what it was about, so whoever waits on it can be told.
    """

    def __init__(
        self,
        message: str,
        *,
        frame_type: str | None = None,
        invocation_id: str | None = None,
        function_id: str | None = None,
        frame_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.frame_type = frame_type
        self.invocation_id = invocation_id
        self.function_id = function_id
        self.frame_id = frame_id


class InvocationError(AnyiiiError):
    """A function call failed: the callee raised, the engine refused, or the call timed out.

    Attributes mirror the wire `ErrorBody` plus the call's identity: `code` (for example
    `invocation_failed`, `function_not_found`, `invocation_stopped`, `TIMEOUT`), `message`,
    `stacktrace` (the callee's traceback text when it sent one), `function_id` and
    `invocation_id` (None for calls that never had one).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        function_id: str | None = None,
        stacktrace: str | None = None,
        invocation_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.function_id = function_id
        self.stacktrace = stacktrace
        self.invocation_id = invocation_id
        self.status: object = None
        """The `anyiii.Status` named by `code`, when a function handle made the call and the
        code is a status name; else None."""
        self.temporary = False
        """Whether trying again may succeed (a temporary status; set by function handles)."""


class NoWorker(RuntimeError):
    """A call was made (a function handle, a service client) where there is no worker to
    call through: outside any `anyiii.connect()`/`Client` block and any handler."""
