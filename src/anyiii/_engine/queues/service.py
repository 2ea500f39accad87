"""The queue service as the engine runs it: durable named queues and topics (spec §5.1,
§10.5), delivered at least once by the engine itself.

Three front-ends feed one store of messages:

* `engine::queue::enqueue`, which the router calls for the `enqueue` action: one message
  for the named queue, to call `function_id` with `data`;
* `iii::durable::publish {topic, data}` (and `enqueue`, its older name): one message per
  function subscribed to the topic by a `durable:subscriber` (or `queue`) binding.

Every accepted message is committed before the call that brought it is answered. The
engine then calls the target with the message's data (a fresh invocation, no metadata, no
`_caller_worker_id`); success deletes the message, an error counts an attempt and retries
after a backoff or moves it to the dead-letter queue (`scheduler.py`). A message whose
target is not registered waits for it without spending attempts. The dead-letter built-ins
are in `dead_letters.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
from msgspec import Raw

from ..._protocol.codes import DEFAULT_NAMESPACE, DESERIALIZATION_ERROR, FUNCTION_NOT_FOUND
from ..._protocol.frames import ErrorBody, decode_value
from ..service import (
    BaseService,
    Commit,
    Effect,
    Invoke,
    OnDone,
    Reply,
    ServiceContext,
    ServiceFunction,
)
from .config import DeliveryPolicy, queue_policies
from .dead_letters import dead_letter_functions
from .model import RESTORE_QUERY, SCHEMA, Deleted, LaneKey, Message, Saved
from .scheduler import Scheduler
from .subscriptions import (
    DURABLE_SUBSCRIBER,
    LEGACY_QUEUE_TRIGGER,
    SubscriberTrigger,
    Subscriptions,
)

__all__ = ["ENQUEUE_FUNCTION", "PUBLISH_FUNCTION", "QueueService"]

logger = logging.getLogger("anyiii.engine")

ENQUEUE_FUNCTION: Final = "engine::queue::enqueue"
PUBLISH_FUNCTION: Final = "iii::durable::publish"
LEGACY_PUBLISH_FUNCTION: Final = "enqueue"
"""The name `iii::durable::publish` had before the real engine renamed it."""

QUEUE_NOT_FOUND: Final = "queue_not_found"
INVALID_MESSAGE: Final = "invalid_message"
TOPIC_NOT_SET: Final = "topic_not_set"


class _EnqueueRequest(msgspec.Struct):
    queue: str
    function_id: str
    data: Raw = Raw(b"null")
    messageReceiptId: str | None = None
    namespace: str | None = None


class _PublishRequest(msgspec.Struct):
    topic: str
    data: Raw


class QueueService(BaseService):
    """Durable queues (see the module docstring). `config` is the queue worker's `config:`
    block of the real engine (`queue_configs`); it raises `ConfigError` when invalid."""

    name = "iii-queue"
    schema = (SCHEMA,)
    restore_queries = (RESTORE_QUERY,)

    def __init__(self, context: ServiceContext, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._context = context
        self.policies: dict[str, DeliveryPolicy] = queue_policies(config)
        self.subscriptions = Subscriptions(on_subscribed=self._wake)
        self.scheduler = Scheduler(
            clock=context.now,
            policy_for=self._policy_for,
            lane_open=self._lane_open,
            target_ready=context.has_function,
        )
        self._seq = 0
        subscriber = "Durable topic subscription: called with every message published to it"
        self.trigger_types[DURABLE_SUBSCRIBER] = SubscriberTrigger(self.subscriptions, subscriber)
        self.trigger_types[LEGACY_QUEUE_TRIGGER] = SubscriberTrigger(
            self.subscriptions, f"Older name of {DURABLE_SUBSCRIBER}"
        )
        functions = {
            ENQUEUE_FUNCTION: ("Accept a message for a named queue", self._enqueue),
            PUBLISH_FUNCTION: ("Publish a message to a durable topic", self._publish),
            LEGACY_PUBLISH_FUNCTION: (f"Older name of {PUBLISH_FUNCTION}", self._publish),
            **dead_letter_functions(self),
        }
        for function_id, (description, run) in functions.items():
            self.functions[function_id] = ServiceFunction(description, run)

    # --- storage and timers ----------------------------------------------------------------------

    def restore(self, rows: Sequence[Sequence[tuple[Any, ...]]]) -> None:
        (message_rows,) = rows
        for row in message_rows:
            message = Message.from_row(row)
            self._seq = max(self._seq, message.seq)
            self.scheduler.add(message)
        self._wake()

    def next_deadline(self) -> float | None:
        return self.scheduler.next_deadline()

    def tick(self) -> Sequence[Effect]:
        return self.deliveries()

    # --- the lanes -------------------------------------------------------------------------------

    def kind_of(self, name: str) -> str:
        """Whether a name a caller gives means a named queue or a topic (queues win, as in
        the real engine)."""
        return "queue" if name in self.policies else "topic"

    def _policy_for(self, lane: LaneKey) -> DeliveryPolicy:
        if lane[0] == "queue":
            return self.policies.get(lane[1]) or self.policies["default"]
        return self.subscriptions.policy(lane)

    def _lane_open(self, lane: LaneKey) -> bool:
        return lane[0] == "queue" or self.subscriptions.latest(lane) is not None

    def _wake(self) -> None:
        self.scheduler.wake()

    def new_message(self, **fields: Any) -> Message:
        """A message with the next sequence number and the current time."""
        self._seq += 1
        return Message(
            id=self._context.new_id(),
            seq=self._seq,
            created_ms=self._context.wall_clock_ms(),
            **fields,
        )

    # --- delivering ------------------------------------------------------------------------------

    def deliveries(self, only: LaneKey | None = None) -> list[Effect]:
        """Calls for every message that may be delivered now (of lane `only`, if given)."""
        return [self._deliver(message) for message in self.scheduler.due(only)]

    def _accept(self, message: Message) -> list[Effect]:
        """Take a new message in; the calls that deliver what may go now."""
        return [self._deliver(m) for m in self.scheduler.offer(message)]

    def _deliver(self, message: Message) -> Invoke:
        condition = None
        if message.kind == "topic":
            subscription = self.subscriptions.latest(message.lane)
            condition = subscription.condition_function_id if subscription else None
        return Invoke(
            message.function_id,
            Raw(message.data),
            namespace=message.namespace,
            condition_function_id=condition,
            on_done=self._on_done(message),
        )

    def _on_done(self, message: Message) -> OnDone:
        def done(result: Raw | None, error: ErrorBody | None) -> Sequence[Effect]:
            scheduler = self.scheduler
            if error is None:  # delivered, or a condition said false: consumed either way
                scheduler.succeeded(message)
                return (Commit((Deleted(message.id),)), *self.deliveries(message.lane))
            missing = error.code == FUNCTION_NOT_FOUND
            if missing and not self._context.has_function(message.namespace, message.function_id):
                scheduler.hold(message)
                return self.deliveries(message.lane)
            scheduler.failed(message, f"{error.code}: {error.message}", self._now_ms())
            if message.dead:
                logger.warning(
                    "queue %s: message %s to %s failed %d times; moved to the dead-letter queue",
                    message.name,
                    message.id,
                    message.function_id,
                    message.attempts,
                )
            return (Commit((Saved.of(message),)), *self.deliveries(message.lane))

        return done

    def _now_ms(self) -> int:
        return self._context.wall_clock_ms()

    # --- the front-ends --------------------------------------------------------------------------

    def _enqueue(self, data: Raw) -> Reply:
        try:
            request = msgspec.json.decode(data, type=_EnqueueRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Reply(error=ErrorBody(DESERIALIZATION_ERROR, str(exc)))
        policy = self.policies.get(request.queue)
        if policy is None:
            return Reply(error=ErrorBody(QUEUE_NOT_FOUND, f"Queue '{request.queue}' not found"))
        group = None
        if policy.fifo:
            assert policy.group_field is not None
            value = decode_value(request.data)
            found = value.get(policy.group_field) if isinstance(value, dict) else None
            if found is None:
                why = (
                    f"FIFO queue '{request.queue}' requires a non-null field "
                    f"'{policy.group_field}' in data"
                )
                return Reply(error=ErrorBody(INVALID_MESSAGE, why))
            group = found if isinstance(found, str) else msgspec.json.encode(found).decode()
        message = self.new_message(
            kind="queue",
            name=request.queue,
            namespace=request.namespace or DEFAULT_NAMESPACE,
            function_id=request.function_id,
            data=bytes(request.data),
            group=group,
            receipt=request.messageReceiptId,
        )
        return Reply(changes=(Saved.of(message),), effects=tuple(self._accept(message)))

    def _publish(self, data: Raw) -> Reply:
        try:
            request = msgspec.json.decode(data, type=_PublishRequest)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Reply(error=ErrorBody(DESERIALIZATION_ERROR, str(exc)))
        if not request.topic:
            return Reply(error=ErrorBody(TOPIC_NOT_SET, "Topic is not set"))
        destinations = self.subscriptions.destinations(request.topic)
        if not destinations:
            logger.info("topic %s has no subscribers; the message is dropped", request.topic)
            return Reply()
        saved: list[Saved] = []
        effects: list[Effect] = []
        for namespace, function_id in destinations:
            message = self.new_message(
                kind="topic",
                name=request.topic,
                namespace=namespace,
                function_id=function_id,
                data=bytes(request.data),
            )
            saved.append(Saved.of(message))
            effects += self._accept(message)
        return Reply(changes=tuple(saved), effects=tuple(effects))
