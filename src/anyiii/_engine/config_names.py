"""The real engine's worker names and config keys, and what the embedded engine does with each.

These tables are facts about the real iii engine's `config.yaml` (its worker registry and
the per-worker config structs under `engine/src/workers/*/config.rs`) paired with the
embedded engine's answer; `config.py` reads a file against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "ADAPTER_WORKERS",
    "BUILTIN_ADAPTER",
    "HTTP_FUNCTIONS_WORKER",
    "HTTP_WORKER",
    "IN_PROCESS_ADAPTERS",
    "KV_DEFAULT_FILE",
    "LISTENER_KEYS",
    "LISTENER_WORKERS",
    "NOT_HONOURED",
    "RBAC_LISTENER_KEYS",
    "RENAMED_WORKERS",
    "SERVICE_WORKERS",
    "SILENT_WORKERS",
    "STATE_WORKER",
    "STREAM_WORKER",
    "UNIMPLEMENTED_WORKERS",
    "WORKER_MANAGER",
]

WORKER_MANAGER: Final = "iii-worker-manager"
"""The worker WebSocket listener."""
HTTP_WORKER: Final = "iii-http"
"""The REST listener of `http` triggers."""
STREAM_WORKER: Final = "iii-stream"
HTTP_FUNCTIONS_WORKER: Final = "iii-http-functions"
"""Its `security:` block is the policy of HTTP-invoked functions (`HttpFunctionSettings`);
the embedded engine always has the feature, listed or not."""
"""The stream service, with its subscriber WebSocket port."""
STATE_WORKER: Final = "iii-state"

LISTENER_WORKERS: Final = frozenset({WORKER_MANAGER, HTTP_WORKER, STREAM_WORKER})
"""Workers that open a socket; the embedded engine opens one of each."""

SERVICE_WORKERS: Final = (STATE_WORKER, STREAM_WORKER, "iii-pubsub", "iii-cron", "iii-queue")
"""Workers the embedded engine runs as in-engine services, handed their `config:` block."""

RENAMED_WORKERS: Final[Mapping[str, str]] = {
    "http": HTTP_WORKER,
    "cron": "iii-cron",
    "queue": "iii-queue",
    "state": STATE_WORKER,
    "pubsub": "iii-pubsub",
}
"""The real engine's newer short names (`MIGRATED_BUILTIN_WORKERS`), read as the old ones."""

BUILTIN_ADAPTER: Final[Mapping[str, str]] = {
    STATE_WORKER: "kv",
    STREAM_WORKER: "kv",
    "iii-cron": "kv",
    "iii-pubsub": "local",
    "iii-queue": "builtin",
}
"""Each service's in-process adapter in the real engine (its default); the embedded engine
is that adapter. Others (`redis`, `bridge`, `rabbitmq`, …) are skipped."""
ADAPTER_WORKERS: Final = frozenset(BUILTIN_ADAPTER)
IN_PROCESS_ADAPTERS: Final = frozenset({*BUILTIN_ADAPTER.values(), "memory"})
"""Adapter names that mean "in this process" (`memory` is the real pub/sub's test adapter)."""

KV_DEFAULT_FILE: Final = "kv_store_data.db"
"""The real `kv` store's `file_path` when `file_based` names none (`builtins/kv.rs`)."""

LISTENER_KEYS: Final[Mapping[str, frozenset[str]]] = {
    WORKER_MANAGER: frozenset({"port", "host", "handshake_timeout_ms"}),
    HTTP_WORKER: frozenset({"port", "host", "default_timeout", "middleware"}),
}
"""The keys of the listener workers the embedded engine honours."""

RBAC_LISTENER_KEYS: Final = frozenset(
    {"port", "host", "handshake_timeout_ms", "rbac", "middleware_function_id"}
)
"""The keys of a `iii-worker-manager` entry with `rbac:` (the RBAC listener) it honours."""

NOT_HONOURED: Final[Mapping[str, Mapping[str, str]]] = {
    WORKER_MANAGER: {
        "middleware_function_id": "is not called without an `rbac:` block (the embedded "
        "engine calls it only on its RBAC listener)",
    },
    HTTP_WORKER: {
        "cors": "is not applied: the REST listener sends no CORS headers",
        "concurrency_request_limit": "is not enforced",
    },
}
"""Listener keys of the real engine the embedded engine knows but does not implement."""

SILENT_WORKERS: Final = frozenset({"iii-engine-functions"})
"""Workers the embedded engine always has built in (the `engine::*` functions)."""

UNIMPLEMENTED_WORKERS: Final[Mapping[str, str]] = {
    "iii-observability": "OpenTelemetry export is not implemented (SDK telemetry sent to "
    "/otel is accepted and discarded)",
    "configuration": "the configuration worker (`configuration::*`) is not implemented",
    "iii-exec": "running shell commands at startup is not implemented",
    "iii-bridge": "bridging to another iii instance is not implemented",
    "iii-telemetry": "the embedded engine sends no usage telemetry",
    "iii-sandbox": "sandboxes are not implemented",
}
"""Real-engine workers the embedded engine does not have, and what that means."""
