"""`run`: an embedded engine for the length of an `async with` block: the router and its
services, storage, and the listeners (worker WebSocket, REST, RBAC, stream socket) started
around an `EmbeddedEngine` and stopped, bounded, on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from .._concurrency import single_errors
from .._transport import (
    TransportLimits,
    serve_websockets,
)
from .channels import ChannelHub
from .config import EngineConfig, config_from_mapping, load_config
from .configured import DEFAULT_SERVICES, configured_services, configured_settings
from .hosting import ServiceFactory
from .http import serve_http
from .rbac_gate import start_rbac_listener, token_authorizer
from .router import Router
from .server import EmbeddedEngine
from .settings import EngineSettings
from .storage import MemoryStorage, SqliteStorage, Storage
from .stream_socket import start_stream_socket

__all__ = ["run"]

logger = logging.getLogger("anyiii.engine")


@asynccontextmanager
async def run(
    host: str = "127.0.0.1",
    port: int = 0,
    http_port: int | None = 0,
    *,
    settings: EngineSettings | None = None,
    data_dir: str | Path | None = None,
    stream_port: int | None = None,
    services: Sequence[ServiceFactory] | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
) -> AsyncIterator[EmbeddedEngine]:
    """Run an embedded engine for the duration of the `async with` block.

    Binds the worker WebSocket on `host:port` and the `http` trigger listener on
    `host:http_port` (0 picks free ports; `http_port=None` disables HTTP). `data_dir`
    keeps what the engine acknowledged (state values, stream items) in a SQLite database
    there, so it survives a restart or a crash; None keeps everything in memory.
    `stream_port` serves the stream subscriber socket for browsers there (0 picks a free
    port; None, the default, serves none; the real engine's port is 3112). Leaving the
    block answers every call still in flight with `invocation_stopped`, closes every
    worker socket, and stops, within `settings.shutdown_timeout`. Entering and leaving are
    both checkpoints.

    `services` are the in-engine services to run, each made from the router (None: all of
    them, `DEFAULT_SERVICES`); `anyiii engine --config` passes the ones a config file
    lists, bound to their `config:` blocks.

    `config` is a configuration in the real engine's format, as a `config.yaml` path or as
    the mapping it parses to: the services it lists run, each with its `config:` block
    (named queues and their retries, the stream service's `auth_function`, …), and unless
    `settings` is given, the engine settings it holds apply (namespace grace, handshake
    and REST timeouts, HTTP middleware and URL policy, the limits of its `anyiii:`
    section). Its listeners (RBAC ones included) and data paths are not used here: the
    arguments above say where to serve and what to keep (`anyiii engine --config` reads
    those too). What the embedded engine does not implement is logged and skipped; a
    malformed config raises `ValueError` naming the key.
    """
    if config is not None:
        if services is not None:
            raise ValueError("give either services or config, not both")
        parsed = _parse(config)
        services = _services_of(parsed)
        if settings is None:
            settings = configured_settings(parsed)
    chosen = settings or EngineSettings()
    channels = ChannelHub(anyio.current_time)
    router = Router(
        clock=anyio.current_time,
        namespace_grace=chosen.namespace_grace,
        services=DEFAULT_SERVICES if services is None else services,
        channels=channels,
        http_functions=chosen.http_functions,
        registrations=chosen.registrations,
    )
    hosted = router.services
    storage: Storage = (
        MemoryStorage()
        if data_dir is None
        else await SqliteStorage.open(Path(data_dir), hosted.schema)
    )
    try:
        hosted.restore(await storage.load(hosted.restore_queries))
        engine = EmbeddedEngine(router, chosen, storage, channels)
        limits = TransportLimits(
            max_message_size=chosen.max_message_size,
            max_queue_bytes=chosen.max_queue_bytes,
            close_timeout=chosen.shutdown_timeout,
            unfinished_budget=engine.unfinished,
            queue_budget=engine.send_queues,
        )
        async with _serving(engine, router, host, port, http_port, chosen, limits) as running:
            if stream_port is not None:
                assert engine._tasks is not None
                engine.stream_port = await start_stream_socket(
                    engine._tasks,
                    engine,
                    router.services.service("iii-stream"),
                    host,
                    stream_port,
                    max_message_size=chosen.max_message_size,
                    handshake_timeout=chosen.handshake_timeout,
                    connections=chosen.connections,
                    budgets=(engine.unfinished, engine.send_queues),
                )
            yield running
    finally:
        await storage.aclose()


def _parse(config: str | Path | Mapping[str, Any]) -> EngineConfig:
    return load_config(config) if isinstance(config, str | Path) else config_from_mapping(config)


def _services_of(parsed: EngineConfig) -> tuple[ServiceFactory, ...]:
    notes = list(parsed.skipped)
    factories = configured_services(parsed, notes)
    for note in notes:
        logger.warning("config: %s", note)
    return factories


async def _start_rbac_listeners(
    engine: EmbeddedEngine, chosen: EngineSettings, host: str, limits: TransportLimits
) -> tuple[int, ...]:
    """One RBAC-gated listener per `chosen.all_rbac_listeners` entry, each with its own
    policy (the real engine starts a listener per `iii-worker-manager` entry); their ports."""
    ports = []
    for each in chosen.all_rbac_listeners:
        alone = replace(chosen, rbac=each, rbac_listeners=())  # what one listener reads
        port = await start_rbac_listener(engine, alone, host, limits)
        assert port is not None
        ports.append(port)
    return tuple(ports)


@asynccontextmanager
async def _serving(
    engine: EmbeddedEngine,
    router: Router,
    host: str,
    port: int,
    http_port: int | None,
    chosen: EngineSettings,
    limits: TransportLimits,
) -> AsyncIterator[EmbeddedEngine]:
    with single_errors():
        async with anyio.create_task_group() as tg:
            engine._tasks = tg
            tg.start_soon(engine._writes.run)
            await tg.start(engine._http_calls.run)
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
            engine.host = host
            engine.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            await tg.start(
                lambda task_status: serve_websockets(
                    listener,
                    engine._serve_transport,
                    accept=engine._accepts,
                    authorize=token_authorizer(chosen.token),
                    limits=limits,
                    handshake_timeout=chosen.handshake_timeout,
                    connections=chosen.connections,
                    task_status=task_status,
                )
            )
            if http_port is not None:
                http_listener = await anyio.create_tcp_listener(
                    local_host=host, local_port=http_port
                )
                engine.http_port = http_listener.extra(anyio.abc.SocketAttribute.local_port)
                await tg.start(
                    lambda task_status: serve_http(
                        http_listener,
                        engine,
                        limits=chosen.http,
                        connections=chosen.connections,
                        task_status=task_status,
                    )
                )
            engine.rbac_ports = await _start_rbac_listeners(engine, chosen, host, limits)
            tg.start_soon(engine._run_timers)
            tg.start_soon(engine.channels.sweep_forever)
            logger.info(
                "anyiii engine listening: workers on %s, http on %s",
                engine.url,
                engine.http_url or "(disabled)",
            )
            try:
                yield engine
            finally:
                await engine._stop()
                tg.cancel_scope.cancel()
