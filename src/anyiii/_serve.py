"""`anyiii serve module:registry`: run a worker serving a registry, like `uvicorn module:app`.

The worker connects to `--url` (else `$III_URL`, else the local engine), serves every
function of the registry (again after every reconnect), says so on stdout once the engine
has the functions (so whoever waits for that line can call them), and runs until Ctrl-C or
SIGTERM;
then it drains running invocations within the usual bounds and exits 0.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from typing import Literal

import anyio

from ._functions import Registry
from ._loops import backend_options
from ._worker import connect

__all__ = ["load_registry", "serve_command"]

logger = logging.getLogger("anyiii.serve")


def load_registry(target: str) -> Registry:
    """The `Registry` named by `module:attribute` (the current directory is importable)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected module:registry, not {target!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    value = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(value, Registry):
        raise ValueError(f"{target} is not an anyiii.Registry (it is {type(value).__name__})")
    return value


async def _serve(
    registry: Registry, url: str | None, name: str | None, namespace: str | None
) -> None:
    async with anyio.create_task_group() as tasks:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    tasks.cancel_scope.cancel()
                    return

            tasks.start_soon(stop_on_signal)
            async with connect(url, worker_name=name, namespace=namespace, registry=registry) as w:
                # Ready means callable: a call on this connection is answered only after the
                # engine has handled the registrations sent before it.
                await w.trigger_async(
                    {
                        "function_id": "engine::functions::list",
                        "payload": {"worker": w.name},
                        "namespace": "default",
                    }
                )
                print(
                    f"anyiii serve: {len(registry.functions)} functions of {registry.name!r} "
                    f"as {w.name}",
                    flush=True,
                )
                await w.serve_forever()


def serve_command(
    target: str,
    *,
    url: str | None,
    name: str | None,
    namespace: str | None,
    backend: Literal["asyncio", "trio"],
    loop: str = "default",
) -> int:
    """Run the worker; the process's exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        options = backend_options(backend, loop)
        registry = load_registry(target)
    except (ImportError, ValueError) as exc:
        print(f"anyiii serve: {exc}", file=sys.stderr)
        return 2
    anyio.run(_serve, registry, url, name, namespace, backend=backend, backend_options=options)
    return 0
