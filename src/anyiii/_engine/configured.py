"""Which in-engine service implements which worker of the real engine's config file, the
services a parsed config asks for (each bound to its `config:` block), and the engine
settings it gives.

Used by `anyiii engine --config` and by `anyiii.engine.run(config=...)`, so a config runs
the same services with the same settings whichever way the engine is started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Final, Protocol

import msgspec

from .config import EngineConfig
from .config_limits import apply_limits
from .config_names import STATE_WORKER, STREAM_WORKER
from .cron import CronService
from .hosting import ServiceFactory
from .pubsub import PubSubService
from .queues import QueueService
from .service import Service, ServiceContext
from .settings import EngineSettings
from .state_service import StateService
from .stream_service import StreamService

__all__ = [
    "DEFAULT_SERVICES",
    "SERVICE_CLASSES",
    "ConfiguredService",
    "configured_services",
    "configured_settings",
]


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


def configured_settings(config: EngineConfig) -> EngineSettings:
    """The engine settings `config` gives: the worker manager's namespace grace and
    handshake timeout, the REST timeout and middleware, the HTTP-function URL policy, and
    the limits of its `anyiii:` section. Its listeners (RBAC ones included) are not here:
    where to serve is the caller's choice (`anyiii engine --config` reads them too)."""
    settings = EngineSettings()
    if config.namespace_grace is not None:
        settings = replace(settings, namespace_grace=config.namespace_grace)
    if config.handshake_timeout is not None:
        settings = replace(settings, handshake_timeout=config.handshake_timeout)
    if config.http_timeout is not None:
        http = msgspec.structs.replace(settings.http, request_timeout=config.http_timeout)
        settings = replace(settings, http=http)
    if config.http_middleware:
        settings = replace(settings, http_middleware=config.http_middleware)
    if config.http_functions is not None:
        settings = replace(settings, http_functions=config.http_functions)
    return apply_limits(settings, config.limits)
