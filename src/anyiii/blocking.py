"""The blocking facade: the official Python SDK's `register_worker` API, over anyiii.

`client = anyiii.register_worker(url, anyiii.InitOptions(worker_name="orders"))` returns a
synchronous client, like `iii.register_worker` does: its methods block the calling thread,
its handlers may be async or plain, and the worker runs in one background thread with its
own event loop (asyncio by default, trio on request). Code written for the official SDK
runs with only its import switched to anyiii.

The background thread runs `anyiii.connect()` and a `BlockingPortal`; every method is a
call through that portal, so it is thread-safe. If the worker stops on its own (the engine
refused it, or the connection ended with reconnection turned off), the failure is kept and
raised by the next call and by `serve_forever()`. `shutdown()` drains running handlers,
closes the connection and joins the thread, each bounded in time; the thread is a daemon
and `shutdown()` also runs at interpreter exit, so a forgotten client never keeps the
process alive.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, Final, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from ._blocking_options import InitOptions as InitOptions
from ._blocking_options import ReconnectionConfig as ReconnectionConfig
from ._blocking_options import native_reconnect
from ._errors import AnyiiiError
from ._loops import backend_options
from ._services import BlockingPubSub as BlockingPubSub
from ._services import BlockingQueues as BlockingQueues
from ._services import BlockingState as BlockingState
from ._services import BlockingStreams as BlockingStreams
from ._worker import (
    DEFAULT_URL,
    ConnectionState,
    FunctionHandle,
    FunctionInfo,
    HttpAuth,
    StreamHandle,
    Trigger,
    TriggerTypeHandle,
    Worker,
    WorkerLimits,
    connect,
)

__all__ = [
    "BlockingPubSub",
    "BlockingQueues",
    "BlockingState",
    "BlockingStreams",
    "BlockingWorker",
    "InitOptions",
    "ReconnectionConfig",
    "Ref",
    "WorkerShutDown",
    "create_stream",
    "register_worker",
]

logger = logging.getLogger("anyiii.blocking")

JOIN_MARGIN: Final = 5.0


class WorkerShutDown(AnyiiiError, RuntimeError):
    """The client was shut down; it cannot be used any more."""


HandleT = TypeVar("HandleT", FunctionHandle, Trigger, TriggerTypeHandle, StreamHandle)


class Ref(Generic[HandleT]):
    """A registration made through the blocking client: a function, a trigger binding, a
    provided trigger type or a stream. `.unregister()` removes it (blocking); every other
    attribute (`id`, `trigger_type`, `function_id`, ...) is the native handle's."""

    def __init__(self, client: BlockingWorker, handle: HandleT) -> None:
        self._client = client
        self.handle: HandleT = handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def unregister(self) -> None:
        """Remove the registration, on this connection and every later one."""
        self._client._call(self.handle.unregister)

    def __repr__(self) -> str:
        return f"Ref({self.handle!r})"


