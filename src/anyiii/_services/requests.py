"""What each service call sends and how its answer is read, with no I/O.

A `ServiceRequest` is the official SDK's trigger request (function id, payload, namespace,
action) plus `read`, which turns the raw answer into the typed result. The async clients
(`clients.py`) and the blocking ones (`blocking.py`) both run these, so the wire shapes of
the services (spec §10.3 to §10.5, §5.1) are written here once. Service functions live in the
engine's `default` namespace, so every request names it: a worker of another namespace
would otherwise look for `state::get` in its own (spec §11).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from .update_ops import Op

__all__ = [
    "Change",
    "ServiceRequest",
    "UpdateResult",
    "convert",
    "enqueue",
    "enqueue_topic",
    "publish",
    "publish_durable",
    "state_delete",
    "state_get",
    "state_list",
    "state_list_groups",
    "state_set",
    "state_update",
    "stream_delete",
    "stream_get",
    "stream_list",
    "stream_list_groups",
    "stream_set",
    "stream_update",
]

T = TypeVar("T")
R = TypeVar("R")

SERVICES_NAMESPACE = "default"
"""Where the engine's service functions are registered (spec §11)."""


def convert(value: Any, kind: type[T] | None) -> T:
    """`value` as `kind` (msgspec rules, lax: strings to numbers and the like are not
    guessed, but Structs, dataclasses and datetimes are built); None returns it as is."""
    if kind is None or value is None:
        return value  # type: ignore[no-any-return]
    return msgspec.convert(value, kind, strict=False)


class Change(msgspec.Struct, Generic[T], frozen=True):
    """What a write replaced and what it stored (`state::set`, `stream::set`)."""

    old_value: T | None = None
    new_value: T | None = None


class UpdateResult(msgspec.Struct, Generic[T], frozen=True):
    """What an update replaced and stored, and the operations that failed (by index, with
    the engine's code and message); the others were applied."""

    old_value: T | None = None
    new_value: T | None = None
    errors: list[dict[str, Any]] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServiceRequest(Generic[R]):
    """One call of a service function and how to read its answer."""

    function_id: str
    payload: Any
    read: Callable[[Any], R]
    action: dict[str, str] | None = None
    namespace: str | None = SERVICES_NAMESPACE
    """None: the worker's own namespace (a queued call of the worker's functions)."""

    def to_trigger_request(self) -> dict[str, Any]:
        """The request in the official SDK's `trigger` shape."""
        request: dict[str, Any] = {"function_id": self.function_id, "payload": self.payload}
        if self.namespace is not None:
            request["namespace"] = self.namespace
        if self.action is not None:
            request["action"] = self.action
        return request


def _reader(kind: type[T] | None) -> Callable[[Any], T]:
    return lambda value: convert(value, kind)


def _change_reader(kind: type[T] | None) -> Callable[[Any], Change[T]]:
    def read(value: Any) -> Change[T]:
        answer = value if isinstance(value, dict) else {}
        return Change(
            convert(answer.get("old_value"), kind), convert(answer.get("new_value"), kind)
        )

    return read


def _update_reader(kind: type[T] | None) -> Callable[[Any], UpdateResult[T]]:
    def read(value: Any) -> UpdateResult[T]:
        answer = value if isinstance(value, dict) else {}
        return UpdateResult(
            convert(answer.get("old_value"), kind),
            convert(answer.get("new_value"), kind),
            list(answer.get("errors") or []),
        )

    return read


def _list_reader(kind: type[T] | None) -> Callable[[Any], list[T]]:
    return lambda value: [convert(item, kind) for item in value or []]


def _ignore(value: Any) -> None:
    return None


# --- state (spec §10.3) ----------------------------------------------------------------------


def state_get(scope: str, key: str, kind: type[T] | None) -> ServiceRequest[T | None]:
    return ServiceRequest("state::get", {"scope": scope, "key": key}, _reader(kind))


