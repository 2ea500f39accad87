"""Pub/sub (spec §10.5): the service's rules without I/O, then anyiii workers publishing and
subscribing through the embedded engine on both backends (fan-out, topic isolation,
conditions answering true, false, or failing)."""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest
from msgspec import Raw

import anyiii
from anyiii._engine.pubsub import PubSubService
from anyiii._engine.service import Invoke
from anyiii._protocol.frames import RegisterTrigger, to_raw
from anyiii.testing import running_engine

# --- the service, without I/O ----------------------------------------------------------------


def subscribe(
    service: PubSubService, trigger_id: str, topic: str | None, **extra: Any
) -> RegisterTrigger:
    config = {"topic": topic} if topic is not None else {}
    frame = RegisterTrigger(
        id=trigger_id,
        trigger_type="subscribe",
        function_id=f"app::{trigger_id}",
        config=to_raw({**config, **extra.pop("config", {})}),
        **extra,
    )
    assert service.register(frame) is None
    return frame


def publish(service: PubSubService, payload: bytes) -> list[Invoke]:
    reply = service.publish(Raw(payload))
    assert reply.error is None
    assert reply.result is not None
    assert bytes(reply.result) == b"null"
    assert reply.changes == ()  # nothing is persisted
    effects = list(reply.effects)
    assert all(isinstance(e, Invoke) for e in effects)
    return effects  # type: ignore[return-value]


def test_publish_fans_out_the_data_itself_to_the_topics_subscribers_only() -> None:
    service = PubSubService()
    subscribe(service, "a", "orders", metadata=to_raw({"team": "a"}), namespace="shop")
    subscribe(service, "b", "orders", config={"condition_function_id": "app::only_big"})
    subscribe(service, "c", "audit")
    calls = publish(service, b'{"topic":"orders","data":{"id":1, "total": 2.50}}')
    by_function = {c.function_id: c for c in calls}
    assert set(by_function) == {"app::a", "app::b"}
    for call in calls:  # exactly the published bytes: no envelope, no caller id
        assert bytes(call.data) == b'{"id":1, "total": 2.50}'
    a, b = by_function["app::a"], by_function["app::b"]
    assert a.namespace == "shop"
    assert a.metadata is not None
    assert msgspec.json.decode(a.metadata) == {"team": "a"}
    assert a.condition_function_id is None
    assert a.on_done is None  # fire and forget
    assert b.namespace == "default"
    assert b.metadata is None
    assert b.condition_function_id == "app::only_big"
    assert publish(service, b'{"topic":"nobody","data":1}') == []


def test_publish_without_data_sends_null_and_without_topic_is_refused() -> None:
    service = PubSubService()
    subscribe(service, "a", "t")
    (call,) = publish(service, b'{"topic":"t"}')
    assert bytes(call.data) == b"null"
    empty = service.publish(Raw(b'{"topic":"","data":1}'))
    assert empty.error is not None
    assert (empty.error.code, empty.error.message) == ("topic_not_set", "Topic is not set")
    assert empty.effects == ()
    bad = service.publish(Raw(b'{"data":1}'))
    assert bad.error is not None
    assert bad.error.code == "deserialization_error"


def test_unsubscribing_one_subscriber_keeps_the_others() -> None:
    service = PubSubService()
    first = subscribe(service, "a", "t")
    subscribe(service, "b", "t")
    service.unregister(first)
    service.unregister(first)  # twice is harmless
    assert [c.function_id for c in publish(service, b'{"topic":"t","data":0}')] == ["app::b"]
    assert service.subscribers("t") == 1


def test_a_binding_registered_again_moves_to_its_new_topic() -> None:
    service = PubSubService()
    subscribe(service, "a", "old")
    subscribe(service, "a", "new")
    assert service.subscribers("old") == 0
    assert [c.function_id for c in publish(service, b'{"topic":"new","data":0}')] == ["app::a"]


def test_a_subscription_without_topic_is_accepted_and_hears_nothing() -> None:
    service = PubSubService()
    subscribe(service, "a", None)
    subscribe(service, "b", "")
    assert publish(service, b'{"topic":"x","data":0}') == []
    bad = RegisterTrigger(id="c", trigger_type="subscribe", function_id="f", config=to_raw(3))
    error = service.register(bad)
    assert error is not None
    assert error.code == "trigger_registration_failed"


# --- through the engine ----------------------------------------------------------------------


