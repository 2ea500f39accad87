"""The embedded iii engine: `async with anyiii.engine.run() as engine:`.

It speaks the same wire protocol as the real iii engine, so workers written with anyiii or
with the official SDKs connect to it unchanged. See `docs/engine.md` for what it implements
and how it differs from the real engine.
"""

from __future__ import annotations

from ._engine import ConnectionLimits as ConnectionLimits
from ._engine import EmbeddedEngine as EmbeddedEngine
from ._engine import EngineSettings as EngineSettings
from ._engine import FunctionFilter as FunctionFilter
from ._engine import HttpFunctionSettings as HttpFunctionSettings
from ._engine import HttpLimits as HttpLimits
from ._engine import MemoryBudget as MemoryBudget
from ._engine import RbacSettings as RbacSettings
from ._engine import RegistrationLimits as RegistrationLimits
from ._engine import run as run

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
    "run",
]
