"""The engine's `Router` against a model: a Hypothesis rule-based state machine.

Every simulated worker is a real `WorkerConnection` core (worker role) wired to the router
the way the engine's I/O layer wires a socket: `Router.open()` gives the connection id,
every `Send` action is fed to that worker's core with `receive()`, a `Close` action means
the router wants the socket gone (so the machine calls `router.close()` and
`core.receive(None)`, as the I/O layer would), and `Completed` ends a call the engine made
itself (`router.call()`). The clock is fake and only moves when a rule says so.

The model is a handful of dicts and sets on the machine: who owns which function (the
router refuses a second live owner with `FUNCTION_NAMESPACE_CONFLICT` and keeps the first;
the refused one waits and gets the id when it frees up; a departed owner's ids stay
reserved for it, or for a connection that reattaches as it, for `GRACE` seconds),
which registrations wait for the connection's namespace, which sync calls each worker
waits on, and which invocations each worker is executing. Before a rule acts it writes down
what must come out (answers, completions, dispatches, rejections); everything that comes
out must have been expected, exactly once, and everything expected must come out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from msgspec import Raw

from anyiii._engine.actions import Action, Close, Completed, Send
from anyiii._engine.router import Router
from anyiii._engine.tables import INTERNAL
from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    FUNCTION_NOT_FOUND,
    INVOCATION_STOPPED,
    MALFORMED_FRAME,
)
from anyiii._protocol.frames import (
    ErrorBody,
    InvocationResult,
    RegisterFunction,
    UnregisterFunction,
    decode_value,
    encode_frame,
    to_raw,
)
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.worker import WorkerConnection
from strategies import error_bodies, uuid_text

GRACE: Final = 5.0
POOL: Final = ("svc::a", "svc::b", "svc::c")
BUILTIN: Final = "engine::functions::list"
ENGINE: Final = "engine"
"""The caller of an invocation the engine started itself (`router.call`)."""
WRONG_TOKEN: Final = "00000000-0000-4000-8000-00000000dead"

FUNCTIONS = st.sampled_from(POOL)
TARGET = st.integers(0, 7)
"""Which function to call: an index into the served functions, then the pool, then a
built-in (see `_choose_target`)."""
PAYLOADS = st.sampled_from(
    [None, 0, "text", [1, 2], {}, {"k": {"n": None}}, {"_caller_worker_id": "spoofed"}]
)
RESULTS = st.sampled_from([None, 0, "ok", [1], {"c": 5}])
ERRORS = error_bodies("invocation_failed", "my_own_code")
# Mostly plain workers in `default`; some in namespace `shop`; some that never call
# engine::workers::register (their registrations wait for the grace period).
REGISTER_MODES = st.sampled_from(["default", "default", "default", "shop", "none"])
PICK = st.integers(0, 15)


@dataclass(eq=False)
class Worker:
    """One simulated worker: its real protocol core and the model's view of it."""

    label: int
    conn: int
    core: WorkerConnection
    core_namespace: str | None
    grace_deadline: float
    worker_id: str = ""
    token: str | None = None
    namespace: str | None = None
    """The namespace the router fixed for it (None while registrations are held)."""
    held: list[tuple[bool, str]] = field(default_factory=list)
    """Registrations (True) and unregistrations (False) waiting for the namespace."""
    live: bool = True
    pending: set[str] = field(default_factory=set)
    """Sync calls it made that still await their answer."""
    answered: set[str] = field(default_factory=set)
    """Every call id it ever got an answer for (an answer must never come twice)."""
    garbage: set[str] = field(default_factory=set)
    """Invocations it answered with a malformed frame (its core still lists them)."""
    running: set[str] = field(default_factory=set)
    """Invocations dispatched to it that it has not answered (stopped ones included)."""
    lost_calls: set[str] = field(default_factory=set)
    """The calls its core must report in `ConnectionLost`."""
    heir_of: Worker | None = None
    """The departed worker it proved to be by `reattach` (the right token)."""

    def __repr__(self) -> str:
        return f"w{self.label}"


