"""The options of the blocking facade's `register_worker`, with the official SDK's names
(milliseconds, `reconnection_config`, ...), and their translation to `anyiii.connect()`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ._worker import ReconnectConfig, WorkerLimits

__all__ = ["OPEN_TIMEOUT", "InitOptions", "ReconnectionConfig", "native_reconnect"]

OPEN_TIMEOUT: Final = 30.0
"""How long `register_worker` waits for the first connection (the official SDK's wait)."""


@dataclass
class ReconnectionConfig:
    """Reconnection backoff with the official SDK's field names (milliseconds).

    The same policy as `anyiii.ReconnectConfig`, which the native API takes.
    """

    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0
    jitter_factor: float = 0.3
    max_retries: int = -1

    def to_native(self) -> ReconnectConfig:
        """The equivalent `anyiii.ReconnectConfig`."""
        return ReconnectConfig(
            initial_delay=self.initial_delay_ms / 1000,
            multiplier=self.backoff_multiplier,
            max_delay=self.max_delay_ms / 1000,
            jitter=self.jitter_factor,
            max_retries=self.max_retries,
        )


@dataclass
class InitOptions:
    """Options of `register_worker`, with the official SDK's names and defaults.

    `worker_name` (else `$III_WORKER_NAME`, else `host:pid`), `worker_description`,
    `namespace` (else `$III_NAMESPACE`), `invocation_timeout_ms` (default wait of
    `trigger`), `reconnection_config` (a `ReconnectionConfig`, its dict form, or an
    `anyiii.ReconnectConfig`; `max_retries=0` means no reconnection), `headers` (sent on
    the WebSocket handshake, plus `Authorization: Bearer $III_TOKEN` when set), `otel`
    (OpenTelemetry options; see docs/blocking.md). `enable_metrics_reporting` and
    `telemetry` are accepted for compatibility; anyiii reports no worker metrics.
    `backend` ("asyncio" or "trio") picks the background event loop and `loop="uvloop"`
    runs asyncio on uvloop (anyiii additions; uvloop is the `anyiii[uvloop]` extra);
    `open_timeout`, `drain_timeout`, `cancel_timeout`, `close_timeout`, `release_timeout`
    and `limits` are `anyiii.connect()`'s options of the same names.
    """

    worker_name: str | None = None
    worker_description: str | None = None
    namespace: str | None = None
    enable_metrics_reporting: bool = True
    invocation_timeout_ms: int = 30_000
    reconnection_config: ReconnectionConfig | ReconnectConfig | Mapping[str, Any] | None = None
    otel: Any = None
    headers: dict[str, str] | None = None
    telemetry: Any = None
    backend: Literal["asyncio", "trio"] = "asyncio"
    loop: Literal["default", "uvloop"] = "default"
    open_timeout: float = OPEN_TIMEOUT
    drain_timeout: float = 5.0
    cancel_timeout: float = 1.0
    close_timeout: float = 5.0
    release_timeout: float = 5.0
    limits: WorkerLimits | None = field(default=None)


def native_reconnect(value: Any) -> ReconnectConfig | bool:
    """`reconnection_config` as `anyiii.connect()` takes it (False: do not reconnect)."""
    if value is None:
        return True
    if isinstance(value, ReconnectConfig):
        return value
    if isinstance(value, Mapping):
        value = ReconnectionConfig(**value)
    if isinstance(value, ReconnectionConfig):
        return False if value.max_retries == 0 else value.to_native()
    raise TypeError(f"reconnection_config must be a ReconnectionConfig, not {value!r}")
