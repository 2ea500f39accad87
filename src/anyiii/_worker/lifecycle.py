"""`anyiii.connect()`: a worker whose lifetime is one `async with` block.

The block owns one task group. In it, a small supervisor opens a connection, serves it
until it ends, and (unless `reconnect=False`) opens the next one with exponential backoff,
replaying the worker's registry each time. Leaving the block drains running handlers for a
bounded time, cancels what is left, closes the connection and releases its trigger
bindings, each step within its own bounded, shielded timeout, and only then returns: no
task outlives the block.

The supervisor and the shutdown see the worker only through the `Supervised` protocol, the
handful of operations they need.
"""

from __future__ import annotations

import os
import platform
import random
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import anyio
import anyio.lowlevel
import httpx

from .._concurrency import single_errors
from .._errors import ConnectError, ConnectionClosed
from .._protocol.registry import WorkerInfo
from .._transport import Transport, TransportLimits, open_httpx_websocket, open_websocket
from .._version import __version__
from .channel_plane import ChannelPlane
from .context import enter_worker_block, leave_worker_block
from .invocations import WorkerLimits
from .runtime import Runtime, ShutdownTimeouts
from .state import ConnectionState
from .telemetry import telemetry_from_option
from .worker import Servable, Worker

__all__ = ["DEFAULT_URL", "ReconnectConfig", "Supervised", "TransportOpener", "connect"]

DEFAULT_URL: Final = "ws://127.0.0.1:49134"

TransportOpener = Callable[[], AbstractAsyncContextManager[Transport]]


@dataclass(frozen=True, slots=True)
class ReconnectConfig:
    """Backoff between reconnection attempts (the official SDKs' defaults).

    The n-th retry waits `min(initial_delay * multiplier**n, max_delay)` seconds, moved by
    up to ±`jitter` of itself at random; `max_retries` < 0 retries forever.
    """

    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.3
    max_retries: int = -1

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        base = min(self.initial_delay * self.multiplier**attempt, self.max_delay)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


class Supervised(Protocol):
    """What the supervision loop and the shutdown need of a worker, and nothing more."""

    @property
    def stopping(self) -> bool:
        """The worker is leaving: do not reconnect."""

    @property
    def connections(self) -> int:
        """How many connections have opened so far."""

    @property
    def failure(self) -> BaseException | None:
        """A fatal refusal from the engine: do not reconnect, end with it."""

    def set_state(self, state: ConnectionState) -> None:
        """Announce a connection state."""

    async def run_connection(self, transport: Transport, on_open: Callable[[], None]) -> None:
        """Serve one connection until it ends (raises ConnectionClosed)."""

    async def drain(self) -> None:
        """Stop taking work, finish or cancel running handlers (bounded)."""

    async def close_connection(self) -> None:
        """Close the current connection politely (bounded)."""

    def finish(self, failure: BaseException | None) -> None:
        """The worker is done, with `failure` if it failed."""


PING_INTERVAL: Final = 3.0
PING_TIMEOUT: Final = 4.0
"""The keepalive a worker runs by default: a ping every `PING_INTERVAL` seconds, answered
within `PING_TIMEOUT`. An engine that hangs (stopped, not dead: its socket stays open) is
noticed within about 7 s; the connection is then closed (1011), its pending calls fail
with `invocation_stopped` and, with `reconnect`, a new one is opened. A pong waits behind
whatever the engine is sending, so on a slow link that carries very large messages, raise
`ping_timeout` (a 64 MiB message at 10 Mbit/s takes about a minute)."""


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None