class BlockingWorker:
    """The synchronous client `register_worker` returns (the official SDK's `III`).

    Every method may be called from any thread except the worker's own event loop
    thread (where a blocking call would wait on itself: use `trigger_async` there).
    """

    def __init__(self, address: str, options: InitOptions) -> None:
        self._address = address
        self._options = options
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._worker: Worker | None = None
        self._stop: anyio.Event | None = None
        self._loop_thread: int | None = None
        self._failure: BaseException | None = None
        self._shut_down = False
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, name=f"anyiii-worker-{address}", daemon=True
        )

    # --- the background thread ---------------------------------------------------------

    def _start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._worker is None:
            self._thread.join()
            failure = self._failure or AnyiiiError("the worker did not start")
            raise failure
        atexit.register(self.shutdown)

    def _thread_main(self) -> None:
        try:
            options = self._options
            anyio.run(
                self._serve,
                backend=options.backend,
                backend_options=backend_options(options.backend, options.loop),
            )
        except BaseException as exc:  # kept for the next call; the thread must end quietly
            if self._failure is None:
                self._failure = exc
        finally:
            self._ready.set()
            self._done.set()

    async def _serve(self) -> None:
        options = self._options
        limits = options.limits or WorkerLimits(invocation_timeout_ms=options.invocation_timeout_ms)
        async with anyio.from_thread.BlockingPortal() as portal:
            try:
                async with connect(
                    self._address,
                    worker_name=options.worker_name,
                    namespace=options.namespace,
                    description=options.worker_description,
                    headers=options.headers,
                    reconnect=native_reconnect(options.reconnection_config),
                    limits=limits,
                    open_timeout=options.open_timeout,
                    drain_timeout=options.drain_timeout,
                    cancel_timeout=options.cancel_timeout,
                    close_timeout=options.close_timeout,
                    release_timeout=options.release_timeout,
                    otel=options.otel,
                ) as worker:
                    self._stop = anyio.Event()
                    self._portal = portal
                    self._worker = worker
                    self._loop_thread = threading.get_ident()
                    self._ready.set()
                    await self._stop.wait()
            except Exception as exc:
                self._failure = exc
            finally:
                self._portal = None

    # --- calls into the loop -----------------------------------------------------------

    def _check(self) -> tuple[anyio.from_thread.BlockingPortal, Worker]:
        if self._failure is not None:
            raise self._failure
        portal, worker = self._portal, self._worker
        if self._shut_down or portal is None or worker is None:
            raise WorkerShutDown("the worker was shut down")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "this blocking call would wait on the worker's own event loop, which runs the "
                "caller: inside an async handler use `await client.trigger_async(...)`"
            )
        return portal, worker

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        portal, _ = self._check()
        try:
            return portal.call(functools.partial(function, *args, **kwargs))
        except RuntimeError:
            if self._failure is not None:  # the worker stopped while we called
                raise self._failure from None
            raise

    # --- the official SDK's methods ------------------------------------------------------

    @property
    def worker_id(self) -> str | None:
        """The engine's id for this worker's connection (None until it said so)."""
        return self._worker.worker_id if self._worker is not None else None

    def get_address(self) -> str:
        """The engine address this client connected to."""
        return self._address

    def get_connection_state(self) -> ConnectionState:
        """disconnected, connecting, connected, reconnecting or failed (a `str` enum)."""
        if self._failure is not None:
            return ConnectionState.FAILED
        worker = self._worker
        if worker is None or self._shut_down:
            return ConnectionState.DISCONNECTED
        return worker.connection_state

    def register_function(
        self,
        function_id: str,
        handler: Callable[..., Any] | Mapping[str, Any] | object,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
    ) -> Ref[FunctionHandle]:
        """Serve `function_id` with `handler` (async, or plain: run in a thread). As in the
        official SDK, `handler` may instead be an HTTP invocation config (the official
        `HttpInvocationConfig`, or a mapping with `url`, `method`, `timeout_ms`,
        `headers`, `auth`): then the engine calls that URL (`register_http_function`)."""
        if not callable(handler):
            return self._register_invocation(function_id, handler, description, metadata)
        _, worker = self._check()
        handle = self._call(
            worker.register_function,
            function_id,
            handler,
            description=description,
            metadata=metadata,
            request_format=request_format,
            response_format=response_format,
        )
        return Ref(self, handle)

    def _register_invocation(
        self, function_id: str, config: Any, description: str | None, metadata: Any
    ) -> Ref[FunctionHandle]:
        dump = getattr(config, "model_dump", None)  # the official SDK's pydantic model
        fields = dump() if callable(dump) else config
        if not isinstance(fields, Mapping) or "url" not in fields:
            raise TypeError(
                f"a handler must be callable or an HTTP invocation config with a url: {config!r}"
            )
        return self.register_http_function(
            function_id,
            fields["url"],
            method=fields.get("method") or "POST",
            headers=fields.get("headers"),
            timeout_ms=fields.get("timeout_ms"),
            auth=fields.get("auth"),
            description=description,
            metadata=metadata,
        )

    def register_http_function(
        self,
        function_id: str,
        url: str,
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        timeout_ms: int | None = None,
        auth: HttpAuth | Mapping[str, Any] | None = None,
        description: str | None = None,
        metadata: Any = None,
    ) -> Ref[FunctionHandle]:
        """Register `function_id` as served by `url` (the engine calls it over HTTP): the
        native `Worker.register_http_function` (docs/http-functions.md)."""
        _, worker = self._check()
        handle = self._call(
            worker.register_http_function,
            function_id,
            url,
            method=method,
            headers=headers,
            timeout_ms=timeout_ms,
            auth=auth,
            description=description,
            metadata=metadata,
        )
        return Ref(self, handle)

    def register_trigger(
        self,
        trigger: str | Mapping[str, Any],
        function_id: str | None = None,
        config: Any = None,
        *,
        metadata: Any = None,
    ) -> Ref[Trigger]:
        """Bind a trigger: `register_trigger({"type", "function_id", "config", "metadata"})`
        as in SDK 0.25, or `register_trigger(type, function_id, config)` as in the seed."""
        if isinstance(trigger, Mapping):
            trigger_type = trigger.get("type", trigger.get("trigger_type"))
            function_id = trigger.get("function_id")
            config = trigger.get("config")
            metadata = trigger.get("metadata")
        else:
            trigger_type = trigger
        if not isinstance(trigger_type, str) or not isinstance(function_id, str):
            raise ValueError("a trigger needs a trigger type and a function_id")
        _, worker = self._check()
        bound = self._call(
            worker.register_trigger, trigger_type, function_id, config, metadata=metadata
        )
        return Ref(self, bound)

    def register_trigger_type(
        self,
        trigger_type: str | Mapping[str, Any],
        handler: Any,
        *,
        description: str = "",
        trigger_request_format: Any = None,
        call_request_format: Any = None,
    ) -> Ref[TriggerTypeHandle]:
        """Provide a trigger type: `({"id", "description", ...}, handler)` as in SDK 0.25,
        or `(id, handler, description=...)`. See `anyiii.TriggerHandler`."""
        if isinstance(trigger_type, Mapping):
            type_id = trigger_type.get("id")
            description = trigger_type.get("description", description) or ""
            trigger_request_format = trigger_type.get("trigger_request_format")
            call_request_format = trigger_type.get("call_request_format")
        else:
            type_id = trigger_type
        if not isinstance(type_id, str):
            raise ValueError("a trigger type needs an id")
        _, worker = self._check()
        handle = self._call(
            worker.register_trigger_type,
            type_id,
            handler,
            description=description,
            trigger_request_format=trigger_request_format,
            call_request_format=call_request_format,
        )
        return Ref(self, handle)

    def unregister_trigger_type(self, trigger_type: str | Mapping[str, Any]) -> None:
        """Stop providing a trigger type (given by id, or as the dict it was registered with)."""
        type_id = trigger_type.get("id") if isinstance(trigger_type, Mapping) else trigger_type
        _, worker = self._check()
        self._call(worker.unregister_trigger_type, type_id)

    def create_stream(self, name: str, impl: Any) -> Ref[StreamHandle]:
        """Serve the storage of stream `name` with `impl`; see `Worker.create_stream`."""
        _, worker = self._check()
        return Ref(self, self._call(worker.create_stream, name, impl))

    def trigger(self, request: Any) -> Any:
        """Call a function and wait for its result (blocks this thread).

        The request shape is `trigger_async`'s. Raises `anyiii.InvocationError` when the
        call fails.
        """
        _, worker = self._check()
        return self._call(worker.trigger_async, request)

    async def trigger_async(self, request: Any) -> Any:
        """`trigger`, awaitable from your own event loop (asyncio or trio), or from a handler
        running on the worker's loop."""
        worker = self._worker
        if threading.get_ident() == self._loop_thread and worker is not None:
            return await worker.trigger_async(request)
        return await anyio.to_thread.run_sync(self.trigger, request)

    def on_functions_available(
        self, callback: Callable[[list[FunctionInfo]], object]
    ) -> Callable[[], None]:
        """Call `callback(functions)` when the engine's function list changes; returns
        `stop()`. See `Worker.on_functions_available`."""
        _, worker = self._check()
        stop: Callable[[], None] = self._call(worker.on_functions_available, callback)
        return lambda: self._call_if_running(stop)

    def on_connection_state_change(
        self, callback: Callable[[ConnectionState], object]
    ) -> Callable[[], None]:
        """Call `callback(state)` now with the current state, then on every change (on the
        worker's thread: keep it quick); returns `stop()`. States compare equal to the
        official SDK's strings."""
        _, worker = self._check()
        stop: Callable[[], None] = self._call(worker.on_connection_state_change, callback)
        try:
            callback(self.get_connection_state())
        except Exception:
            logger.exception("connection state callback %r failed", callback)
        return lambda: self._call_if_running(stop)

    add_connection_state_listener = on_connection_state_change

    def _call_if_running(self, function: Callable[[], None]) -> None:
        if self._portal is not None and not self._shut_down and self._failure is None:
            self._call(function)

    def serve_forever(self) -> None:
        """Block until the client is shut down (returns) or the worker fails (raises).

        Ctrl-C shuts the client down and raises KeyboardInterrupt."""
        try:
            self._done.wait()
        except KeyboardInterrupt:
            self.shutdown()
            raise
        if self._failure is not None:
            raise self._failure

    def shutdown(self) -> None:
        """Drain running handlers, close the connection and stop the thread (bounded);
        idempotent. Afterwards every call raises `WorkerShutDown`."""
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        atexit.unregister(self.shutdown)
        portal, stop = self._portal, self._stop
        if stop is not None and threading.get_ident() == self._loop_thread:
            stop.set()  # called from a handler: the loop stops once this call returns
            return
        if portal is not None and stop is not None:
            with suppress(RuntimeError):  # the loop already ended on its own
                portal.call(stop.set)
        options = self._options
        if threading.get_ident() != self._thread.ident:
            bound = (
                options.drain_timeout
                + options.cancel_timeout
                + options.close_timeout
                + options.release_timeout
            )
            self._thread.join(bound + JOIN_MARGIN)

    async def shutdown_async(self) -> None:
        """`shutdown`, awaitable from your own event loop."""
        await anyio.to_thread.run_sync(self.shutdown)

    def __enter__(self) -> BlockingWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"BlockingWorker({self._address!r}, {self.get_connection_state().value})"


def create_stream(
    client: Worker | BlockingWorker, name: str, impl: Any
) -> StreamHandle | Ref[StreamHandle]:
    """`client.create_stream(name, impl)`, in the official SDK's free-function form
    (`iii.helpers.create_stream(iii, name, stream)`)."""
    return client.create_stream(name, impl)


def register_worker(
    address: str | None = None, options: InitOptions | None = None
) -> BlockingWorker:
    """Connect a worker to the engine and return a blocking client for it.

    `address` defaults to `$III_URL`, then `ws://127.0.0.1:49134`. Blocks until the first
    connection is open (at most `options.open_timeout`, 30 s like the official SDK), then
    returns; unlike the official SDK, an engine that cannot be reached in that time raises
    `anyiii.ConnectError` instead of returning a client that is not connected.
    """
    url = address or os.environ.get("III_URL") or DEFAULT_URL
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"the engine URL must start with ws:// or wss://, not {url!r}")
    client = BlockingWorker(url, options or InitOptions())
    client._start()
    return client