@dataclass(eq=False)
class Flight:
    """An invocation in flight in the model: who runs it and who waits for it."""

    function_id: str
    caller: Worker | str | None  # a worker, ENGINE, or None (void / caller gone / abandoned)
    callee: Worker


@dataclass(frozen=True)
class Expect:
    """How one call must end: `ok` with `value`, a builtin's object result (`any_ok`), the
    exact `error`, or an error with `code` (and `message`, if given)."""

    kind: str
    value: object = None
    error: ErrorBody | None = None
    code: str | None = None
    message: str | None = None

    def check(self, result: Raw | None, error: ErrorBody | None) -> None:
        if self.kind == "ok":
            assert error is None, error
            assert (None if result is None else decode_value(result)) == self.value
        elif self.kind == "any_ok":
            assert error is None, error
            assert result is not None
            assert isinstance(decode_value(result), dict)
        elif self.kind == "error":
            assert result is None
            assert error == self.error, (error, self.error)
        else:
            assert result is None
            assert error is not None
            assert error.code == self.code, (error, self.code)
            if self.message is not None:
                assert error.message == self.message, (error.message, self.message)


def ok(value: object) -> Expect:
    return Expect("ok", value=value)


def failed(code: str, message: str | None = None) -> Expect:
    return Expect("code", code=code, message=message)


