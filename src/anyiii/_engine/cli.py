"""`anyiii engine`: run the embedded engine in the foreground until Ctrl-C or SIGTERM.

Each setting comes from, highest first: a command-line flag, the config file (`--config`,
the real iii engine's `config.yaml`, read by `config.py`), the built-in default (the real
engine's ports; data kept in `./data`). `resolve()` makes that choice without I/O, so it is
tested directly; `run_engine_command()` loads, resolves, logs what is skipped, and serves.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import anyio

from .._loops import LOOPS, backend_options
from .config import (
    DEFAULT_DATA_DIR,
    DEFAULT_HTTP_PORT,
    DEFAULT_STREAM_PORT,
    DEFAULT_WORKER_PORT,
    ConfigError,
    EngineConfig,
    Listener,
    load_config,
)
from .configured import configured_services, configured_settings
from .hosting import ServiceFactory
from .running import run
from .settings import EngineSettings

__all__ = [
    "EngineFlags",
    "EngineOptions",
    "add_engine_arguments",
    "resolve",
    "run_engine_command",
]

logger = logging.getLogger("anyiii.engine")

DEFAULT_HOST: Final = "127.0.0.1"
"""Where the CLI binds unless told otherwise: only this machine (the real engine binds
0.0.0.0; an engine that authenticates nobody should not, unless asked)."""


@dataclass(frozen=True, slots=True)
class EngineFlags:
    """What was given on the command line (None: not given)."""

    config: str | None = None
    host: str | None = None
    port: int | None = None
    http_port: int | None = None
    token: str | None = None
    stream_port: int | None = None
    data_dir: str | None = None
    in_memory: bool = False


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """Everything `run()` is called with, and the lines to log about what was left out."""

    host: str
    port: int
    http_port: int | None
    stream_port: int | None
    data_dir: Path | None
    settings: EngineSettings
    services: tuple[ServiceFactory, ...] | None
    notes: tuple[str, ...]


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `anyiii engine`."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="read the real iii engine's config.yaml: its listeners, services, adapters and "
        "${VAR:default} values; what the embedded engine lacks is logged and skipped; "
        "flags given here override the file",
    )
    parser.add_argument(
        "--host", help=f"address to bind (default: the file's, else {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        help=f"worker WebSocket port (default: the file's, else {DEFAULT_WORKER_PORT})",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help=f"REST port of http triggers (default: the file's iii-http port, else "
        f"{DEFAULT_HTTP_PORT}; none when a config file has no iii-http)",
    )
    parser.add_argument(
        "--stream-port",
        type=int,
        metavar="PORT",
        help=f"stream subscriber WebSocket port (default: the file's iii-stream port, else "
        f"{DEFAULT_STREAM_PORT}; none when a config file has no iii-stream)",
    )
    storage = parser.add_mutually_exclusive_group()
    storage.add_argument(
        "--data-dir",
        metavar="DIR",
        help="keep acknowledged data (state, …) in a SQLite database in DIR, so it survives "
        "restarts and crashes (default: where the file's file-based stores are, else "
        f"./{DEFAULT_DATA_DIR})",
    )
    storage.add_argument(
        "--in-memory",
        action="store_true",
        help="keep everything in memory only: nothing survives a restart",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="require `Authorization: Bearer TOKEN` on every worker handshake of the worker "
        "port, else HTTP 401 (default: $III_TOKEN; none: anyone who reaches the port may "
        "register and call)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default: info)",
    )
    parser.add_argument(
        "--backend",
        default="asyncio",
        choices=["asyncio", "trio"],
        help="the engine's own event loop (default: asyncio)",
    )
    parser.add_argument(
        "--loop",
        default="default",
        choices=LOOPS,
        help="with --backend asyncio: 'uvloop' runs it on uvloop (the anyiii[uvloop] extra)",
    )


def resolve(flags: EngineFlags, config: EngineConfig | None) -> EngineOptions:
    """Choose each setting: the flag if given, else the file's, else the default."""
    notes = list(config.skipped) if config is not None else []
    listeners = (config.workers, config.http, config.stream) if config is not None else ()
    rbac = () if config is None else config.rbac
    hosts = [each.host for each in listeners if each is not None and each.host is not None]
    host = flags.host or (hosts[0] if hosts else DEFAULT_HOST)
    if flags.host is None and len(set(hosts)) > 1:
        notes.append(
            f"the file binds listeners on several hosts ({', '.join(sorted(set(hosts)))}); "
            f"the embedded engine binds all of them on {host}"
        )

    def port(flag: int | None, listener: Listener | None, default: int) -> int | None:
        if flag is not None:
            return flag
        if listener is not None:
            return listener.port
        # With a file, a worker it does not list has no listener (the real engine runs
        # only what the file lists); without one, every listener is on its default port.
        return default if config is None else None

    workers, http, stream = listeners or (None, None, None)
    # The worker listener is mandatory, as in the real engine: a file without an
    # `iii-worker-manager` entry still gets one, on the default port.
    worker_port = port(flags.port, workers, DEFAULT_WORKER_PORT)
    worker_port = DEFAULT_WORKER_PORT if worker_port is None else worker_port
    _check_rbac_ports(config, worker_port)
    if flags.host is not None:  # each RBAC listener's own host from the file, unless overridden
        rbac = tuple(replace(each, host=None) for each in rbac)
    return EngineOptions(
        host=host,
        port=worker_port,
        http_port=port(flags.http_port, http, DEFAULT_HTTP_PORT),
        stream_port=port(flags.stream_port, stream, DEFAULT_STREAM_PORT),
        data_dir=_data_dir(flags, config),
        settings=replace(
            EngineSettings() if config is None else configured_settings(config),
            token=flags.token,
            rbac=rbac[0] if rbac else None,
            rbac_listeners=rbac[1:],
        ),
        services=None if config is None else configured_services(config, notes),
        notes=tuple(notes),
    )


