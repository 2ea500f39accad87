"""The embedded engine: the one module the public face imports the engine layer from.

Layout (see docs/architecture.md): `router.py` the sans-IO routing decisions over the
tables of `tables.py`, with `triggers.py` and `discovery.py` for the trigger rules and
`builtins.py` for the `engine::*` functions (against the narrow `EngineHost` protocol);
`server.py` and `http.py` the sockets; `cli.py` the `anyiii engine` command, reading
the real engine's config file with `config.py`.
"""

from __future__ import annotations

from .._transport.accepting import ConnectionLimits as ConnectionLimits
from .cli import add_engine_arguments as add_engine_arguments
from .cli import run_engine_command as run_engine_command
from .http import HttpLimits as HttpLimits
from .http_targets import HttpFunctionSettings as HttpFunctionSettings
from .rbac import FunctionFilter as FunctionFilter
from .rbac import RbacSettings as RbacSettings
from .registration_limits import RegistrationLimits as RegistrationLimits
from .running import run as run
from .server import EmbeddedEngine as EmbeddedEngine
from .settings import EngineSettings as EngineSettings
from .settings import MemoryBudget as MemoryBudget

__all__ = [
    "ConnectionLimits",
    "EmbeddedEngine",
    "EngineSettings",
    "FunctionFilter",
    "HttpFunctionSettings",
    "HttpLimits",
    "MemoryBudget",
    "RbacSettings",
    "RegistrationLimits",
    "add_engine_arguments",
    "run",
    "run_engine_command",
]
