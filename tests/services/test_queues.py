"""The queue service's delivery rules without I/O: a fake clock, a fake engine context,
and the service's own functions, effects and continuations."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import pytest

from anyiii._engine.queues import ConfigError, QueueService
from anyiii._engine.queues.model import Deleted, Saved
from anyiii._engine.service import Commit, Effect, Invoke, Reply
from anyiii._protocol.frames import ErrorBody, RegisterTrigger, decode_value, to_raw

FAIL = ErrorBody("invocation_failed", "boom")


class Context:
    """The engine as a service sees it, with a clock the test moves."""

    def __init__(self) -> None:
        self.t = 100.0
        self.functions: set[tuple[str, str]] = set()
        self._ids = itertools.count(1)

    def now(self) -> float:
        return self.t

    def wall_clock_ms(self) -> int:
        return int(self.t * 1000)

    def new_id(self) -> str:
        return f"m{next(self._ids)}"

    def has_function(self, namespace: str, function_id: str) -> bool:
        return (namespace, function_id) in self.functions


def invokes(effects: Iterable[Effect]) -> list[Invoke]:
    out: list[Invoke] = []
    for effect in effects:
        if isinstance(effect, Commit):
            out += invokes(effect.effects)
        else:
            out.append(effect)
    return out


def commits(effects: Iterable[Effect]) -> list[Any]:
    return [c for e in effects if isinstance(e, Commit) for c in e.changes]


def data(invoke: Invoke) -> Any:
    return decode_value(invoke.data)


def value(reply: Reply) -> Any:
    """A reply's result, decoded."""
    assert isinstance(reply.result, msgspec.Raw)
    return decode_value(reply.result)


def row(reply: Reply) -> tuple[Any, ...]:
    """The stored row of the one message a reply accepted."""
    (saved,) = reply.changes
    assert isinstance(saved, Saved)
    return saved.row


def run(service: QueueService, function_id: str, payload: Any) -> Reply:
    return service.functions[function_id].run(to_raw(payload))


def enqueue(service: QueueService, queue: str, payload: Any, target: str = "app::job") -> Reply:
    request = {"queue": queue, "function_id": target, "data": payload, "messageReceiptId": "r"}
    return run(service, "engine::queue::enqueue", request)


def done(invoke: Invoke, error: ErrorBody | None = None) -> Sequence[Effect]:
    assert invoke.on_done is not None
    return invoke.on_done(None if error else to_raw(None), error)


def make(config: dict[str, Any] | None = None) -> tuple[Context, QueueService]:
    context = Context()
    context.functions.add(("default", "app::job"))
    return context, QueueService(context, config)


def test_an_accepted_message_is_committed_before_the_answer_then_delivered() -> None:
    _, service = make()
    reply = enqueue(service, "default", {"n": 1})
    assert reply.error is None
    assert [type(c) for c in reply.changes] == [Saved]
    (call,) = invokes(reply.effects)
    assert (call.function_id, call.namespace, data(call)) == ("app::job", "default", {"n": 1})
    after = done(call)
    assert commits(after) == [Deleted(row(reply)[0])]
    assert not service.scheduler.live


def test_backoff_doubles_and_the_last_attempt_goes_to_the_dead_letter_queue() -> None:
    config = {"queue_configs": {"jobs": {"max_retries": 3, "backoff_ms": 200}}}
    context, service = make(config)
    (call,) = invokes(enqueue(service, "jobs", {"n": 1}).effects)
    start = context.t
    retries: list[float] = []
    for _ in range(2):
        effects = done(call, FAIL)
        assert not invokes(effects)
        (_saved,) = commits(effects)
        deadline = service.next_deadline()
        assert deadline is not None
        retries.append(round(deadline - context.t, 6))
        context.t = deadline - 0.001
        assert not invokes(service.tick())  # not yet
        context.t = deadline
        (call,) = invokes(service.tick())
    assert retries == [0.2, 0.4]
    effects = done(call, FAIL)
    (dead,) = commits(effects)
    assert isinstance(dead, Saved)
    (message,) = service.scheduler.dead.values()
    assert (message.attempts, message.error) == (3, "invocation_failed: boom")
    assert message.failed_ms == int(context.t * 1000)
    assert context.t > start
    assert service.next_deadline() is None