def _check_rbac_ports(config: EngineConfig | None, worker_port: int) -> None:
    """Refuse an RBAC listener on the worker port, or two on one port (0: a free one)."""
    if config is None:
        return
    ports = [each.port for each in config.rbac if each.port != 0]
    if worker_port in ports and worker_port != 0:
        raise ConfigError(
            f"{config.source}: the RBAC listener's port {worker_port} is the worker port: the "
            "embedded engine keeps its trusted worker listener, so give the "
            "`iii-worker-manager` entry with `rbac:` a port of its own"
        )
    shared = sorted({port for port in ports if ports.count(port) > 1})
    if shared:
        raise ConfigError(
            f"{config.source}: two RBAC listeners on port {shared[0]}: give each "
            "`iii-worker-manager` entry with `rbac:` a port of its own"
        )


def _data_dir(flags: EngineFlags, config: EngineConfig | None) -> Path | None:
    if flags.in_memory:
        return None
    if flags.data_dir is not None:
        return Path(flags.data_dir)
    if config is not None and config.data_dir is not None:
        return config.data_dir
    if config is not None and config.in_memory:
        return None
    return DEFAULT_DATA_DIR


async def _serve(options: EngineOptions) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with run(
            options.host,
            options.port,
            options.http_port,
            settings=options.settings,
            data_dir=options.data_dir,
            stream_port=options.stream_port,
            services=options.services,
        ) as engine:
            if options.data_dir is None:
                logger.info("keeping data in memory only: nothing survives a restart")
            else:
                logger.info("keeping data in %s", options.data_dir.resolve())
            ports = ", ".join(map(str, engine.rbac_ports))
            plural = "s" if len(engine.rbac_ports) > 1 else ""
            rbac = f"  rbac port{plural} {ports}" if ports else ""
            print(
                f"anyiii engine: workers {engine.url}  http {engine.http_url or 'off'}{rbac}",
                flush=True,
            )
            async for received in signals:
                logger.info("received %s; shutting down", signal.Signals(received).name)
                break


def run_engine_command(args: argparse.Namespace) -> int:
    """Run the engine as the parsed flags say; returns the exit code: 0 after a clean
    Ctrl-C / SIGTERM, 1 when a socket or the data directory cannot be opened, 2 for a
    config file that cannot be used (its message on stderr, no traceback)."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    flags = EngineFlags(
        config=args.config,
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        stream_port=args.stream_port,
        data_dir=args.data_dir,
        in_memory=args.in_memory,
        token=args.token or os.environ.get("III_TOKEN", "").strip() or None,
    )
    try:
        loop_options = backend_options(args.backend, args.loop)
    except ValueError as exc:
        print(f"anyiii engine: error: {exc}", file=sys.stderr)
        return 2
    try:
        options = resolve(flags, load_config(flags.config) if flags.config else None)
        for note in options.notes:
            logger.warning("config: %s", note)
        anyio.run(_serve, options, backend=args.backend, backend_options=loop_options)
    except ConfigError as exc:
        print(f"anyiii engine: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        logger.error("cannot start the engine: %s", exc)
        return 1
    return 0