STOPPED: Final = failed(INVOCATION_STOPPED, "Invocation stopped")


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.made = 0
        self.router = Router(
            clock=lambda: self.now,
            wall_clock_ms=lambda: 0,
            namespace_grace=GRACE,
            new_id=lambda: self._mint("e0e0e0e0"),
        )
        self.workers: list[Worker] = []
        self.by_conn: dict[int, Worker] = {}
        self.closed: set[int] = set()
        self.owners: dict[tuple[str, str], Worker] = {}
        self.reserved: dict[tuple[str, str], tuple[Worker, float]] = {}
        """Ids of departed owners, kept for them until the deadline."""
        self.waiting: dict[tuple[str, str], list[Worker]] = {}
        """Workers refused an id someone held, earliest first: they get it when it frees."""
        self.flights: dict[str, Flight] = {}
        self.ended: list[tuple[str, str]] = []  # (invocation id, function id) answered
        self.completed: dict[str, Completed] = {}
        self.expected_answers: dict[tuple[int, str], Expect] = {}
        self.expected_completions: dict[str, Expect] = {}
        self.expected_rejections: list[tuple[Worker, str, str, str]] = []
        self.dispatched: list[tuple[Worker, ev.InvocationRequested]] = []
        self.steps = 0  # rules run so far: rare rules are enabled only every so often

    # --- helpers ---------------------------------------------------------------------------

    def _mint(self, prefix: str) -> str:
        self.made += 1
        return uuid_text(prefix, self.made)

    def _live(self) -> list[Worker]:
        return [w for w in self.workers if w.live]

    def _pick_live(self, pick: int) -> Worker:
        live = self._live()
        return live[pick % len(live)]

    def _has_live(self) -> bool:
        return any(w.live for w in self.workers)

    def _perform(self, actions: list[Action]) -> None:
        """Carry out the router's actions as the engine's I/O layer would."""
        for action in actions:
            if isinstance(action, Send):
                assert action.conn not in self.closed, f"sent to closed connection {action}"
                worker = self.by_conn[action.conn]
                assert worker.live, f"sent to {worker}, which the router retired"
                for event in worker.core.receive(action.data):
                    self._observe(worker, event)
            elif isinstance(action, Close):
                assert action.conn not in self.closed, f"closed twice: {action}"
                self._disconnect(self.by_conn[action.conn])
            else:
                assert isinstance(action, Completed), action
                iid = action.invocation_id
                assert iid not in self.completed, f"completed twice: {action}"
                self.completed[iid] = action
                expected = self.expected_completions.pop(iid, None)
                assert expected is not None, f"unexpected {action}"
                expected.check(action.result, action.error)

    def _observe(self, worker: Worker, event: ev.Event) -> None:
        note(f"{worker} <- {event!r}")
        if isinstance(event, ev.Registered):
            worker.worker_id = event.worker_id
            worker.token = event.reattach_token
        elif isinstance(event, (ev.CallCompleted, ev.CallFailed)):
            iid = event.invocation_id
            assert iid not in worker.answered, f"{worker} got a second answer for {iid}"
            worker.answered.add(iid)
            expected = self.expected_answers.pop((worker.label, iid), None)
            assert expected is not None, f"{worker} got an unexpected answer {event!r}"
            if isinstance(event, ev.CallCompleted):
                expected.check(event.result, None)
            else:
                expected.check(None, event.error)
        elif isinstance(event, ev.InvocationRequested):
            self.dispatched.append((worker, event))
        elif isinstance(event, ev.RegistrationRefused):
            wanted = (worker, event.function_id or "", event.namespace, event.owner_worker_id)
            assert event.code == FUNCTION_NAMESPACE_CONFLICT, event
            assert not event.fatal
            assert wanted in self.expected_rejections, (event, self.expected_rejections)
            self.expected_rejections.remove(wanted)
        else:
            raise AssertionError(f"{worker} got an unexpected event {event!r}")

    def _every(self, period: int) -> bool:
        """A deterministic frequency guard (zarr's `with_frequency` idea): true on every
        `period`-th step, so a rule that wipes the state does not dominate the runs."""
        return self.steps % period == period - 1

    def _settle(self) -> None:
        """Everything the model expected from this step happened (and nothing else did)."""
        assert not self.expected_answers, f"answers never delivered: {self.expected_answers}"
        assert not self.expected_completions, f"never completed: {self.expected_completions}"
        assert not self.expected_rejections, f"never rejected: {self.expected_rejections}"
        assert not self.dispatched, f"unexpected dispatches: {self.dispatched}"

    def _take_dispatch(
        self, callee: Worker, function_id: str, invocation_id: str | None, data: object
    ) -> str:
        """The one dispatch `callee` must have received; returns its invocation id."""
        found = [
            (w, e)
            for w, e in self.dispatched
            if w is callee
            and e.function_id == function_id
            and (invocation_id is None or e.invocation_id == invocation_id)
        ]
        assert len(found) == 1, (callee, function_id, invocation_id, self.dispatched)
        self.dispatched.remove(found[0])
        event = found[0][1]
        assert event.invocation_id is not None
        if invocation_id is None:  # a fresh engine id: nobody else may be using it
            assert event.invocation_id not in self.flights
            assert all(event.invocation_id != i for i, _ in self.ended)
        assert decode_value(event.data) == data, (decode_value(event.data), data)
        callee.running.add(event.invocation_id)
        return event.invocation_id

    def _target_namespace(self, worker: Worker, function_id: str) -> str:
        """Where a worker's call is resolved (its core fills `namespace` like the SDKs)."""
        if function_id.startswith("engine::"):
            return "default"
        return worker.core_namespace or "default"

    def _choose_target(self, namespace: str, pick: int) -> str:
        """A function id to call, biased toward ones that are served in `namespace`."""
        served = sorted(fid for ns, fid in self.owners if ns == namespace)
        options = [*served, *POOL, BUILTIN]
        return options[pick % len(options)]

    def _resolve(self, namespace: str, function_id: str) -> Worker | str | None:
        if function_id == BUILTIN:
            return BUILTIN if namespace == "default" else None
        return self.owners.get((namespace, function_id))

    def _builtin_outcome(self, payload: object) -> Expect:
        """`engine::functions::list` takes an object (or nothing) and answers an object."""
        if payload is None or isinstance(payload, dict):
            return Expect("any_ok")
        return failed("deserialization_error")

    def _not_found(self, function_id: str, namespace: str) -> Expect:
        elsewhere = sorted(ns for ns, fid in self.owners if fid == function_id)
        message = f"Function {function_id} not found in namespace {namespace}"
        if elsewhere:
            message += f". It is registered in namespace(s): {', '.join(elsewhere)}"
        return failed(FUNCTION_NOT_FOUND, message)

    def _expect_end(self, invocation_id: str, flight: Flight, expected: Expect) -> None:
        """`flight` ends now: whoever still waits for it must be told `expected`."""
        self.ended.append((invocation_id, flight.function_id))
        caller = flight.caller
        if isinstance(caller, Worker):
            if caller.live:
                self.expected_answers[(caller.label, invocation_id)] = expected
                caller.pending.discard(invocation_id)
        elif caller == ENGINE:
            self.expected_completions[invocation_id] = expected

    def _with_caller(self, payload: object, caller: Worker) -> object:
        if isinstance(payload, dict):
            return {**payload, "_caller_worker_id": caller.worker_id}
        return payload

    # --- model: registrations and namespaces -------------------------------------------------

    def _model_registration(self, worker: Worker, register: bool, function_id: str) -> None:
        if worker.namespace is None:
            worker.held.append((register, function_id))
            return
        key = (worker.namespace, function_id)
        owner = self.owners.get(key)
        line = self.waiting.setdefault(key, [])
        reservation = self.reserved.get(key)
        holder = owner if owner is not worker else None
        if holder is None and reservation is not None and reservation[0] is not worker.heir_of:
            holder = reservation[0]
        if register:
            if holder is not None:
                self.expected_rejections.append(
                    (worker, function_id, worker.namespace, holder.worker_id)
                )
                if worker not in line:
                    line.append(worker)
            else:
                self.owners[key] = worker
                self.reserved.pop(key, None)
                if worker in line:
                    line.remove(worker)
            return
        if worker in line:
            line.remove(worker)
        if owner is worker:
            del self.owners[key]
            self._model_hand_over(key)

    def _model_hand_over(self, key: tuple[str, str]) -> None:
        """`key` is free: the earliest worker still waiting for it gets it, silently."""
        line = self.waiting.get(key, [])
        if key not in self.owners and line:
            self.owners[key] = line.pop(0)

    def _model_fix_namespace(self, worker: Worker, namespace: str) -> None:
        if worker.namespace is not None:
            return
        worker.namespace = namespace
        held, worker.held = worker.held, []
        for register, function_id in held:
            self._model_registration(worker, register, function_id)

    def _tick(self) -> None:
        due = [w for w in self._live() if w.namespace is None and w.grace_deadline <= self.now]
        for worker in sorted(due, key=lambda w: w.conn):
            self._model_fix_namespace(worker, "default")
        for key, (_, deadline) in list(self.reserved.items()):
            if deadline <= self.now:
                del self.reserved[key]
                self._model_hand_over(key)
        self._perform(self.router.tick())

    # --- model: disconnects ------------------------------------------------------------------

    def _model_disconnect(self, worker: Worker) -> None:
        """The router drops `worker`: what it ran is stopped, what it waited on runs on."""
        if not worker.live:
            return
        worker.live = False
        worker.lost_calls = set(worker.pending)
        executing = sorted(i for i, f in self.flights.items() if f.callee is worker)
        for invocation_id in executing:
            self._expect_end(invocation_id, self.flights.pop(invocation_id), STOPPED)
        for flight in self.flights.values():
            if flight.caller is worker:
                flight.caller = None  # its result will be dropped
        worker.pending.clear()
        worker.held.clear()
        for line in self.waiting.values():
            if worker in line:
                line.remove(worker)
        for key, owner in list(self.owners.items()):
            if owner is worker:
                del self.owners[key]
                self.reserved[key] = (worker, self.now + GRACE)

    def _disconnect(self, worker: Worker) -> None:
        """The socket is gone: tell the router, then the worker's own core."""
        self._model_disconnect(worker)
        self.closed.add(worker.conn)
        self._perform(self.router.close(worker.conn))
        (lost,) = worker.core.receive(None)
        assert isinstance(lost, ev.ConnectionLost)
        assert {i for i, _ in lost.calls} == worker.lost_calls, (lost, worker.lost_calls)
        assert {i for i, _ in lost.invocations} - worker.garbage == worker.running, lost

    # --- rules: connections ------------------------------------------------------------------

    @precondition(lambda self: len(self._live()) < 4)
    @rule(
        functions=st.lists(FUNCTIONS, max_size=2, unique=True),
        mode=REGISTER_MODES,
        reattach=st.none() | st.tuples(PICK, st.booleans()),
        changes=st.lists(st.tuples(st.booleans(), FUNCTIONS), max_size=2),
        wait_for_grace=st.booleans(),
    )
    def connect(
        self,
        functions: list[str],
        mode: str,
        reattach: tuple[int, bool] | None,
        changes: list[tuple[bool, str]],
        wait_for_grace: bool,
    ) -> None:
        """A worker connects and sends its open sequence: `reattach` (naming an earlier
        worker, with its token or a wrong one), its `functions`, then `changes` (more
        (un)registrations, sent before `engine::workers::register` so they are held too),
        then the register call unless `mode` is "none"."""
        namespace = "shop" if mode == "shop" else None
        conn, actions = self.router.open()
        core = WorkerConnection(namespace=namespace, ids=lambda: self._mint("c0ffee00"))
        worker = Worker(len(self.workers), conn, core, namespace, self.now + GRACE)
        note(f"{worker} is connection {conn}")
        assert conn not in self.by_conn
        self.workers.append(worker)
        self.by_conn[conn] = worker
        self._perform(actions)
        assert worker.worker_id, "workerregistered must be the first frame"

        target: Worker | None = None
        retires = False
        previous: dict[str, str | None] = {}
        if reattach is not None and len(self.workers) > 1:
            pick, right_token = reattach
            target = self.workers[pick % (len(self.workers) - 1)]
            previous = {
                "previous_worker_id": target.worker_id,
                "previous_reattach_token": target.token if right_token else WRONG_TOKEN,
            }
            retires = right_token and target.live
            if retires or (right_token and any(w is target for w, _ in self.reserved.values())):
                worker.heir_of = target
        registry = Registry()
        for function_id in functions:
            registry.add(RegisterFunction(id=function_id, description=f"{function_id} on {conn}"))
        info = WorkerInfo(
            name=f"worker-{worker.label}", pid=1000 + worker.label, namespace=namespace
        )
        frames = core.open_sequence(registry, info, **previous)
        if mode == "none":
            frames = frames[:-1]  # an old SDK: no engine::workers::register at all
        if previous:
            assert target is not None
            if retires:
                self._model_disconnect(target)
            was_live = target.live
            self._perform(self.router.receive(conn, frames[0]))
            if retires:
                assert target.conn in self.closed
                assert target.conn not in self.router.tables.connections
            elif was_live:
                assert target.conn in self.router.tables.connections
            self._settle()
            frames = frames[1:]
        for function_id, frame in zip(functions, frames, strict=False):
            self._model_registration(worker, True, function_id)
            self._perform(self.router.receive(conn, frame))
        for register, function_id in changes:
            if register:
                frame = core.register(RegisterFunction(id=function_id))
            else:
                frame = core.unregister(UnregisterFunction(id=function_id))
            self._model_registration(worker, register, function_id)
            self._perform(self.router.receive(conn, frame))
        if mode != "none":
            self._model_fix_namespace(worker, namespace or "default")
            self._perform(self.router.receive(conn, frames[-1]))
        if wait_for_grace:
            self.now = max(self.now, worker.grace_deadline)
            self._tick()
        self._settle()

    @precondition(lambda self: self._has_live() and self._every(3))
    @rule(pick=PICK)
    def disconnect(self, pick: int) -> None:
        self._disconnect(self._pick_live(pick))
        self._settle()

    @precondition(_has_live)
    @rule(pick=PICK, function_id=FUNCTIONS, register=st.booleans())
    def registration(self, pick: int, function_id: str, register: bool) -> None:
        worker = self._pick_live(pick)
        if register:
            frame = worker.core.register(RegisterFunction(id=function_id))
        else:
            frame = worker.core.unregister(UnregisterFunction(id=function_id))
        self._model_registration(worker, register, function_id)
        self._perform(self.router.receive(worker.conn, frame))
        self._settle()

    @precondition(lambda self: self.reserved or any(w.namespace is None for w in self._live()))
    @rule(dt=st.sampled_from([0.0, 1.0, 3.0, 6.0]))
    def advance_clock(self, dt: float) -> None:
        self.now += dt
        self._tick()
        self._settle()

    @precondition(lambda self: self._has_live() and self._every(10))
    @rule()
    def shutdown(self) -> None:
        for invocation_id, flight in list(self.flights.items()):
            self._expect_end(invocation_id, flight, STOPPED)
        self.flights.clear()
        live = {w.conn for w in self._live()}
        actions = self.router.shutdown()
        closes = [a.conn for a in actions if isinstance(a, Close)]
        assert sorted(closes) == sorted(live)
        assert all(isinstance(a, Close) for a in actions[len(actions) - len(closes) :])
        self._perform(actions)
        assert not self._has_live()
        self._settle()

    # --- rules: calls ------------------------------------------------------------------------

    @precondition(_has_live)
    @rule(pick=PICK, choice=TARGET, payload=PAYLOADS)
    def call_sync(self, pick: int, choice: int, payload: object) -> None:
        worker = self._pick_live(pick)
        function_id = self._choose_target(worker.core_namespace or "default", choice)
        invocation_id, frame = worker.core.call(function_id, to_raw(payload))
        namespace = self._target_namespace(worker, function_id)
        callee = self._resolve(namespace, function_id)
        key = (worker.label, invocation_id)
        if callee == BUILTIN:
            self.expected_answers[key] = self._builtin_outcome(payload)
        elif isinstance(callee, Worker):
            self.flights[invocation_id] = Flight(function_id, worker, callee)
            worker.pending.add(invocation_id)
        else:
            self.expected_answers[key] = self._not_found(function_id, namespace)
        self._perform(self.router.receive(worker.conn, frame))
        if isinstance(callee, Worker):
            expected_data = self._with_caller(payload, worker)
            self._take_dispatch(callee, function_id, invocation_id, expected_data)
        self._settle()

    @precondition(_has_live)
    @rule(pick=PICK, choice=TARGET, payload=PAYLOADS)
    def call_void(self, pick: int, choice: int, payload: object) -> None:
        worker = self._pick_live(pick)
        function_id = self._choose_target(worker.core_namespace or "default", choice)
        frame = worker.core.call_void(function_id, to_raw(payload))
        callee = self._resolve(self._target_namespace(worker, function_id), function_id)
        self._perform(self.router.receive(worker.conn, frame))
        if isinstance(callee, Worker):
            expected_data = self._with_caller(payload, worker)
            invocation_id = self._take_dispatch(callee, function_id, None, expected_data)
            self.flights[invocation_id] = Flight(function_id, None, callee)
        self._settle()

    @precondition(_has_live)
    @rule(choice=TARGET, payload=PAYLOADS)
    def engine_calls(self, choice: int, payload: object) -> None:
        function_id = self._choose_target("default", choice)
        callee = self._resolve("default", function_id)
        invocation_id, actions = self.router.call(function_id, to_raw(payload))
        if callee == BUILTIN:
            self.expected_completions[invocation_id] = self._builtin_outcome(payload)
        elif isinstance(callee, Worker):
            self.flights[invocation_id] = Flight(function_id, ENGINE, callee)
        else:
            self.expected_completions[invocation_id] = self._not_found(function_id, "default")
        self._perform(actions)
        if isinstance(callee, Worker):
            self._take_dispatch(callee, function_id, invocation_id, payload)
        self._settle()

    def _engine_waits(self) -> bool:
        return any(f.caller == ENGINE for f in self.flights.values())

    @precondition(_engine_waits)
    @rule(pick=PICK)
    def engine_abandons(self, pick: int) -> None:
        waiting = sorted(i for i, f in self.flights.items() if f.caller == ENGINE)
        invocation_id = waiting[pick % len(waiting)]
        self.router.abandon(invocation_id)
        self.flights[invocation_id].caller = None
        self._settle()

    def _has_flights(self) -> bool:
        return bool(self.flights)

    @precondition(_has_flights)
    @rule(
        pick=PICK,
        how=st.sampled_from(["complete", "fail", "malformed"]),
        result=RESULTS,
        error=ERRORS,
    )
    def callee_answers(self, pick: int, how: str, result: object, error: ErrorBody) -> None:
        invocation_id = sorted(self.flights)[pick % len(self.flights)]
        flight = self.flights.pop(invocation_id)
        callee = flight.callee
        assert callee.live
        callee.running.discard(invocation_id)
        frame: bytes
        if how == "complete":
            frame = callee.core.complete(invocation_id, None if result is None else to_raw(result))
            expected = ok(result)
        elif how == "fail":
            frame = callee.core.fail(invocation_id, error)
            expected = Expect("error", error=error)
        else:  # a result frame that names the invocation but cannot be decoded
            frame = (
                b'{"type":"invocationresult","invocation_id":"'
                + invocation_id.encode()
                + b'","function_id":7}'
            )
            callee.garbage.add(invocation_id)
            expected = failed(MALFORMED_FRAME)
        self._expect_end(invocation_id, flight, expected)
        self._perform(self.router.receive(callee.conn, frame))
        self._settle()

    def _has_ended(self) -> bool:
        return bool(self.ended) and self._has_live()

    @precondition(_has_ended)
    @rule(pick=PICK, which=PICK)
    def stale_answer(self, pick: int, which: int) -> None:
        """A result for an invocation that already ended (or another worker's) is dropped."""
        worker = self._pick_live(pick)
        invocation_id, function_id = self.ended[which % len(self.ended)]
        frame = encode_frame(
            InvocationResult(invocation_id=invocation_id, function_id=function_id, result=Raw(b"1"))
        )
        self._perform(self.router.receive(worker.conn, frame))
        self._settle()

    @precondition(lambda self: len(self.flights) >= 2 and self._every(4))
    @rule()
    def drain(self) -> None:
        """Every callee answers everything: then no live worker (or engine) waits any more."""
        for invocation_id in sorted(self.flights):
            flight = self.flights.pop(invocation_id)
            frame = flight.callee.core.complete(invocation_id, Raw(b'"drained"'))
            flight.callee.running.discard(invocation_id)
            self._expect_end(invocation_id, flight, ok("drained"))
            self._perform(self.router.receive(flight.callee.conn, frame))
            self._settle()
        assert not self.router.tables.invocations
        for worker in self._live():
            assert not worker.core.pending_calls, (worker, dict(worker.core.pending_calls))

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def nothing_left_unsettled(self) -> None:
        self._settle()
        self.steps += 1

    @invariant()
    def tables_are_consistent(self) -> None:
        tables = self.router.tables
        live = self._live()
        assert set(tables.connections) == {w.conn for w in live}
        assert not set(tables.connections) & self.closed
        for function in tables.functions.values():
            assert function.owner is None or function.owner in tables.connections, function
        for invocation in tables.invocations.values():
            assert invocation.callee in tables.connections, invocation
            assert invocation.caller in (None, INTERNAL) or invocation.caller in tables.connections
        owned = {k: f.owner for k, f in tables.functions.items() if f.owner is not None}
        assert owned == {k: w.conn for k, w in self.owners.items()}
        assert set(tables.invocations) == set(self.flights)
        for invocation_id, flight in self.flights.items():
            invocation = tables.invocations[invocation_id]
            assert invocation.callee == flight.callee.conn
            caller = flight.caller
            wanted = caller.conn if isinstance(caller, Worker) else INTERNAL if caller else None
            assert invocation.caller == wanted, (invocation, flight)
        for worker in live:
            assert set(worker.core.pending_calls) == worker.pending
            assert set(worker.core.pending_calls) <= set(tables.invocations) | worker.answered
            executing = {i for i, f in self.flights.items() if f.callee is worker}
            assert set(worker.core.in_flight) - worker.garbage == worker.running == executing
            assert tables.connections[worker.conn].namespace == worker.namespace

    @invariant()
    def nobody_left_means_nothing_left(self) -> None:
        if self._has_live():
            return
        tables = self.router.tables
        assert not tables.invocations
        assert all(f.owner is None for f in tables.functions.values())
        assert all(b.owner is None for b in tables.bindings.values())
        assert not tables.connections


RouterMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestRouterMachine = RouterMachine.TestCase