def test_fifo_delivers_one_per_group_in_order_and_a_failure_blocks_its_group() -> None:
    config = {
        "queue_configs": {
            "pay": {"type": "fifo", "message_group_field": "account", "backoff_ms": 100}
        }
    }
    context, service = make(config)
    first: list[Invoke] = []
    for n, account in enumerate(["a", "a", "b", "a", "b"]):
        first += invokes(enqueue(service, "pay", {"account": account, "n": n}).effects)
    assert [data(c)["n"] for c in first] == [0, 2]  # the head of each group only
    a0, b2 = first
    assert [data(c)["n"] for c in invokes(done(b2))] == [4]
    assert not invokes(done(a0, FAIL))  # a0 retries later; a1 and a3 wait behind it
    context.t += 0.1
    (again,) = invokes(service.tick())
    assert data(again)["n"] == 0
    assert [data(c)["n"] for c in invokes(done(again))] == [1]


def test_fifo_needs_its_group_field() -> None:
    _, service = make({"queue_configs": {"pay": {"type": "fifo", "message_group_field": "g"}}})
    reply = enqueue(service, "pay", {"other": 1})
    assert reply.error is not None
    assert "'g'" in reply.error.message
    assert not reply.changes


def test_concurrency_caps_the_messages_in_flight() -> None:
    _, service = make({"queue_configs": {"jobs": {"concurrency": 2}}})
    calls: list[Invoke] = []
    for n in range(5):
        calls += invokes(enqueue(service, "jobs", {"n": n}).effects)
    assert [data(c)["n"] for c in calls] == [0, 1]
    assert [data(c)["n"] for c in invokes(done(calls[1]))] == [2]
    assert [data(c)["n"] for c in invokes(done(calls[0], FAIL))] == [3]


def test_a_message_for_an_unregistered_function_waits_without_spending_attempts() -> None:
    context, service = make({"queue_configs": {"jobs": {"max_retries": 1}}})
    assert not invokes(enqueue(service, "jobs", {"n": 1}, target="app::later").effects)
    deadline = service.next_deadline()
    assert deadline is not None
    assert deadline - context.t == pytest.approx(0.1)
    context.t += 10
    assert not invokes(service.tick())
    context.functions.add(("default", "app::later"))
    (call,) = invokes(service.tick())
    # It vanished again before the call reached it: still no attempt spent.
    context.functions.discard(("default", "app::later"))
    assert not commits(done(call, ErrorBody("function_not_found", "gone")))
    (message,) = service.scheduler.live.values()
    assert message.attempts == 0


def test_unknown_queues_and_bad_config_are_refused() -> None:
    _, service = make()
    reply = enqueue(service, "nope", {})
    assert reply.error is not None
    assert reply.error.code == "queue_not_found"
    with pytest.raises(ConfigError, match="fifo"):
        QueueService(Context(), {"queue_configs": {"q": {"type": "fifo"}}})
    with pytest.raises(ConfigError, match="concurrency"):
        QueueService(Context(), {"queue_configs": {"q": {"concurrency": 0}}})


def subscribe(service: QueueService, binding_id: str, function_id: str, **config: Any) -> None:
    provider = service.trigger_types["durable:subscriber"]
    frame = RegisterTrigger(
        id=binding_id,
        trigger_type="durable:subscriber",
        function_id=function_id,
        config=to_raw(config),
    )
    assert provider.register(frame) is None


def test_a_topic_fans_out_to_each_subscribed_function_with_its_own_retries() -> None:
    context, service = make()
    context.functions |= {("default", "app::a"), ("default", "app::b")}
    subscribe(service, "t1", "app::a", topic="orders", queue_config={"maxRetries": 0})
    subscribe(service, "t2", "app::b", topic="orders", condition_function_id="app::cond")
    subscribe(service, "t3", "app::b", topic="orders", condition_function_id="app::cond")
    reply = run(service, "iii::durable::publish", {"topic": "orders", "data": {"id": 7}})
    assert reply.result is None
    assert len(reply.changes) == 2
    a, b = invokes(reply.effects)
    assert (a.function_id, a.condition_function_id, data(a)) == ("app::a", None, {"id": 7})
    assert (b.function_id, b.condition_function_id) == ("app::b", "app::cond")
    done(a, FAIL)  # maxRetries 0: one attempt, then the dead-letter queue
    assert [m.function_id for m in service.scheduler.dead.values()] == ["app::a"]
    assert b.on_done is not None
    assert commits(b.on_done(None, None))  # the condition said false: consumed
    assert not service.scheduler.live
    legacy = run(service, "enqueue", {"topic": "nobody", "data": 1})
    assert legacy.error is None
    assert not legacy.changes


