"""The queue service's inspection and dead-letter built-ins, with the real engine's ids and
shapes (`engine/src/workers/queue/queue.rs`):

* `engine::queue::list_topics {}` → `[{name, broker_type, subscriber_count}]`;
* `engine::queue::topic_stats {topic | queue}` → `{depth, consumer_count, dlq_depth,
  config: null}`;
* `engine::queue::dlq_topics {}` → `[{topic, broker_type, message_count}]`;
* `engine::queue::dlq_messages {topic | queue, offset = 0, limit = 50}` → `[{id, payload,
  error, failed_at (seconds), retries, size_bytes}]`, newest first;
* `iii::queue::redrive {queue}` → `{queue, redriven}` (every dead letter back, attempts
  reset); `iii::queue::redrive_message {queue, message_id}` → `{queue, message_id,
  redriven: 0 | 1}`; `iii::queue::discard_message {queue, message_id}` → the same shape
  (the real engine reports the count under `redriven` there too);
* `iii::queue::purge_dlq {queue}` → `{queue, purged}`: an addition of this engine (the real
  one can only discard dead letters one by one).

A name means the named queue when one is configured with it, otherwise the topic.
Named queues are listed with `broker_type` `function_queue`, topics with `builtin`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import msgspec
from msgspec import Raw

from ..._protocol.codes import DESERIALIZATION_ERROR
from ..._protocol.frames import ErrorBody, decode_value, to_raw
from ..service import Effect, Reply
from .config import DeliveryPolicy
from .model import Deleted, Message, Saved
from .scheduler import Scheduler
from .subscriptions import Subscriptions

__all__ = ["dead_letter_functions"]

TOPIC_REQUIRED: Final = "topic_required"
QUEUE_NOT_SET: Final = "queue_not_set"
MESSAGE_ID_NOT_SET: Final = "message_id_not_set"
DEFAULT_DLQ_LIMIT: Final = 50


class _Name(msgspec.Struct):
    topic: str | None = None
    queue: str | None = None

    @property
    def name(self) -> str:
        return self.topic or self.queue or ""


class _Page(_Name):
    offset: int = 0
    limit: int = DEFAULT_DLQ_LIMIT


class _One(_Name):
    message_id: str = ""


Runner = Callable[[Raw], Reply]


class QueueState(Protocol):
    """What these built-ins need of the queue service."""

    @property
    def policies(self) -> Mapping[str, DeliveryPolicy]:
        """The named queues."""
        ...

    @property
    def subscriptions(self) -> Subscriptions:
        """The live topic subscriptions."""
        ...

    @property
    def scheduler(self) -> Scheduler:
        """Every message, live and dead."""
        ...

    def kind_of(self, name: str) -> str:
        """ "queue" or "topic" for a name a caller gives."""
        ...

    def deliveries(self) -> list[Effect]:
        """Calls for every message that may be delivered now."""
        ...


def dead_letter_functions(service: QueueState) -> dict[str, tuple[str, Runner]]:
    """The built-ins bound to `service`: {function id: (description, runner)}."""

    def of(name: str, *, dead: bool) -> list[Message]:
        kind = service.kind_of(name)
        pool = service.scheduler.dead if dead else service.scheduler.live
        return [m for m in pool.values() if m.kind == kind and m.name == name]

    def list_topics(data: Raw) -> Reply:
        counts = service.subscriptions.counts()
        topics: list[dict[str, Any]] = [
            {"name": t, "broker_type": "builtin", "subscriber_count": n}
            for t, n in sorted(counts.items())
            if t not in service.policies
        ]
        topics += [
            {"name": q, "broker_type": "function_queue", "subscriber_count": p.concurrency}
            for q, p in sorted(service.policies.items())
        ]
        return Reply(to_raw(topics))

    def topic_stats(data: Raw) -> Reply:
        name = _decode(data, _Name).name
        if not name:
            return Reply(error=ErrorBody(TOPIC_REQUIRED, "topic is required"))
        policy = service.policies.get(name)
        consumers = policy.concurrency if policy else service.subscriptions.counts().get(name, 0)
        stats = {
            "depth": len(of(name, dead=False)),
            "consumer_count": consumers,
            "dlq_depth": len(of(name, dead=True)),
            "config": None,
        }
        return Reply(to_raw(stats))

    def dlq_topics(data: Raw) -> Reply:
        topics = set(service.subscriptions.counts())
        topics |= {m.name for m in service.scheduler.dead.values() if m.kind == "topic"}
        out = [
            {"topic": t, "broker_type": "builtin", "message_count": len(of(t, dead=True))}
            for t in sorted(topics - set(service.policies))
        ]
        out += [
            {"topic": q, "broker_type": "function_queue", "message_count": len(of(q, dead=True))}
            for q in sorted(service.policies)
        ]
        return Reply(to_raw(out))

    def dlq_messages(data: Raw) -> Reply:
        page = _decode(data, _Page)
        if not page.name:
            return Reply(error=ErrorBody(TOPIC_REQUIRED, "topic is required"))
        dead = sorted(of(page.name, dead=True), key=lambda m: (m.failed_ms or 0, m.seq))
        dead.reverse()
        start = max(page.offset, 0)
        shown = dead[start : start + max(page.limit, 0)]
        return Reply(to_raw([_dead_letter(m) for m in shown]))

    def redrive(data: Raw) -> Reply:
        name = _decode(data, _Name).name
        if not name:
            return Reply(error=ErrorBody(QUEUE_NOT_SET, "Queue name is required"))
        moved = service.scheduler.redrive(sorted(of(name, dead=True), key=lambda m: m.seq))
        result = to_raw({"queue": name, "redriven": len(moved)})
        return _commit(result, [Saved.of(m) for m in moved], service)

    def one(data: Raw, act: Callable[[list[Message]], list[Message]], saved: bool) -> Reply:
        request = _decode(data, _One)
        if not request.name:
            return Reply(error=ErrorBody(QUEUE_NOT_SET, "Queue name is required"))
        if not request.message_id:
            return Reply(error=ErrorBody(MESSAGE_ID_NOT_SET, "Message ID is required"))
        found = [m for m in of(request.name, dead=True) if m.id == request.message_id]
        done = act(found)
        changes = [Saved.of(m) if saved else Deleted(m.id) for m in done]
        result = {"queue": request.name, "message_id": request.message_id, "redriven": len(done)}
        return _commit(to_raw(result), changes, service)

    def purge(data: Raw) -> Reply:
        name = _decode(data, _Name).name
        if not name:
            return Reply(error=ErrorBody(QUEUE_NOT_SET, "Queue name is required"))
        gone = service.scheduler.discard(of(name, dead=True))
        result = to_raw({"queue": name, "purged": len(gone)})
        return _commit(result, [Deleted(m.id) for m in gone], service)

    functions: dict[str, tuple[str, Runner]] = {
        "engine::queue::list_topics": ("List all queue topics", list_topics),
        "engine::queue::topic_stats": ("Get stats for a queue topic", topic_stats),
        "engine::queue::dlq_topics": ("List DLQ topics with counts", dlq_topics),
        "engine::queue::dlq_messages": ("Browse DLQ messages", dlq_messages),
        "iii::queue::redrive": ("Redrive all DLQ messages back to the main queue", redrive),
        "iii::queue::redrive_message": (
            "Redrive a single DLQ message by ID back to the main queue",
            lambda data: one(data, service.scheduler.redrive, True),
        ),
        "iii::queue::discard_message": (
            "Discard (purge) a single DLQ message by ID",
            lambda data: one(data, service.scheduler.discard, False),
        ),
        "iii::queue::purge_dlq": ("Discard every DLQ message of a queue or topic", purge),
    }
    return {fid: (desc, _guarded(run)) for fid, (desc, run) in functions.items()}


def _decode(data: Raw, shape: type[Any]) -> Any:
    value = decode_value(data)
    return msgspec.convert({} if value is None else value, shape)


def _guarded(run: Runner) -> Runner:
    def guarded(data: Raw) -> Reply:
        try:
            return run(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Reply(error=ErrorBody(DESERIALIZATION_ERROR, str(exc)))

    return guarded


def _commit(result: Raw, changes: list[Any], service: QueueState) -> Reply:
    """Answer once `changes` are durable; redriven messages go out after that."""
    return Reply(result, changes=tuple(changes), effects=tuple(service.deliveries()))


def _dead_letter(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "payload": decode_value(message.data),
        "error": message.error or "unknown",
        "failed_at": (message.failed_ms or 0) // 1000,
        "retries": message.attempts,
        "size_bytes": len(message.data),
    }
