"""`EngineSettings`: the embedded engine's tunables, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from .http import HttpLimits
from .http_targets import HttpFunctionSettings
from .rbac import RbacSettings

__all__ = ["EngineSettings"]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Tunables of the embedded engine; the defaults follow the official engine.

    `max_message_size` caps one WebSocket message (close 1009 beyond it);
    `max_queue_bytes` is how much may wait for one slow worker before it is disconnected;
    `namespace_grace` is how long registrations wait for `engine::workers::register`;
    `shutdown_timeout` bounds how long stopping may take. `http_middleware` lists the
    function ids of the engine-wide `http` middleware, called in this order before every
    route's own (the real engine's `iii-http` `middleware`; see docs/http.md);
    `http_functions` is the policy of HTTP-invoked functions (the real engine's: HTTPS
    only, no private addresses). `token`, when set, is the shared token every worker
    handshake on the main listener must carry as `Authorization: Bearer <token>` (HTTP 401
    otherwise); `rbac` adds an RBAC-gated worker listener (see docs/security.md).
    """

    max_message_size: int = 64 * 2**20
    max_queue_bytes: int = 64 * 2**20
    handshake_timeout: float = 10.0
    namespace_grace: float = 5.0
    shutdown_timeout: float = 5.0
    http: HttpLimits = field(default_factory=HttpLimits)
    http_middleware: tuple[str, ...] = ()
    http_functions: HttpFunctionSettings = field(default_factory=HttpFunctionSettings)
    token: str | None = None
    rbac: RbacSettings | None = None

    def __post_init__(self) -> None:
        ids = self.http_middleware
        if not isinstance(ids, tuple | list) or not all(isinstance(i, str) and i for i in ids):
            raise ValueError(f"http_middleware must be function ids (strings), not {ids!r}")
        object.__setattr__(self, "http_middleware", tuple(ids))
