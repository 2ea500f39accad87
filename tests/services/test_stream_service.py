"""The `stream` service (spec §10.4) without I/O: the store's order and groups, the
functions' answers and announcements, custom streams, the trigger's matching and the
subscriber hub."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from anyiii._engine.service import Forward, Invoke, Notify, Reply
from anyiii._engine.stream_hub import StreamHub, Subscription
from anyiii._engine.stream_service import StreamService
from anyiii._engine.streams import StreamStore
from anyiii._engine.update_ops import UpdateOp
from anyiii._protocol.frames import ErrorBody, RegisterTrigger, to_raw


class FakeContext:
    """The engine as a service sees it, with a fixed wall clock."""

    def __init__(self) -> None:
        self.functions: set[str] = set()

    def now(self) -> float:
        return 0.0

    def wall_clock_ms(self) -> int:
        return 1_700_000_000_000

    def new_id(self) -> str:
        return "id"

    def has_function(self, namespace: str, function_id: str) -> bool:
        return function_id in self.functions


def run(service: StreamService, function_id: str, payload: Any) -> Reply:
    return service.functions[function_id].run(to_raw(payload))


def value(reply: Reply) -> Any:
    assert reply.error is None, reply.error
    assert reply.result is not None
    assert not isinstance(reply.result, Forward)
    return msgspec.json.decode(reply.result)


def bind(service: StreamService, trigger_type: str, config: Any, **extra: Any) -> ErrorBody | None:
    binding = RegisterTrigger(
        id=extra.pop("id", f"b-{config}"),
        trigger_type=trigger_type,
        function_id=extra.pop("function_id", "app::on_change"),
        config=to_raw(config),
        **extra,
    )
    return service.trigger_types[trigger_type].register(binding)


def calls(reply: Reply) -> list[Invoke]:
    return [e for e in reply.effects if isinstance(e, Invoke)]


def notify(reply: Reply) -> None:
    for effect in reply.effects:
        if isinstance(effect, Notify):
            effect.run()


class ListSink:
    def __init__(self, room: int = 1000) -> None:
        self.messages: list[dict[str, Any]] = []
        self.room = room

    def offer(self, message: bytes) -> bool:
        if len(self.messages) >= self.room:
            return False
        self.messages.append(msgspec.json.decode(message))
        return True


ITEM = {"stream_name": "chat", "group_id": "room1", "item_id": "m1"}

# --- the store -------------------------------------------------------------------------------


def test_items_keep_their_first_insertion_order_and_empty_groups_vanish() -> None:
    store = StreamStore()
    store.set("s", "g", "b", 1)
    store.set("s", "g", "a", 2)
    store.set("s", "g", "b", 3)  # keeps its place
    store.set("s", "h", "x", 0)
    store.set("t", "g", "y", 0)
    assert store.items("s", "g") == [3, 2]
    assert store.groups("s") == ["g", "h"]
    deleted = store.delete("s", "h", "x")
    assert (deleted.existed, deleted.old) == (True, 0)
    assert store.groups("s") == ["g"]
    assert store.streams() == {"s": ["g"], "t": ["g"]}
    assert store.delete("s", "h", "x").existed is False


def test_restored_rows_list_in_the_same_order_and_new_items_go_last() -> None:
    store = StreamStore()
    changes = [store.set("s", "g", key, n) for n, key in enumerate("cab")]
    store.delete("s", "g", "a")
    rows = [(c.stream, c.group, c.item, c.seq, c.new) for c in changes if c.item != "a"]
    restored = StreamStore(sorted(rows, key=lambda row: row[3]))
    assert restored.items("s", "g") == [0, 2]
    restored.set("s", "g", "d", 3)
    assert restored.items("s", "g") == [0, 2, 3]
    assert restored.set("s", "g", "e", 4).seq > max(c.seq for c in changes)


# --- the functions ---------------------------------------------------------------------------


def test_set_get_update_delete_answer_like_the_real_engine() -> None:
    service = StreamService(FakeContext())
    first = run(service, "stream::set", {**ITEM, "data": {"text": "hi"}})
    assert value(first) == {"old_value": None, "new_value": {"text": "hi"}}
    assert len(first.changes) == 1
    assert value(run(service, "stream::get", ITEM)) == {"text": "hi"}
    ops = [{"type": "set", "path": ["meta", "seen"], "value": True}, {"type": "nope"}]
    updated = value(run(service, "stream::update", {**ITEM, "ops": ops}))
    assert updated["new_value"] == {"text": "hi", "meta": {"seen": True}}
    assert [e["code"] for e in updated["errors"]] == ["unknown_operation"]
    assert value(run(service, "stream::list", {"stream_name": "chat", "group_id": "room1"})) == [
        {"text": "hi", "meta": {"seen": True}}
    ]
    assert value(run(service, "stream::list_groups", {"stream_name": "chat"})) == ["room1"]
    all_streams = value(run(service, "stream::list_all", {}))
    assert all_streams == {"stream": [{"id": "chat", "groups": ["room1"]}], "count": 1}
    deleted = run(service, "stream::delete", ITEM)
    assert value(deleted) == {"old_value": {"text": "hi", "meta": {"seen": True}}}
    missing = run(service, "stream::delete", ITEM)
    assert value(missing) == {"old_value": None}
    assert (missing.changes, missing.effects) == ((), ())
    assert value(run(service, "stream::get", ITEM)) is None


def test_bad_input_is_a_deserialization_error() -> None:
    service = StreamService(FakeContext())
    reply = run(service, "stream::set", {"stream_name": "chat"})
    assert reply.error is not None
    assert reply.error.code == "deserialization_error"
    assert reply.changes == ()


def test_changes_are_announced_to_matching_bindings_with_camel_case_payloads() -> None:
    service = StreamService(FakeContext())
    assert bind(service, "stream", {"stream_name": "chat"}, metadata=to_raw({"m": 1})) is None
    assert bind(service, "stream", {"stream_name": "chat", "group_id": "other"}) is None
    assert bind(service, "stream", {"stream_name": "chat", "item_id": "m1"}) is None
    assert (
        bind(service, "stream", {"stream_name": "chat", "condition_function_id": "app::ok"}) is None
    )
    assert bind(service, "stream", {"stream_name": "else"}) is None
    created = run(service, "stream::set", {**ITEM, "data": 1})
    fired = calls(created)
    assert len(fired) == 3
    assert msgspec.json.decode(fired[0].metadata or b"null") == {"m": 1}
    assert [f.condition_function_id for f in fired] == [None, None, "app::ok"]
    assert msgspec.json.decode(fired[0].data) == {
        "type": "stream",
        "timestamp": 1_700_000_000_000,
        "streamName": "chat",
        "groupId": "room1",
        "id": "m1",
        "event": {"type": "create", "data": 1},
    }
    kinds = [
        msgspec.json.decode(calls(run(service, fid, p))[0].data)["event"]
        for fid, p in (
            ("stream::set", {**ITEM, "data": 2}),
            ("stream::update", {**ITEM, "ops": [{"type": "increment", "by": 1}]}),
            ("stream::delete", ITEM),
        )
    ]
    assert kinds == [
        {"type": "update", "data": 2},
        {"type": "update", "data": 3},
        {"type": "delete", "data": 3},
    ]
    other_item = calls(run(service, "stream::set", {**ITEM, "item_id": "m2", "data": 0}))
    assert len(other_item) == 2  # the item_id binding does not match


def test_send_announces_a_custom_event_and_stores_nothing() -> None:
    service = StreamService(FakeContext())
    bind(service, "stream", {"stream_name": "chat", "group_id": "room1"})
    payload = {"stream_name": "chat", "group_id": "room1", "type": "typing", "data": {"u": 1}}
    reply = run(service, "stream::send", payload)
    assert value(reply) is None
    assert reply.changes == ()
    (fired,) = calls(reply)
    message = msgspec.json.decode(fired.data)
    assert message["id"] is None
    assert message["event"] == {"type": "event", "event": {"type": "typing", "data": {"u": 1}}}
    assert value(run(service, "stream::list_all", {})) == {"stream": [], "count": 0}


def test_a_binding_without_stream_name_hears_every_stream() -> None:
    service = StreamService(FakeContext())
    assert bind(service, "stream", {"group_id": "room1"}) is None
    assert len(calls(run(service, "stream::set", {**ITEM, "stream_name": "any", "data": 1}))) == 1
    assert calls(run(service, "stream::set", {**ITEM, "group_id": "room2", "data": 1})) == []
    error = bind(service, "stream", {"stream_name": 5}, id="bad")
    assert error is not None
    assert error.code == "trigger_registration_failed"


def test_custom_streams_forward_reads_and_announce_writes_from_the_answer() -> None:
    context = FakeContext()
    service = StreamService(context)
    bind(service, "stream", {"stream_name": "chat"})
    context.functions |= {"stream::get(chat)", "stream::set(chat)", "stream::delete(chat)"}
    read = run(service, "stream::get", ITEM)
    assert isinstance(read.result, Forward)
    assert read.result.function_id == "stream::get(chat)"
    assert read.result.then is None
    write = run(service, "stream::set", {**ITEM, "data": 5})
    forward = write.result
    assert isinstance(forward, Forward)
    assert forward.then is not None
    assert forward.function_id == "stream::set(chat)"
    assert write.effects == ()
    assert service.store.get("chat", "room1", "m1") is None  # the store is not used

    created = forward.then(to_raw({"old_value": None, "new_value": 5}), None)
    assert value(created) == {"old_value": None, "new_value": 5}
    assert msgspec.json.decode(calls(created)[0].data)["event"] == {"type": "create", "data": 5}
    updated = forward.then(to_raw({"old_value": 4, "new_value": 5}), None)
    assert msgspec.json.decode(calls(updated)[0].data)["event"]["type"] == "update"

    failed = forward.then(None, ErrorBody("invocation_failed", "disk full"))
    assert failed.error is not None
    assert failed.error.code == "STREAM_SET_ERROR"
    assert "disk full" in failed.error.message
    assert failed.effects == ()
    wrong = forward.then(to_raw({"old_value": 1}), None)
    assert value(wrong) == {"old_value": 1, "new_value": None}

    delete = run(service, "stream::delete", ITEM).result
    assert isinstance(delete, Forward)
    assert delete.then is not None
    assert calls(delete.then(to_raw({"old_value": None}), None)) == []
    gone = delete.then(to_raw({"old_value": 5}), None)
    assert msgspec.json.decode(calls(gone)[0].data)["event"] == {"type": "delete", "data": 5}

    native = run(service, "stream::list", {"stream_name": "chat", "group_id": "room1"})
    assert value(native) == []  # no stream::list(chat): the store answers


def test_unknown_config_keys_are_ignored_and_auth_function_is_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="anyiii.engine")
    service = StreamService(FakeContext(), {"port": 3112, "auth_function": "a::b", "bogus": 1})
    assert service.auth_function == "a::b"
    assert "bogus" in caplog.text


# --- subscribers -----------------------------------------------------------------------------


def sub(sid: str, group: str = "room1", item: str | None = None) -> Subscription:
    return Subscription(subscription_id=sid, stream_name="chat", group_id=group, id=item)


def test_writes_reach_matching_subscriptions_only_once_notified() -> None:
    service = StreamService(FakeContext())
    whole, item, other = ListSink(), ListSink(), ListSink()
    hub = service.hub
    hub.join(hub.connect(whole), sub("s1"))
    hub.join(hub.connect(item), sub("s2", item="m2"))
    hub.join(hub.connect(other), sub("s3", group="room2"))
    reply = run(service, "stream::set", {**ITEM, "data": "x"})
    assert whole.messages == []  # not before the commit
    notify(reply)
    assert [m["event"] for m in whole.messages] == [{"type": "create", "data": "x"}]
    assert item.messages == other.messages == []
    notify(run(service, "stream::set", {**ITEM, "item_id": "m2", "data": "y"}))
    assert len(whole.messages) == 2
    assert len(item.messages) == 1


def test_a_full_subscriber_is_dropped_and_the_others_still_get_messages() -> None:
    hub = StreamHub()
    slow, fast = ListSink(room=1), ListSink()
    slow_conn = hub.connect(slow)
    hub.join(slow_conn, sub("a"))
    hub.join(hub.connect(fast), sub("b"))
    message = {"streamName": "chat", "groupId": "room1", "id": "m1", "event": {}}
    hub.publish(message)
    hub.publish(message)
    assert len(hub) == 1
    assert len(fast.messages) == 2
    assert len(slow.messages) == 1
    assert hub.disconnect(slow_conn) == []
    assert hub.join(slow_conn, sub("c")) is False


def test_leave_and_disconnect_remove_subscriptions() -> None:
    hub = StreamHub()
    sink = ListSink()
    conn = hub.connect(sink)
    hub.join(conn, sub("a"))
    hub.join(conn, sub("b", group="room2"))
    hub.leave(conn, "a")
    hub.publish({"streamName": "chat", "groupId": "room1", "id": None, "event": {}})
    assert sink.messages == []
    assert hub.disconnect(conn) == [sub("b", group="room2")]
    assert len(hub) == 0


def test_update_results_share_no_containers_with_the_operations() -> None:
    store = StreamStore()
    ops = [
        UpdateOp(type="set", value={"tags": []}),
        UpdateOp(type="append", path="tags", value="a"),
    ]
    change, errors = store.update("s", "g", "i", ops)
    assert errors == []
    assert change.new == {"tags": ["a"]}
    assert ops[0].value == {"tags": []}  # the caller's operation is untouched
