"""The `durable:subscriber` trigger type and its older name `queue` (spec §10.5).

A binding's config is `{topic, condition_function_id?, queue_config?}`. Each distinct
(namespace, function) subscribed to a topic gets its own copy of every message published
to it; several bindings of one function share that copy (in the real engine they are
replicas competing for it; here one function id has one owner per namespace). When a
function has several bindings on a topic, the latest one's `queue_config` and condition
apply, as the real engine keeps the last subscriber's tuning. A binding without a topic is
accepted and ignored with a warning, as the real engine does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..._protocol.codes import DEFAULT_NAMESPACE
from ..._protocol.frames import ErrorBody, RegisterTrigger, decode_value
from .config import DEFAULT_POLICY, DeliveryPolicy, subscriber_policy
from .model import LaneKey

__all__ = ["DURABLE_SUBSCRIBER", "LEGACY_QUEUE_TRIGGER", "SubscriberTrigger", "Subscriptions"]

logger = logging.getLogger("anyiii.engine")

DURABLE_SUBSCRIBER: Final = "durable:subscriber"
LEGACY_QUEUE_TRIGGER: Final = "queue"
"""The name `durable:subscriber` had before the real engine renamed it."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One binding of a function to a topic."""

    topic: str
    namespace: str
    function_id: str
    policy: DeliveryPolicy
    condition_function_id: str | None

    @property
    def lane(self) -> LaneKey:
        return ("topic", self.topic, self.namespace, self.function_id)


class Subscriptions:
    """Every live subscription, by lane and binding id (in binding order: the latest of a
    lane is its last)."""

    def __init__(self, on_subscribed: Callable[[], None]) -> None:
        self._lanes: dict[LaneKey, dict[str, Subscription]] = {}
        self._lane_of: dict[str, LaneKey] = {}
        self._on_subscribed = on_subscribed

    def add(self, binding_id: str, subscription: Subscription) -> None:
        self.remove(binding_id)
        self._lanes.setdefault(subscription.lane, {})[binding_id] = subscription
        self._lane_of[binding_id] = subscription.lane
        self._on_subscribed()

    def remove(self, binding_id: str) -> None:
        lane = self._lane_of.pop(binding_id, None)
        if lane is None:
            return
        bindings = self._lanes[lane]
        del bindings[binding_id]
        if not bindings:
            del self._lanes[lane]

    def latest(self, lane: LaneKey) -> Subscription | None:
        """The most recent subscription feeding a topic lane, if any is live."""
        bindings = self._lanes.get(lane)
        return next(reversed(bindings.values())) if bindings else None

    def policy(self, lane: LaneKey) -> DeliveryPolicy:
        latest = self.latest(lane)
        return DEFAULT_POLICY if latest is None else latest.policy

    def destinations(self, topic: str) -> list[tuple[str, str]]:
        """The distinct (namespace, function id) subscribed to `topic`."""
        return [(lane[2], lane[3]) for lane in self._lanes if lane[1] == topic]

    def counts(self) -> dict[str, int]:
        """How many bindings each topic has."""
        out: dict[str, int] = {}
        for lane, bindings in self._lanes.items():
            out[lane[1]] = out.get(lane[1], 0) + len(bindings)
        return out


class SubscriberTrigger:
    """The in-engine provider of one of the two names of the subscriber trigger type."""

    def __init__(self, subscriptions: Subscriptions, description: str) -> None:
        self._subscriptions = subscriptions
        self.description = description

    def register(self, binding: RegisterTrigger) -> ErrorBody | None:
        config = decode_value(binding.config)
        topic = config.get("topic") if isinstance(config, dict) else None
        if not isinstance(topic, str) or not topic:
            logger.warning(
                "%s: topic is not set for trigger %s; it receives nothing",
                binding.trigger_type,
                binding.id,
            )
            return None
        assert isinstance(config, dict)
        condition = config.get("condition_function_id")
        subscription = Subscription(
            topic=topic,
            namespace=binding.namespace or DEFAULT_NAMESPACE,
            function_id=binding.function_id,
            policy=subscriber_policy(config.get("queue_config")),
            condition_function_id=condition if isinstance(condition, str) else None,
        )
        self._subscriptions.add(binding.id, subscription)
        return None

    def unregister(self, binding: RegisterTrigger) -> None:
        self._subscriptions.remove(binding.id)