def state_set(scope: str, key: str, value: Any, kind: type[T] | None) -> ServiceRequest[Change[T]]:
    payload = {"scope": scope, "key": key, "value": value}
    return ServiceRequest("state::set", payload, _change_reader(kind))


def state_update(
    scope: str, key: str, ops: Sequence[Op], kind: type[T] | None
) -> ServiceRequest[UpdateResult[T]]:
    payload = {"scope": scope, "key": key, "ops": list(ops)}
    return ServiceRequest("state::update", payload, _update_reader(kind))


def state_delete(scope: str, key: str, kind: type[T] | None) -> ServiceRequest[T | None]:
    return ServiceRequest("state::delete", {"scope": scope, "key": key}, _reader(kind))


def state_list(scope: str, kind: type[T] | None) -> ServiceRequest[list[T]]:
    return ServiceRequest("state::list", {"scope": scope}, _list_reader(kind))


def state_list_groups() -> ServiceRequest[list[str]]:
    def read(value: Any) -> list[str]:
        return list(value.get("groups", [])) if isinstance(value, dict) else []

    return ServiceRequest("state::list_groups", {}, read)


# --- streams (spec §10.4) ----------------------------------------------------------------------


def _item(stream: str, group: str, item: str) -> dict[str, Any]:
    return {"stream_name": stream, "group_id": group, "item_id": item}


def stream_get(
    stream: str, group: str, item: str, kind: type[T] | None
) -> ServiceRequest[T | None]:
    return ServiceRequest("stream::get", _item(stream, group, item), _reader(kind))


def stream_set(
    stream: str, group: str, item: str, data: Any, kind: type[T] | None
) -> ServiceRequest[Change[T]]:
    payload = {**_item(stream, group, item), "data": data}
    return ServiceRequest("stream::set", payload, _change_reader(kind))


def stream_update(
    stream: str, group: str, item: str, ops: Sequence[Op], kind: type[T] | None
) -> ServiceRequest[UpdateResult[T]]:
    payload = {**_item(stream, group, item), "ops": list(ops)}
    return ServiceRequest("stream::update", payload, _update_reader(kind))


def stream_delete(
    stream: str, group: str, item: str, kind: type[T] | None
) -> ServiceRequest[T | None]:
    def read(value: Any) -> T | None:
        old = value.get("old_value") if isinstance(value, dict) else None
        return convert(old, kind)

    return ServiceRequest("stream::delete", _item(stream, group, item), read)


def stream_list(stream: str, group: str, kind: type[T] | None) -> ServiceRequest[list[T]]:
    payload = {"stream_name": stream, "group_id": group}
    return ServiceRequest("stream::list", payload, _list_reader(kind))


def stream_list_groups(stream: str) -> ServiceRequest[list[str]]:
    def read(value: Any) -> list[str]:
        if isinstance(value, dict):  # tolerate `{"groups": [...]}` as state answers
            value = value.get("groups", [])
        return [str(group) for group in value or []]

    return ServiceRequest("stream::list_groups", {"stream_name": stream}, read)


# --- pub/sub and queues (spec §10.5, §5.1) -----------------------------------------------------


def publish(topic: str, data: Any) -> ServiceRequest[None]:
    return ServiceRequest("publish", {"topic": topic, "data": data}, _ignore)


def publish_durable(topic: str, data: Any) -> ServiceRequest[None]:
    return ServiceRequest("iii::durable::publish", {"topic": topic, "data": data}, _ignore)


def enqueue_topic(topic: str, data: Any) -> ServiceRequest[None]:
    return ServiceRequest("enqueue", {"topic": topic, "data": data}, _ignore)


def enqueue(queue: str, function_id: str, data: Any) -> ServiceRequest[str]:
    """Hand a call of `function_id` to the named queue; the answer is the receipt id."""

    def read(value: Any) -> str:
        return str(value.get("messageReceiptId")) if isinstance(value, dict) else ""

    action = {"type": "enqueue", "queue": queue}
    return ServiceRequest(function_id, data, read, action=action, namespace=None)
