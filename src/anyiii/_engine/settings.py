"""`EngineSettings`: the embedded engine's tunables, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._transport.accepting import ConnectionLimits
from .http import HttpLimits
from .http_targets import HttpFunctionSettings
from .rbac import RbacSettings
from .registration_limits import RegistrationLimits

__all__ = ["EngineSettings", "MemoryBudget"]


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """Engine-wide bounds on memory that many connections could otherwise multiply.

    `unfinished_messages`: bytes of WebSocket messages still arriving (a frame or the
    fragments of a message not yet complete) that all connections of the engine's
    WebSocket listeners together may hold, default 256 MiB: four messages at the 64 MiB
    cap. `send_queues`: bytes queued for (or being written to) those connections, all
    together, default 512 MiB: eight slow consumers at the 64 MiB `max_queue_bytes`.
    `max_message_size` and `max_queue_bytes` bound one connection; these bound their sum.

    When a connection's growth would pass a budget, the offender is disconnected: of the
    client address holding the most, its connection holding the most (close 1009 for
    unfinished messages, 1008 for send queues, reason "... over the server's budget of N
    bytes"); everyone else keeps what they hold and is served as before. docs/limits.md.
    """

    unfinished_messages: int = 256 * 2**20
    send_queues: int = 512 * 2**20

    def __post_init__(self) -> None:
        for name in ("unfinished_messages", "send_queues"):
            size = getattr(self, name)
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ValueError(f"{name} must be a positive int, not {size!r}")


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
    only, no private addresses). `registrations` bounds what one worker may register and
    how big a listing's answer may be, and sets how long a departed worker's function ids
    stay reserved for it (anyiii's own; see docs/limits.md and docs/security.md).
    `connections` caps the connections each listener (worker WebSocket, REST, stream
    socket) holds, in all and per client address (docs/limits.md).
    `memory` bounds what all connections together may hold (`MemoryBudget`).
    `ping_interval` / `ping_timeout`: the engine pings each worker socket every
    `ping_interval` s and closes it (1011) when a pong takes longer than `ping_timeout` s,
    so a worker that vanished without closing (a half-open socket, a stopped process) is
    let go within a minute (None turns either off). Live workers answer pings on their
    own (every WebSocket library does), however idle they are.
    `token`, when set, is the shared token every worker handshake on the main listener
    must carry as `Authorization: Bearer <token>` (HTTP 401 otherwise); `rbac` adds an
    RBAC-gated worker listener (see docs/security.md), and `rbac_listeners` any number
    more, each on its own port with its own policy (the real engine serves one per
    `iii-worker-manager` entry with `rbac:`): all are served, `rbac` first
    (`all_rbac_listeners`). `rbac` alone is the older form and still works.
    """

    max_message_size: int = 64 * 2**20
    max_queue_bytes: int = 64 * 2**20
    handshake_timeout: float = 10.0
    namespace_grace: float = 5.0
    shutdown_timeout: float = 5.0
    ping_interval: float | None = 30.0
    ping_timeout: float | None = 30.0
    http: HttpLimits = field(default_factory=HttpLimits)
    http_middleware: tuple[str, ...] = ()
    http_functions: HttpFunctionSettings = field(default_factory=HttpFunctionSettings)
    registrations: RegistrationLimits = field(default_factory=RegistrationLimits)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    memory: MemoryBudget = field(default_factory=MemoryBudget)
    token: str | None = None
    rbac: RbacSettings | None = None
    rbac_listeners: tuple[RbacSettings, ...] = ()

    def __post_init__(self) -> None:
        ids = self.http_middleware
        if not isinstance(ids, tuple | list) or not all(isinstance(i, str) and i for i in ids):
            raise ValueError(f"http_middleware must be function ids (strings), not {ids!r}")
        object.__setattr__(self, "http_middleware", tuple(ids))
        more = self.rbac_listeners
        if not isinstance(more, tuple | list) or not all(isinstance(r, RbacSettings) for r in more):
            raise ValueError(f"rbac_listeners must be RbacSettings, not {more!r}")
        object.__setattr__(self, "rbac_listeners", tuple(more))

    @property
    def all_rbac_listeners(self) -> tuple[RbacSettings, ...]:
        """Every RBAC-gated listener to serve: `rbac` (if set), then `rbac_listeners`."""
        return self.rbac_listeners if self.rbac is None else (self.rbac, *self.rbac_listeners)
