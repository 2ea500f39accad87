"""Which in-engine service implements which worker of the real engine's config file, and
the services a parsed config asks for, each bound to its `config:` block.

Used by `anyiii engine --config` and by `anyiii.engine.run(config=...)`, so a config runs
the same services whichever way the engine is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, Final, Protocol

from .config import EngineConfig
from .config_names import STATE_WORKER, STREAM_WORKER
from .cron import CronService
from .hosting import ServiceFactory
from .pubsub import PubSubService
from .queues import QueueService
from .service import Service, ServiceContext
from .state_service import StateService
from .stream_service import StreamService

__all__ = ["DEFAULT_SERVICES", "SERVICE_CLASSES", "ConfiguredService", "configured_services"]


class ConfiguredService(Protocol):
    """A service class: made from the router and its worker's `config:` block."""

    def __call__(
        self, context: ServiceContext, config: Mapping[str, Any] | None = None
    ) -> Service: ...


SERVICE_CLASSES: Final[Mapping[str, ConfiguredService]] = {
    STATE_WORKER: StateService,
    "iii-pubsub": PubSubService,
    "iii-cron": CronService,
    STREAM_WORKER: StreamService,
    "iii-queue": QueueService,
}
"""The config file's worker name → the in-engine service class that implements it. The one
place a new service is wired to a config file."""


DEFAULT_SERVICES: Final[tuple[ServiceFactory, ...]] = (
    StateService,
    StreamService,
    PubSubService,
    CronService,
    QueueService,
)
"""The services an engine runs unless told otherwise (or a config lists others)."""


def configured_services(config: EngineConfig, notes: list[str]) -> tuple[ServiceFactory, ...]:
    """The listed services this build has, each bound to its block; the others noted."""
    factories: list[ServiceFactory] = []
    for name, block in config.services.items():
        service_class = SERVICE_CLASSES.get(name)
        if service_class is None:
            notes.append(f"{name}: this build of the embedded engine has no such service yet")
        else:
            factories.append(partial(service_class, config=block))
    return tuple(factories)
