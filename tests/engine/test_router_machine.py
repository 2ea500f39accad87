"""The engine's `Router` against a model: a Hypothesis rule-based state machine.

Every simulated worker is a real `WorkerConnection` core (worker role) wired to the router
the way the engine's I/O layer wires a socket: `Router.open()` gives the connection id,
every `Send` action is fed to that worker's core with `receive()`, a `Close` action means
the router wants the socket gone (so the machine calls `router.close()` and
`core.receive(None)`, as the I/O layer would), and `Completed` ends a call the engine made
itself (`router.call()`). The clock is fake and only moves when a rule says so.

The model is a handful of dicts and sets on the machine, kept by `router_model.RouterModel`
(which this machine extends with its rules and invariants): who owns which function (the
router refuses a second live owner with `FUNCTION_NAMESPACE_CONFLICT` and keeps the first;
the refused one waits and gets the id when it frees up; a departed owner's ids stay
reserved for it, or for a connection that reattaches as it, for `GRACE` seconds),
which registrations wait for the connection's namespace, which sync calls each worker
waits on, and which invocations each worker is executing. Before a rule acts it writes down
what must come out (answers, completions, dispatches, rejections); everything that comes
out must have been expected, exactly once, and everything expected must come out.
"""

from __future__ import annotations

from typing import Final

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule
from msgspec import Raw
from router_model import (
    BUILTIN,
    ENGINE,
    GRACE,
    POOL,
    STOPPED,
    Expect,
    Flight,
    RouterModel,
    Worker,
    failed,
    ok,
)

from anyiii._engine.actions import Close
from anyiii._engine.tables import INTERNAL
from anyiii._protocol.codes import MALFORMED_FRAME
from anyiii._protocol.frames import (
    ErrorBody,
    InvocationResult,
    RegisterFunction,
    UnregisterFunction,
    encode_frame,
    to_raw,
)
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.worker import WorkerConnection
from strategies import error_bodies

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


class RouterMachine(RouterModel):
    """The rules and invariants; `RouterModel` is the state they act on and check."""

    def _has_live(self) -> bool:
        return any(w.live for w in self.workers)

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
