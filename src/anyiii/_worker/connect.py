"""`anyiii.connect()`: a worker whose lifetime is one `async with` block.

The block owns one task group. In it, a small supervisor opens a connection, serves it
until it ends, and (unless `reconnect=False`) opens the next one with exponential backoff,
replaying the worker's registry each time. Leaving the block drains running handlers for a
bounded time, cancels what is left, closes the connection within a bounded, shielded
timeout, and only then returns: no task outlives the block.
"""

from __future__ import annotations

import os
import platform
import random
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio
import anyio.lowlevel
import httpx

from .._concurrency import single_errors
from .._errors import ConnectError, ConnectionClosed
from .._protocol.registry import WorkerInfo
from .._transport import Transport, open_httpx_websocket, open_websocket
from .._version import __version__
from .state import ConnectionState
from .telemetry import telemetry_from_option
from .worker import Worker, WorkerLimits

__all__ = ["DEFAULT_URL", "ReconnectConfig", "TransportOpener", "connect"]

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
    close_timeout: float = 5.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    max_message_size: int = 64 * 2**20,
    otel: Any = None,
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

    `otel` turns on OpenTelemetry spans and trace propagation (the official SDK's option
    shape: `True` or `{"enabled": True, "service_name": ...}`; a no-op without
    `opentelemetry-api`). Without it, calls made inside a handler still carry the inbound
    W3C trace context on.

    Entering and leaving are both checkpoints; leaving takes at most about
    `drain_timeout + close_timeout` seconds.
    """
    chosen_url = url or _env("III_URL") or DEFAULT_URL
    if not chosen_url.startswith(("ws://", "wss://")):
        raise ValueError(f"the engine URL must start with ws:// or wss://, not {chosen_url!r}")
    if namespace is not None and not namespace.strip():
        raise ValueError("namespace must not be blank")
    chosen_namespace = namespace or _env("III_NAMESPACE")
    policy = ReconnectConfig() if reconnect is True else reconnect or None
    worker = Worker(
        info=_worker_info(worker_name, chosen_namespace, description),
        namespace=chosen_namespace,
        limits=limits or WorkerLimits(),
        telemetry=telemetry_from_option(otel),
    )
    handshake = _headers(headers)
    opener: TransportOpener
    if callable(transport):
        opener = transport
    elif transport == "httpx" or http_client is not None:

        def opener() -> AbstractAsyncContextManager[Transport]:
            return open_httpx_websocket(
                chosen_url,
                http_client=http_client,
                headers=handshake,
                max_message_size=max_message_size,
                open_timeout=open_timeout,
                close_timeout=close_timeout,
            )

    else:

        def opener() -> AbstractAsyncContextManager[Transport]:
            return open_websocket(
                chosen_url,
                headers=handshake,
                max_message_size=max_message_size,
                open_timeout=open_timeout,
                close_timeout=close_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
            )

    first_open = anyio.Event()
    with single_errors():
        async with anyio.create_task_group() as tasks:
            worker._token = anyio.lowlevel.current_token()
            tasks.start_soon(_supervise, worker, opener, policy, first_open, chosen_url)
            try:
                with anyio.fail_after(open_timeout):
                    await first_open.wait()
            except TimeoutError:
                raise ConnectError(
                    f"could not connect to {chosen_url} within {open_timeout} s"
                ) from None
            try:
                yield worker
            finally:
                with anyio.CancelScope(shield=True):
                    await _shut_down(worker, drain_timeout, close_timeout)
                tasks.cancel_scope.cancel()


async def _shut_down(worker: Worker, drain_timeout: float, close_timeout: float) -> None:
    """Drain, cancel what is left, close: each step bounded in time."""
    await worker._drain(drain_timeout)
    link = worker._link
    if link is not None:
        with anyio.move_on_after(close_timeout):
            await link.transport.aclose(1000, "worker shutting down")
    if worker.connection_state is not ConnectionState.FAILED:
        worker._set_state(ConnectionState.DISCONNECTED)
    worker._finish(None)


async def _supervise(
    worker: Worker,
    opener: TransportOpener,
    policy: ReconnectConfig | None,
    first_open: anyio.Event,
    url: str,
) -> None:
    """Open connections one after another until the worker stops or gives up."""
    attempt = 0

    def opened() -> None:
        nonlocal attempt
        attempt = 0
        worker._set_state(ConnectionState.CONNECTED)
        first_open.set()

    while True:
        initial = worker.statistics().connections == 0
        worker._set_state(ConnectionState.CONNECTING if initial else ConnectionState.RECONNECTING)
        error: ConnectError | ConnectionClosed
        try:
            with single_errors():
                async with opener() as transport:
                    await worker._run_connection(transport, opened)
            error = ConnectionClosed(1000, "the engine closed the connection")
        except (ConnectError, ConnectionClosed) as exc:
            error = exc
        if worker._stopping:
            return
        fatal = worker._failure
        retries_left = policy is not None and (
            policy.max_retries < 0 or attempt < policy.max_retries
        )
        if fatal is not None or not retries_left:
            worker._set_state(ConnectionState.FAILED)
            failure = fatal or error
            worker._finish(failure)
            raise failure
        assert policy is not None
        delay = policy.delay(attempt)
        attempt += 1
        worker._set_state(ConnectionState.RECONNECTING)
        await anyio.sleep(delay)
