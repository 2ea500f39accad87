"""The `iii-pubsub` service (spec §10.5): the `publish` function and the `subscribe` trigger.

`publish {topic, data}` answers `null` and calls every `subscribe` binding of that topic
(fan-out; other topics hear nothing) with `data` itself, as the real engine's local adapter
does: no envelope, no `_caller_worker_id`. Each call carries the binding's metadata and
first asks the binding's `condition_function_id` (if any) with the same data; only a
literal `false` skips, an error skips and is logged. Calls are fire and forget: a
subscriber's answer is dropped. Nothing is persisted (a message reaches whoever is bound
now), as with the real engine's in-memory adapters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from msgspec import Raw

from .._protocol.codes import DESERIALIZATION_ERROR
from .._protocol.frames import NULL, ErrorBody, RegisterTrigger
from .deliveries import binding_config, delivery
from .service import BaseService, Reply, ServiceContext, ServiceFunction
from .service_config import adapter_note

__all__ = ["PUBLISH_FUNCTION", "SUBSCRIBE_TRIGGER", "TOPIC_NOT_SET", "PubSubService"]

logger = logging.getLogger("anyiii.engine")

PUBLISH_FUNCTION: Final = "publish"
SUBSCRIBE_TRIGGER: Final = "subscribe"
TOPIC_NOT_SET: Final = "topic_not_set"
"""The real engine's code for a `publish` without a topic."""


class _Publish(msgspec.Struct):
    topic: str
    data: Raw = NULL


class _Config(msgspec.Struct):
    topic: str = ""
    condition_function_id: str | None = None


class PubSubService(BaseService):
    """Topics and their subscribers, in memory (see the module docstring)."""

    name = "iii-pubsub"
    description = "Subscribe to a topic"

    def __init__(
        self, context: ServiceContext | None = None, config: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        adapter_note(self.name, config, local=("local", "memory"))
        self._topics: dict[str, dict[str, tuple[RegisterTrigger, str | None]]] = {}
        self._topic_of: dict[str, str] = {}
        self.trigger_types[SUBSCRIBE_TRIGGER] = self
        self.functions[PUBLISH_FUNCTION] = ServiceFunction("Publishes an event", self.publish)

    # --- the trigger type ------------------------------------------------------------------------

    def register(self, binding: RegisterTrigger) -> ErrorBody | None:
        """Subscribe a binding to its topic; a binding without a topic hears nothing."""
        config = binding_config(binding, _Config, "subscribe")
        if isinstance(config, ErrorBody):
            return config
        self.unregister(binding)
        if not config.topic:
            # The real engine accepts it too, and only warns (nothing can reach it).
            logger.warning("subscribe trigger %s has no topic; it hears nothing", binding.id)
            return None
        self._topics.setdefault(config.topic, {})[binding.id] = (
            binding,
            config.condition_function_id,
        )
        self._topic_of[binding.id] = config.topic
        return None

    def unregister(self, binding: RegisterTrigger) -> None:
        topic = self._topic_of.pop(binding.id, None)
        if topic is None:
            return
        subscribers = self._topics[topic]
        subscribers.pop(binding.id, None)
        if not subscribers:
            del self._topics[topic]

    def subscribers(self, topic: str) -> int:
        """How many bindings listen on `topic`."""
        return len(self._topics.get(topic, ()))

    # --- the function ----------------------------------------------------------------------------

    def publish(self, data: Raw) -> Reply:
        """`publish {topic, data}`: answer `null`, call every subscriber of the topic."""
        try:
            message = msgspec.json.decode(data, type=_Publish)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Reply(error=ErrorBody(DESERIALIZATION_ERROR, str(exc)))
        if not message.topic:
            return Reply(error=ErrorBody(TOPIC_NOT_SET, "Topic is not set"))
        subscribers = self._topics.get(message.topic, {})
        effects = tuple(
            delivery(binding, message.data, condition)
            for binding, condition in subscribers.values()
        )
        return Reply(NULL, effects=effects)
