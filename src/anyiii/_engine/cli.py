"""`anyiii engine`: run the embedded engine in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal

import anyio

from .server import run

__all__ = ["run_engine_command"]

logger = logging.getLogger("anyiii.engine")


async def _serve(host: str, port: int, http_port: int, data_dir: str | None) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with run(host, port, http_port, data_dir=data_dir) as engine:
            print(f"anyiii engine: workers {engine.url}  http {engine.http_url}", flush=True)
            async for received in signals:
                logger.info("received %s; shutting down", signal.Signals(received).name)
                break


def run_engine_command(
    *,
    host: str,
    port: int,
    http_port: int,
    log_level: str,
    backend: str,
    data_dir: str | None = None,
) -> int:
    """Run the engine; returns the exit code (0 after a clean Ctrl-C / SIGTERM)."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        anyio.run(_serve, host, port, http_port, data_dir, backend=backend)
    except OSError as exc:
        logger.error("cannot start the engine: %s", exc)
        return 1
    return 0
