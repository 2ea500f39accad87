"""Property: whatever the queue service does (accept, deliver, retry, dead-letter, redrive,
discard, purge), the SQLite database holds exactly the messages it holds in memory, with
their attempts and dead-letter state, so a restart (or a crash) loads the same queues."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_queues import Context, subscribe

from anyiii._engine.queues import QueueService
from anyiii._engine.queues.model import Message
from anyiii._engine.service import Change, Commit, Effect, Invoke, Reply
from anyiii._engine.storage import SqliteStorage
from anyiii._protocol.frames import ErrorBody, to_raw

CONFIG = {
    "queue_configs": {
        "std": {"max_retries": 1, "backoff_ms": 50, "concurrency": 2},
        "fifo": {"type": "fifo", "message_group_field": "g", "max_retries": 3, "backoff_ms": 10},
    }
}
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"),
            st.sampled_from(["std", "fifo"]),
            st.sampled_from(["g1", "g2"]),
            st.sampled_from(["app::a", "app::missing"]),
        ),
        st.tuples(st.just("publish"), st.integers(0, 9)),
        st.tuples(
            st.just("outcome"),
            st.integers(0, 20),
            st.sampled_from(["ok", "fail", "stopped", "skipped", "not_found"]),
        ),
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.02, 0.1, 1.0])),
        st.tuples(st.just("redrive"), st.sampled_from(["std", "fifo", "news"])),
        st.tuples(st.just("discard_one"), st.sampled_from(["std", "fifo", "news"])),
        st.tuples(st.just("purge"), st.sampled_from(["std", "fifo", "news"])),
    ),
    max_size=40,
)


class Run:
    """A queue service driven by a program; collects the changes it commits, in order."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.service = QueueService(context, CONFIG)
        subscribe(self.service, "t1", "app::a", topic="news", queue_config={"maxRetries": 0})
        subscribe(self.service, "t2", "app::b", topic="news")
        self.in_flight: list[Invoke] = []
        self.changes: list[Change] = []

    def take(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Commit):
                self.changes += effect.changes
                self.take(effect.effects)
            else:
                self.in_flight.append(effect)

    def reply(self, reply: Reply) -> None:
        self.changes += reply.changes
        self.take(reply.effects)

    def run(self, function_id: str, payload: Any) -> None:
        self.reply(self.service.functions[function_id].run(to_raw(payload)))

    def step(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "enqueue":
            _, queue, group, target = op
            request = {"queue": queue, "function_id": target, "data": {"g": group}}
            self.run("engine::queue::enqueue", request)
        elif kind == "publish":
            self.run("iii::durable::publish", {"topic": "news", "data": op[1]})
        elif kind == "outcome" and self.in_flight:
            invoke = self.in_flight.pop(op[1] % len(self.in_flight))
            assert invoke.on_done is not None
            outcomes = {
                "ok": (to_raw(None), None),
                "skipped": (None, None),
                "fail": (None, ErrorBody("invocation_failed", "boom")),
                "stopped": (None, ErrorBody("invocation_stopped", "gone")),
                "not_found": (None, ErrorBody("function_not_found", "gone")),
            }
            self.take(invoke.on_done(*outcomes[op[2]]))
        elif kind == "tick":
            self.context.t += op[1]
            deadline = self.service.next_deadline()
            if deadline is not None and deadline <= self.context.t:
                self.take(self.service.tick())
        elif kind == "redrive":
            self.run("iii::queue::redrive", {"queue": op[1]})
        elif kind == "discard_one":
            dead = [m for m in self.service.scheduler.dead.values() if m.name == op[1]]
            if dead:
                self.run("iii::queue::discard_message", {"queue": op[1], "message_id": dead[0].id})
        elif kind == "purge":
            self.run("iii::queue::purge_dlq", {"queue": op[1]})


def snapshot(service: QueueService) -> dict[str, tuple[Any, ...]]:
    def fields(m: Message) -> tuple[Any, ...]:
        return (m.seq, m.kind, m.name, m.namespace, m.function_id, m.data, m.attempts, m.group)

    return {
        **{i: (*fields(m), False, None) for i, m in service.scheduler.live.items()},
        **{i: (*fields(m), True, m.error) for i, m in service.scheduler.dead.items()},
    }


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=OPS, batch=st.integers(1, 5))
async def test_the_database_holds_what_the_queues_hold(
    program: list[tuple[Any, ...]], batch: int
) -> None:
    context = Context()
    context.functions |= {("default", "app::a"), ("default", "app::b")}
    run = Run(context)
    with tempfile.TemporaryDirectory() as directory:
        storage = await SqliteStorage.open(Path(directory), run.service.schema)
        try:
            for start in range(0, len(program), batch):  # each slice is one group commit
                for op in program[start : start + batch]:
                    run.step(op)
                await storage.write(run.changes)
                run.changes = []
            restored = QueueService(Context(), CONFIG)
            restored.restore(await storage.load(restored.restore_queries))
        finally:
            await storage.aclose()
    assert snapshot(restored) == snapshot(run.service)