async def test_publish_reaches_every_subscriber_of_the_topic_and_no_other() -> None:
    got: dict[str, list[Any]] = {"b": [], "c": [], "d": []}
    both = anyio.Event()
    other = anyio.Event()

    def subscriber(name: str) -> Any:
        async def handle(data: Any) -> None:
            got[name].append((data, anyiii.get_context().metadata))
            if got["b"] and got["c"]:
                both.set()
            if got["d"]:
                other.set()

        return handle

    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine:
            async with (
                anyiii.connect(engine.url) as publisher,
                anyiii.connect(engine.url) as b,
                anyiii.connect(engine.url) as c,
                anyiii.connect(engine.url) as d,
            ):
                for name, worker, topic in (("b", b, "orders"), ("c", c, "orders"), ("d", d, "x")):
                    worker.register_function(f"app::{name}", subscriber(name))
                    await worker.register_trigger(
                        "subscribe", f"app::{name}", {"topic": topic}, metadata={"w": name}
                    )
                    await worker.trigger_async({"function_id": "engine::functions::list"})
                result = await publisher.trigger_async(
                    {"function_id": "publish", "payload": {"topic": "orders", "data": {"n": 1}}}
                )
                assert result is None
                await both.wait()
                # d's topic gets its own message; the orders message never reached it.
                await publisher.trigger_async(
                    {"function_id": "publish", "payload": {"topic": "x", "data": "only-d"}}
                )
                await other.wait()
    assert got["b"] == [({"n": 1}, {"w": "b"})]
    assert got["c"] == [({"n": 1}, {"w": "c"})]
    assert got["d"] == [("only-d", {"w": "d"})]


async def test_conditions_decide_which_subscribers_are_called() -> None:
    """Conditions answering true, false and failing: only `true` (and no condition) calls.

    The `true` condition answers last, after the other two answered, so once its subscriber
    ran the engine has already decided about the other two.
    """
    called: list[str] = []
    asked: list[tuple[str, Any]] = []
    others_answered = anyio.Event()
    done = anyio.Event()

    async def cond_false(data: Any) -> bool:
        asked.append(("false", data))
        if len(asked) == 2:
            others_answered.set()
        return False

    async def cond_error(data: Any) -> bool:
        asked.append(("error", data))
        if len(asked) == 2:
            others_answered.set()
        raise RuntimeError("condition broke")

    async def cond_true(data: Any) -> bool:
        await others_answered.wait()
        asked.append(("true", data))
        return True

    def target(name: str) -> Any:
        async def handle(data: Any) -> None:
            called.append(name)
            if name == "when_true":
                done.set()

        return handle

    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            for name, function in (
                ("cond_false", cond_false),
                ("cond_error", cond_error),
                ("cond_true", cond_true),
            ):
                w.register_function(f"app::{name}", function)
            for name in ("when_false", "when_error", "when_true"):
                w.register_function(f"app::{name}", target(name))
                condition = "app::cond_" + name.removeprefix("when_")
                await w.register_trigger(
                    "subscribe",
                    f"app::{name}",
                    {"topic": "t", "condition_function_id": condition},
                )
            await w.trigger_async({"function_id": "engine::functions::list"})
            await w.trigger_async({"function_id": "publish", "payload": {"topic": "t", "data": 7}})
            await done.wait()
            # A round trip on the same connection: every earlier answer was handled.
            await w.trigger_async({"function_id": "engine::functions::list"})
    assert called == ["when_true"]
    assert sorted(asked) == [("error", 7), ("false", 7), ("true", 7)]


async def test_publish_without_a_topic_fails_for_the_caller() -> None:
    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            with pytest.raises(anyiii.InvocationError) as refused:
                await w.trigger_async({"function_id": "publish", "payload": {"data": 1}})
            assert refused.value.code == "deserialization_error"
            with pytest.raises(anyiii.InvocationError) as empty:
                await w.trigger_async({"function_id": "publish", "payload": {"topic": ""}})
            assert empty.value.code == "topic_not_set"


async def test_the_typed_pubsub_client_publishes_and_subscribes() -> None:
    """`anyiii.PubSub` against the engine's own service: a feed hears its topic only."""
    with anyio.fail_after(20):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url):
            pubsub = anyiii.PubSub()
            async with pubsub.subscribe("news") as feed:
                await pubsub.publish("sports", {"n": 0})
                await pubsub.publish("news", {"n": 1})
                await pubsub.publish("news", [2])
                heard = [await anext(feed), await anext(feed)]
    assert heard == [{"n": 1}, [2]]