def _worker_info(name: str | None, namespace: str | None, description: str | None) -> WorkerInfo:
    return WorkerInfo(
        name=name or _env("III_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}",
        runtime="python",
        version=__version__,
        os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        pid=os.getpid(),
        isolation=_env("III_ISOLATION"),
        namespace=namespace,
        description=description,
        telemetry={"framework": "anyiii", "language": "python"},
    )


def _headers(
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    token = _env("III_TOKEN")
    if token is not None and not any(k.lower() == "authorization" for k, _ in pairs):
        pairs.append(("Authorization", f"Bearer {token}"))
    return pairs


@asynccontextmanager
async def connect(
    url: str | None = None,
    *,
    worker_name: str | None = None,
    namespace: str | None = None,
    description: str | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    transport: Literal["websockets", "httpx"] | TransportOpener = "websockets",
    http_client: httpx.AsyncClient | None = None,
    reconnect: bool | ReconnectConfig = True,
    limits: WorkerLimits | None = None,
    open_timeout: float = 10.0,
    drain_timeout: float = 5.0,
    cancel_timeout: float = 1.0,
    close_timeout: float = 5.0,
    release_timeout: float = 5.0,
    ping_interval: float | None = PING_INTERVAL,
    ping_timeout: float | None = PING_TIMEOUT,
    max_message_size: int = 64 * 2**20,
    otel: Any = None,
    registry: Servable | None = None,
) -> AsyncIterator[Worker]:
    """Connect a worker to an iii engine for the duration of the `async with` block.

    `url` defaults to `$III_URL`, then `ws://127.0.0.1:49134`; `worker_name` to
    `$III_WORKER_NAME`, then `host:pid`; `namespace` to `$III_NAMESPACE`. `headers` go on
    the WebSocket handshake, plus `Authorization: Bearer $III_TOKEN` when that is set.
    `transport="httpx"` (or passing `http_client=`) uses httpx-ws instead of the default
    websockets stack. The block starts once the first connection is open, waiting at most
    `open_timeout` seconds (`ConnectError` otherwise). With `reconnect` (the default) a lost
    connection is replaced with backoff and every registration is replayed;
    `reconnect=False` raises `ConnectionClosed` out of the block instead.

    `ping_interval` / `ping_timeout` (3 s / 4 s; None turns either off) are the keepalive
    that notices a hung engine within about 7 s (see `PING_INTERVAL`).

    `otel` turns on OpenTelemetry spans and trace propagation (the official SDK's option
    shape: `True` or `{"enabled": True, "service_name": ...}`; a no-op without
    `opentelemetry-api`). Without it, calls made inside a handler still carry the inbound
    W3C trace context on.

    `registry` (an `anyiii.Registry`) is served by the worker: each of its functions is
    registered now and after every reconnect, as `worker.serve(registry)` does. Inside the
    block, function handles (`await f(x)`) call through this worker.

    Entering and leaving are both checkpoints. Leaving drains running handlers for up to
    `drain_timeout` seconds, cancels the rest and gives them `cancel_timeout` seconds to
    answer `invocation_cancelled`, closes the WebSocket within `close_timeout`, and tells
    trigger handlers to drop their bindings within `release_timeout`: at most
    `drain_timeout + cancel_timeout + close_timeout + release_timeout` seconds in all.
    """
    chosen_url = url or _env("III_URL") or DEFAULT_URL
    if not chosen_url.startswith(("ws://", "wss://")):
        raise ValueError(f"the engine URL must start with ws:// or wss://, not {chosen_url!r}")
    if namespace is not None and not namespace.strip():
        raise ValueError("namespace must not be blank")
    chosen_namespace = namespace or _env("III_NAMESPACE")
    policy = ReconnectConfig() if reconnect is True else reconnect or None
    shutdown = ShutdownTimeouts(
        drain=drain_timeout, cancel=cancel_timeout, close=close_timeout, release=release_timeout
    )
    handshake = _headers(headers)
    channels = ChannelPlane(
        chosen_url,
        headers=tuple(handshake),
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        max_message_size=max_message_size,
    )
    runtime = Runtime(
        info=_worker_info(worker_name, chosen_namespace, description),
        namespace=chosen_namespace,
        limits=limits or WorkerLimits(),
        shutdown=shutdown,
        telemetry=telemetry_from_option(otel),
        channels=channels,
    )
    worker = Worker(runtime)
    link_limits = TransportLimits(max_message_size=max_message_size, close_timeout=close_timeout)
    opener: TransportOpener
    if callable(transport):
        opener = transport
    elif transport == "httpx" or http_client is not None:

        def opener() -> AbstractAsyncContextManager[Transport]:
            return open_httpx_websocket(
                chosen_url,
                http_client=http_client,
                headers=handshake,
                limits=link_limits,
                open_timeout=open_timeout,
            )

    else:

        def opener() -> AbstractAsyncContextManager[Transport]:
            return open_websocket(
                chosen_url,
                headers=handshake,
                limits=link_limits,
                open_timeout=open_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
            )

    first_open = anyio.Event()
    with single_errors():
        async with anyio.create_task_group() as tasks:
            runtime.token = anyio.lowlevel.current_token()
            tasks.start_soon(_supervise, runtime, opener, policy, first_open)
            try:
                with anyio.fail_after(open_timeout):
                    await first_open.wait()
            except TimeoutError:
                raise ConnectError(
                    f"could not connect to {chosen_url} within {open_timeout} s"
                ) from None
            if registry is not None:
                worker.serve(registry)
            block = enter_worker_block(worker)
            try:
                yield worker
            finally:
                leave_worker_block(block)
                with anyio.CancelScope(shield=True):
                    await _shut_down(runtime)
                tasks.cancel_scope.cancel()


async def _shut_down(worker: Supervised) -> None:
    """Drain, cancel what is left, close: each step bounded in time (releasing the
    connection's bindings, also bounded, follows when the supervisor is cancelled)."""
    await worker.drain()
    await worker.close_connection()
    worker.finish(None)


async def _supervise(
    worker: Supervised,
    opener: TransportOpener,
    policy: ReconnectConfig | None,
    first_open: anyio.Event,
) -> None:
    """Open connections one after another until the worker stops or gives up."""
    attempt = 0

    def opened() -> None:
        nonlocal attempt
        attempt = 0
        worker.set_state(ConnectionState.CONNECTED)
        first_open.set()

    while True:
        initial = worker.connections == 0
        worker.set_state(ConnectionState.CONNECTING if initial else ConnectionState.RECONNECTING)
        error: ConnectError | ConnectionClosed
        try:
            with single_errors():
                async with opener() as transport:
                    await worker.run_connection(transport, opened)
            error = ConnectionClosed(1000, "the engine closed the connection")
        except (ConnectError, ConnectionClosed) as exc:
            error = exc
        if worker.stopping:
            return
        fatal = worker.failure
        retries_left = policy is not None and (
            policy.max_retries < 0 or attempt < policy.max_retries
        )
        if fatal is not None or not retries_left:
            worker.set_state(ConnectionState.FAILED)
            failure = fatal or error
            worker.finish(failure)
            raise failure
        assert policy is not None
        delay = policy.delay(attempt)
        attempt += 1
        worker.set_state(ConnectionState.RECONNECTING)
        await anyio.sleep(delay)
