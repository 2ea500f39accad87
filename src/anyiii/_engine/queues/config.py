"""Queue settings: the engine's `queue_configs` and a subscriber's `queue_config`.

Named queues are configured in the queue worker's `config:` block, as the real engine reads
it (`engine/src/workers/queue/config.rs`): `queue_configs: {name: {max_retries, concurrency,
type, message_group_field, backoff_ms, poll_interval_ms}}`, with a `default` queue always
present. `max_retries` there is the total number of delivery attempts (the real engine hands
it to its queue as `max_attempts`).

A `durable:subscriber` (or older `queue`) binding may carry a camelCase `queue_config`
(`subscriber_config.rs`): `type`, `maxRetries` (retries *after* the first attempt, so
attempts = maxRetries + 1), `concurrency`, `backoffDelayMs`. The real engine's built-in
adapter reads `visibilityTimeout`, `delaySeconds` and `backoffType` and then drops them;
so does this one (backoff is always exponential).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_QUEUE",
    "ConfigError",
    "DeliveryPolicy",
    "queue_policies",
    "subscriber_policy",
]

logger = logging.getLogger("anyiii.engine")

DEFAULT_QUEUE: Final = "default"
"""The named queue that exists without configuration."""

_KNOWN_MODULE_KEYS: Final = frozenset({"queue_configs", "adapter"})
_KNOWN_QUEUE_KEYS: Final = frozenset(
    {
        "max_retries",
        "concurrency",
        "type",
        "message_group_field",
        "backoff_ms",
        "poll_interval_ms",
        "max_priority",
        "priority_field",
    }
)


class ConfigError(ValueError):
    """The queue configuration is invalid (the engine refuses to start with it)."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How one queue (or one subscription) delivers its messages.

    `max_attempts` deliveries at most, then the dead-letter queue; a failed attempt `n`
    (1-based) waits `backoff_ms * 2**(n-1)` before the next; at most `concurrency` in
    flight; `fifo`: one in flight per message group, in order (`group_field` names the
    group in a named queue's payloads; a FIFO subscription is one group).
    `poll_interval_ms` is how often a message whose target is not registered is rechecked.
    """

    max_attempts: int = 3
    backoff_ms: int = 1000
    concurrency: int = 10
    fifo: bool = False
    group_field: str | None = None
    poll_interval_ms: int = 100

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return float(self.backoff_ms * 2 ** max(attempts - 1, 0)) / 1000


DEFAULT_POLICY: Final = DeliveryPolicy()


def _int(value: Any, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an integer >= {minimum}, not {value!r}")
    return value


def _queue_policy(name: str, raw: Any) -> DeliveryPolicy:
    where = f"queue {name!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: the configuration must be a mapping")
    unknown = sorted(set(raw) - _KNOWN_QUEUE_KEYS)
    if unknown:
        logger.info("%s: ignoring unknown configuration keys %s", where, ", ".join(unknown))
    kind = raw.get("type", "standard")
    if kind not in ("standard", "fifo"):
        raise ConfigError(f"{where} has invalid type {kind!r}. Must be 'standard' or 'fifo'")
    group_field = raw.get("message_group_field")
    if kind == "fifo" and not isinstance(group_field, str):
        raise ConfigError(f"{where} is of type 'fifo' but 'message_group_field' is not set")
    return DeliveryPolicy(
        max_attempts=_int(
            raw.get("max_retries", DEFAULT_POLICY.max_attempts), "max_retries", where, 0
        ),
        backoff_ms=_int(raw.get("backoff_ms", DEFAULT_POLICY.backoff_ms), "backoff_ms", where, 0),
        concurrency=_int(
            raw.get("concurrency", DEFAULT_POLICY.concurrency), "concurrency", where, 1
        ),
        fifo=kind == "fifo",
        group_field=group_field if kind == "fifo" else None,
        poll_interval_ms=_int(
            raw.get("poll_interval_ms", DEFAULT_POLICY.poll_interval_ms),
            "poll_interval_ms",
            where,
            1,
        ),
    )


def queue_policies(config: Mapping[str, Any] | None) -> dict[str, DeliveryPolicy]:
    """The named queues of a queue worker's `config:` block (`default` always included)."""
    config = config or {}
    unknown = sorted(set(config) - _KNOWN_MODULE_KEYS)
    if unknown:
        logger.info("iii-queue: ignoring unknown configuration keys %s", ", ".join(unknown))
    if "adapter" in config:
        logger.info("iii-queue: the adapter setting is ignored (the embedded engine uses SQLite)")
    raw_queues = config.get("queue_configs") or {}
    if not isinstance(raw_queues, Mapping):
        raise ConfigError("queue_configs must be a mapping of queue names to settings")
    policies = {str(name): _queue_policy(str(name), raw) for name, raw in raw_queues.items()}
    policies.setdefault(DEFAULT_QUEUE, DEFAULT_POLICY)
    return policies


def subscriber_policy(raw: Any) -> DeliveryPolicy:
    """A subscription's policy from its binding's camelCase `queue_config` (lenient, as the
    real engine is: values of the wrong type are ignored)."""
    policy = DEFAULT_POLICY
    if not isinstance(raw, Mapping):
        return policy

    def number(key: str) -> int | None:
        value = raw.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return value if ok else None

    retries = number("maxRetries")
    if retries is not None:
        policy = replace(policy, max_attempts=retries + 1)
    concurrency = number("concurrency")
    if concurrency:
        policy = replace(policy, concurrency=concurrency)
    backoff = number("backoffDelayMs")
    if backoff is not None:
        policy = replace(policy, backoff_ms=backoff)
    if raw.get("type") == "fifo":
        policy = replace(policy, fifo=True)
    return policy
