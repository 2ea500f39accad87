"""The `cron` trigger (spec §10.2): expressions as the engine's grammar reads them, the
schedule on fake monotonic and wall clocks (thousands of ticks, no drift, missed times
skipped), and a binding firing through the embedded engine on both backends."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from router_harness import Engine

import anyiii
from anyiii._engine.cron import CronService
from anyiii._engine.cron_schedule import CronExpressionError, CronSchedule, rfc3339
from anyiii._engine.router import Router
from anyiii._engine.service import Invoke
from anyiii._protocol import events as ev
from anyiii._protocol.frames import ErrorBody, RegisterTrigger, decode_value, to_raw
from anyiii.testing import running_engine

START_MS = 1_796_212_800_000  # 2026-12-02T12:00:00Z, a whole second
EPOCH_OFFSET = 5000.0  # the monotonic clock reads something unrelated to the wall clock


def ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


class Clocks:
    """A fake engine context: a monotonic and a wall clock that advance together unless a
    test skews them."""

    def __init__(self, wall_ms: int = START_MS) -> None:
        self.mono = EPOCH_OFFSET
        self.wall = wall_ms

    def now(self) -> float:
        return self.mono

    def wall_clock_ms(self) -> int:
        return self.wall

    def new_id(self) -> str:
        return "id"

    def has_function(self, namespace: str, function_id: str) -> bool:
        return True

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += round(seconds * 1000)

    def advance_to(self, deadline: float) -> None:
        self.advance(deadline - self.mono)


def binding(expression: Any, trigger_id: str = "job-1", **extra: Any) -> RegisterTrigger:
    config = {"expression": expression} if expression is not None else {}
    return RegisterTrigger(
        id=trigger_id,
        trigger_type="cron",
        function_id="app::tick",
        config=to_raw({**config, **extra.pop("config", {})}),
        **extra,
    )


def fire(service: CronService, clocks: Clocks) -> Invoke:
    """Advance to the next deadline, tick, and return the one call it starts."""
    deadline = service.next_deadline()
    assert deadline is not None
    clocks.advance_to(deadline)
    (effect,) = service.tick()
    assert isinstance(effect, Invoke)
    return effect


def payload(effect: Invoke) -> dict[str, Any]:
    value: dict[str, Any] = msgspec.json.decode(bytes(effect.data))
    return value


def finish(effect: Invoke, error: ErrorBody | None = None) -> None:
    assert effect.on_done is not None
    assert effect.on_done(None if error else to_raw({"ok": True}), error) == ()


# --- expressions -----------------------------------------------------------------------------


def test_a_classic_five_field_expression_is_refused_with_the_six_field_form() -> None:
    with pytest.raises(CronExpressionError) as refused:
        CronSchedule("*/5 * * * *")
    message = str(refused.value)
    assert "5 fields" in message
    assert "seconds first" in message
    assert "'0 */5 * * * *'" in message
    service = CronService(Clocks())
    error = service.register(binding("*/5 * * * *"))
    assert error is not None
    assert error.code == "trigger_registration_failed"
    assert "'0 */5 * * * *'" in error.message
    assert service.next_deadline() is None


@pytest.mark.parametrize(
    "config",
    [
        {"expression": "61 * * * * *"},
        {"expression": "not a cron"},
        {"expression": "* * * * * * * *"},
        {"expression": "0 0 0 * * 0"},  # days of the week are 1 (Sunday) … 7
        {"expression": 5},
        {},
    ],
)
def test_bad_configs_are_refused(config: dict[str, Any]) -> None:
    service = CronService(Clocks())
    frame = RegisterTrigger(id="j", trigger_type="cron", function_id="f", config=to_raw(config))
    error = service.register(frame)
    assert error is not None
    assert error.code == "trigger_registration_failed"


def test_six_and_seven_field_expressions_name_the_right_times() -> None:
    after = ms("2026-12-02T12:00:00+00:00")
    assert CronSchedule("*/15 * * * * *").after(after) == after + 15_000
    assert CronSchedule("0 30 9 * * *").after(after) == ms("2026-12-03T09:30:00+00:00")
    # The crate numbers days 1 = Sunday … 7 = Saturday: 2 is Monday, 7 Saturday.
    assert CronSchedule("0 0 12 * * 2").after(after) == ms("2026-12-07T12:00:00+00:00")
    assert CronSchedule("0 0 12 * * 7").after(after) == ms("2026-12-05T12:00:00+00:00")
    assert CronSchedule("0 0 12 * * 2-3").after(after) == ms("2026-12-07T12:00:00+00:00")
    assert CronSchedule("0 0 12 * * Mon").after(after) == ms("2026-12-07T12:00:00+00:00")
    # Day of month and day of week both apply: the first Monday the 1st after December.
    assert CronSchedule("0 0 0 1 * 2").after(after) == ms("2027-02-01T00:00:00+00:00")
    assert CronSchedule("0 0 0 1 1 * 2030").after(after) == ms("2030-01-01T00:00:00+00:00")
    assert CronSchedule("0 0 0 1 1 * 2020").after(after) is None
    assert CronSchedule("@hourly").after(after) == after + 3_600_000
    # Strictly after: a time exactly on the schedule names the next one.
    assert CronSchedule("* * * * * *").after(after) == after + 1000
    assert CronSchedule("* * * * * *").after(after + 1) == after + 1000


def test_times_are_written_as_the_real_engine_writes_them() -> None:
    assert rfc3339(START_MS) == "2026-12-02T12:00:00+00:00"
    assert rfc3339(START_MS + 7) == "2026-12-02T12:00:00.007+00:00"
    assert datetime.fromisoformat(rfc3339(START_MS + 250)).tzinfo == UTC


# --- the schedule on fake clocks -------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    expression=st.sampled_from(
        ["* * * * * *", "*/3 * * * * *", "10,40 * * * * *", "0 */2 * * * *", "0 0 * * * *"]
    ),
    wakeups=st.lists(st.floats(0, 2.5), min_size=30, max_size=30),
    calls=st.lists(st.floats(0, 2.5), min_size=30, max_size=30),
    skew_ms=st.integers(-400, 400),
)
def test_fired_times_are_on_the_schedule_increasing_and_skip_only_what_was_missed(
    expression: str, wakeups: list[float], calls: list[float], skew_ms: int
) -> None:
    """Whatever the wake-up latency, call duration and skew between the two clocks: every
    time served is one the expression names, each is the first one after the previous
    time and after the wall clock when the previous call ended, and none repeats."""
    clocks = Clocks()
    clocks.wall += skew_ms
    schedule = CronSchedule(expression)
    service = CronService(clocks)
    service.register(binding(expression))
    served: list[int] = []
    after = clocks.wall  # registered now
    for wakeup, call in zip(wakeups, calls, strict=True):
        deadline = service.next_deadline()
        assert deadline is not None
        clocks.advance_to(deadline + wakeup)
        (effect,) = service.tick()
        assert isinstance(effect, Invoke)
        scheduled = ms(payload(effect)["scheduled_time"])
        assert scheduled == schedule.after(after)
        served.append(scheduled)
        clocks.advance(call)
        finish(effect)
        after = max(scheduled, clocks.wall)  # the time served, or when its call ended
    assert served == sorted(set(served))


def test_a_tick_calls_the_function_with_the_payload_metadata_and_condition() -> None:
    clocks = Clocks(START_MS + 400)
    service = CronService(clocks)
    frame = binding(
        "*/5 * * * * *",
        config={"condition_function_id": "app::should"},
        metadata=to_raw({"team": "ops"}),
        namespace="billing",
    )
    assert service.register(frame) is None
    assert service.next_deadline() == pytest.approx(EPOCH_OFFSET + 4.6)
    assert service.tick() == []  # nothing is due yet
    clocks.advance(4.6 + 0.123)
    (effect,) = service.tick()
    assert isinstance(effect, Invoke)
    assert payload(effect) == {
        "trigger": "cron",
        "job_id": "job-1",
        "scheduled_time": "2026-12-02T12:00:05+00:00",
        "actual_time": "2026-12-02T12:00:05.123+00:00",
    }
    assert effect.function_id == "app::tick"
    assert effect.namespace == "billing"
    assert effect.metadata is not None
    assert msgspec.json.decode(effect.metadata) == {"team": "ops"}
    assert effect.condition_function_id == "app::should"


def test_thousands_of_ticks_with_jittery_wakeups_and_calls_do_not_drift() -> None:
    rng = random.Random(11)
    clocks = Clocks()
    service = CronService(clocks)
    service.register(binding("*/2 * * * * *"))
    for n in range(1, 5001):
        deadline = service.next_deadline()
        assert deadline is not None
        clocks.advance_to(deadline + rng.uniform(0, 0.4))  # the engine wakes a bit late
        (effect,) = service.tick()
        assert isinstance(effect, Invoke)
        scheduled = payload(effect)["scheduled_time"]
        assert scheduled == rfc3339(START_MS + 2000 * n)
        assert service.next_deadline() is None  # one call at a time
        clocks.advance(rng.uniform(0, 1.5))  # the call takes a while, under the period
        finish(effect, ErrorBody("boom", "failed") if n % 7 == 0 else None)
    assert clocks.wall - START_MS < 2000 * 5001


def test_times_missed_while_a_call_runs_are_skipped_not_fired_in_a_burst() -> None:
    clocks = Clocks()
    service = CronService(clocks)
    service.register(binding("* * * * * *"))
    first = fire(service, clocks)
    assert payload(first)["scheduled_time"] == rfc3339(START_MS + 1000)
    clocks.advance(3.5)  # the call outlives three more scheduled times
    assert service.tick() == []
    finish(first)
    second = fire(service, clocks)
    assert payload(second)["scheduled_time"] == rfc3339(START_MS + 5000)


def test_an_engine_busy_past_several_times_fires_once_for_the_one_it_was_due() -> None:
    clocks = Clocks()
    service = CronService(clocks)
    service.register(binding("* * * * * *"))
    clocks.advance(10.2)  # the timer fired ten seconds late
    (late,) = service.tick()
    assert isinstance(late, Invoke)
    assert payload(late)["scheduled_time"] == rfc3339(START_MS + 1000)
    finish(late)
    nxt = fire(service, clocks)
    assert payload(nxt)["scheduled_time"] == rfc3339(START_MS + 11_000)


def test_a_monotonic_clock_running_ahead_of_the_wall_clock_never_fires_a_time_twice() -> None:
    clocks = Clocks()
    service = CronService(clocks)
    service.register(binding("* * * * * *"))
    deadline = service.next_deadline()
    assert deadline is not None
    clocks.mono = deadline  # woken on time by the monotonic clock, the wall clock lags
    clocks.wall += 900
    (effect,) = service.tick()
    assert isinstance(effect, Invoke)
    finish(effect)
    again = fire(service, clocks)
    assert payload(again)["scheduled_time"] == rfc3339(START_MS + 2000)


def test_unregistering_or_replacing_a_binding_stops_its_old_schedule() -> None:
    clocks = Clocks()
    service = CronService(clocks)
    frame = binding("* * * * * *")
    service.register(frame)
    running = fire(service, clocks)
    service.unregister(frame)
    finish(running)  # the call of a removed job ends: nothing is rescheduled
    assert service.next_deadline() is None
    service.register(binding("0 * * * * *"))
    replaced = binding("*/10 * * * * *")
    service.unregister(replaced)
    service.register(replaced)
    effect = fire(service, clocks)
    assert payload(effect)["scheduled_time"] == rfc3339(START_MS + 10_000)


def test_an_expression_with_no_later_time_is_accepted_and_never_fires() -> None:
    service = CronService(Clocks())
    assert service.register(binding("0 0 0 1 1 * 2020")) is None
    assert service.next_deadline() is None
    assert service.tick() == []


def test_the_real_engines_adapter_config_is_accepted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="anyiii.engine"):
        CronService(Clocks(), {"adapter": {"name": "redis", "config": {}}, "extra": 1})
    assert "runs in-process" in caplog.text
    assert "ignoring unknown config keys extra" in caplog.text


# --- through the router, on fake clocks ------------------------------------------------------


def test_the_router_runs_a_cron_binding_on_its_clocks_and_re_arms_its_timer() -> None:
    """A worker binds `cron`; the router's deadline moves (and says so), a tick calls the
    worker with the payload and metadata, and the next time comes only after it answered."""
    engine = Engine()
    wall = [START_MS]
    engine.router = Router(clock=lambda: engine.now, wall_clock_ms=lambda: wall[0])
    frame = RegisterTrigger(
        id="c-1",
        trigger_type="cron",
        function_id="svc::a",
        config=to_raw({"expression": "*/5 * * * * *"}),
        metadata=to_raw({"team": "ops"}),
    )
    worker = engine.connect("svc::a")
    engine.tick(0.1)  # the discovery debounce is done with
    engine.router.timers_changed = False
    engine.send(worker, worker.core.register(frame))
    assert engine.router.timers_changed
    assert engine.router.next_deadline() == pytest.approx(5.1)
    for n in range(1, 4):
        wall[0] = START_MS + 5000 * n
        engine.tick(0.1 + 5.0 * n)
        request = worker.one(ev.InvocationRequested)
        assert decode_value(request.data) == {
            "trigger": "cron",
            "job_id": "c-1",
            "scheduled_time": rfc3339(START_MS + 5000 * n),
            "actual_time": rfc3339(START_MS + 5000 * n),
        }
        assert request.metadata is not None
        assert decode_value(request.metadata) == {"team": "ops"}
        assert request.invocation_id is not None
        assert engine.router.next_deadline() is None  # one call at a time
        engine.router.timers_changed = False
        engine.send(worker, worker.core.complete(request.invocation_id, to_raw(None)))
        assert engine.router.timers_changed
        assert engine.router.next_deadline() == pytest.approx(0.1 + 5.0 * (n + 1))


# --- through the engine ----------------------------------------------------------------------


async def test_a_cron_binding_fires_with_its_metadata_through_the_engine() -> None:
    """Real clocks and an every-second expression: the first tick comes within a second."""
    ticks: list[tuple[dict[str, Any], Any]] = []
    fired = anyio.Event()

    async def on_tick(event: dict[str, Any]) -> None:
        ticks.append((event, anyiii.get_context().metadata))
        fired.set()

    with anyio.fail_after(10):
        async with running_engine(http_port=None) as engine, anyiii.connect(engine.url) as w:
            w.register_function("app::tick", on_tick)
            trigger = await w.register_trigger(
                "cron", "app::tick", {"expression": "* * * * * *"}, metadata={"team": "ops"}
            )
            with pytest.raises(anyiii.InvocationError) as refused:
                await w.trigger_async(
                    {
                        "function_id": "engine::register_trigger",
                        "payload": {
                            "trigger_type": "cron",
                            "function_id": "app::tick",
                            "config": {"expression": "* * * * *"},
                        },
                    }
                )
            assert refused.value.code == "trigger_registration_failed"
            assert "'0 * * * * *'" in str(refused.value)
            await fired.wait()
    event, metadata = ticks[0]
    assert set(event) == {"trigger", "job_id", "scheduled_time", "actual_time"}
    assert event["trigger"] == "cron"
    assert event["job_id"] == trigger.id
    scheduled = datetime.fromisoformat(event["scheduled_time"])
    assert scheduled.microsecond == 0
    assert datetime.fromisoformat(event["actual_time"]) >= scheduled
    assert metadata == {"team": "ops"}


def test_a_cron_binding_made_by_a_built_in_call_re_arms_the_timer() -> None:
    """`engine::register_trigger` is a call, not a registration frame: the router still
    notices that the cron service's deadline moved (it skips that check only for calls
    routed from one worker to another)."""
    engine = Engine()
    engine.router = Router(clock=lambda: engine.now, wall_clock_ms=lambda: START_MS)
    worker = engine.connect("svc::a")
    engine.tick(0.1)  # the discovery debounce is done with
    engine.router.timers_changed = False
    payload = {
        "trigger_type": "cron",
        "function_id": "svc::a",
        "config": {"expression": "*/5 * * * * *"},
    }
    _, frame = worker.core.call("engine::register_trigger", to_raw(payload))
    engine.send(worker, frame)
    assert engine.router.timers_changed
    assert engine.router.next_deadline() == pytest.approx(5.1)


def test_an_enqueued_message_nobody_serves_yet_re_arms_the_timer() -> None:
    """The enqueue action reaches the queue service, whose poll timer starts: the router
    says so, like for any other message that reaches a service."""
    engine = Engine()
    engine.router = Router(clock=lambda: engine.now, wall_clock_ms=lambda: START_MS)
    worker = engine.connect("svc::a")
    engine.tick(0.1)  # the discovery debounce is done with
    engine.router.timers_changed = False
    _, frame = worker.core.call("svc::later", to_raw({"n": 1}), enqueue="default")
    engine.send(worker, frame)
    assert engine.router.timers_changed
    assert engine.router.next_deadline() is not None
