"""How a service reads its `config:` block from the real engine's `config.yaml`.

The real engine's pub/sub and cron workers take one key, `adapter: {name, config}`, which
picks where messages travel or where job locks live (Redis, say). The embedded engine has
one process and no such backends, so it honours the choice by saying it runs in-process.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any, Final

__all__ = ["ADAPTER_KEY", "adapter_note"]

logger = logging.getLogger("anyiii.engine")

ADAPTER_KEY: Final = "adapter"


def adapter_note(service: str, config: Mapping[str, Any] | None, *, local: Collection[str]) -> None:
    """Log (once, at construction) what becomes of `config`: an adapter other than the
    in-process ones named in `local` runs in-process instead; unknown keys are ignored."""
    if not config:
        return
    adapter = config.get(ADAPTER_KEY)
    name = adapter.get("name") if isinstance(adapter, Mapping) else None
    if name is not None and name not in local:
        logger.info(
            "%s: adapter %r is not available in the embedded engine; it runs in-process",
            service,
            name,
        )
    unknown = sorted(set(config) - {ADAPTER_KEY})
    if unknown:
        logger.info("%s: ignoring unknown config keys %s", service, ", ".join(unknown))