def test_a_topic_lane_waits_while_nobody_subscribes() -> None:
    context, service = make()
    context.functions.add(("default", "app::a"))
    subscribe(service, "t1", "app::a", topic="news")
    (call,) = invokes(run(service, "iii::durable::publish", {"topic": "news", "data": 1}).effects)
    service.trigger_types["durable:subscriber"].unregister(
        RegisterTrigger(id="t1", trigger_type="durable:subscriber", function_id="app::a")
    )
    done(call, ErrorBody("invocation_stopped", "worker gone"))
    context.t += 60
    assert not invokes(service.tick())
    subscribe(service, "t9", "app::a", topic="news")
    assert service.next_deadline() == context.t  # a new subscription wakes the lane
    (again,) = invokes(service.tick())
    assert data(again) == 1


def test_dead_letters_are_listed_redriven_and_purged() -> None:
    _, service = make({"queue_configs": {"jobs": {"max_retries": 1}}})
    calls = [invokes(enqueue(service, "jobs", {"n": n}).effects)[0] for n in range(3)]
    for call in calls:
        done(call, FAIL)
    listed = value(run(service, "engine::queue::dlq_messages", {"queue": "jobs"}))
    assert [m["payload"]["n"] for m in listed] == [2, 1, 0]  # newest first
    assert listed[0]["retries"] == 1
    assert listed[0]["error"] == "invocation_failed: boom"
    stats = value(run(service, "engine::queue::topic_stats", {"topic": "jobs"}))
    assert stats == {"depth": 0, "consumer_count": 10, "dlq_depth": 3, "config": None}
    one = run(
        service, "iii::queue::redrive_message", {"queue": "jobs", "message_id": listed[0]["id"]}
    )
    assert value(one)["redriven"] == 1
    (again,) = invokes(one.effects)
    assert data(again) == {"n": 2}
    purged = run(service, "iii::queue::purge_dlq", {"queue": "jobs"})
    assert value(purged) == {"queue": "jobs", "purged": 2}
    assert all(isinstance(c, Deleted) for c in purged.changes)
    assert not service.scheduler.dead


def test_restore_brings_back_waiting_and_dead_messages_in_order() -> None:
    _, service = make({"queue_configs": {"jobs": {"max_retries": 1, "concurrency": 1}}})
    rows = []
    for n in range(3):
        reply = enqueue(service, "jobs", {"n": n})
        rows.append(row(reply))
    context2 = Context()
    context2.functions.add(("default", "app::job"))
    restored = QueueService(context2, {"queue_configs": {"jobs": {"concurrency": 1}}})
    dead_row = list(rows[1])
    dead_row[11] = 1  # dead
    restored.restore([[rows[2], tuple(dead_row), rows[0]]])
    assert restored.next_deadline() == context2.t
    (call,) = invokes(restored.tick())
    assert data(call) == {"n": 0}
    assert [m.id for m in restored.scheduler.dead.values()] == [rows[1][0]]
    assert [data(c) for c in invokes(done(call))] == [{"n": 2}]
    new = restored.new_message(
        kind="queue", name="jobs", namespace="default", function_id="f", data=b"1"
    )
    assert new.seq > max(r[1] for r in rows)


def test_saved_rows_capture_the_message_as_it_was() -> None:
    _, service = make()
    reply = enqueue(service, "default", {"n": 1})
    (saved,) = reply.changes
    (call,) = invokes(reply.effects)
    done(call, FAIL)
    ((_, row),) = list(saved.statements())
    assert row[7] == 0  # attempts when accepted, not now
    assert msgspec.json.decode(row[6]) == {"n": 1}


def test_each_lane_keeps_its_own_timer() -> None:
    config = {"queue_configs": {"slow": {"backoff_ms": 500}, "fast": {"backoff_ms": 50}}}
    context, service = make(config)
    (slow,) = invokes(enqueue(service, "slow", {"q": "slow"}).effects)
    (fast,) = invokes(enqueue(service, "fast", {"q": "fast"}).effects)
    done(slow, FAIL)
    assert service.next_deadline() == pytest.approx(context.t + 0.5)
    done(fast, FAIL)
    assert service.next_deadline() == pytest.approx(context.t + 0.05)
    context.t += 0.05
    (again,) = invokes(service.tick())
    assert data(again) == {"q": "fast"}
    done(again)  # only its lane is looked at again; the other lane's retry still stands
    assert service.next_deadline() == pytest.approx(context.t + 0.45)
