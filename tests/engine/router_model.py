"""The model under `RouterMachine` (`test_router_machine.py`): state, wiring and bookkeeping.

`RouterModel` holds the router under test, its simulated workers (`Worker`: a real
`WorkerConnection` core each) and the model: who owns which function, which ids are
reserved for a departed owner or waited for by a refused one, which invocations are in
flight (`Flight`), and what each step must produce (`Expect`). Its methods carry out the
router's actions as the engine's I/O layer would (`_perform`), check everything a worker
receives against what was expected (`_observe`), and keep the model in step with
registrations, namespaces, the clock and disconnects. It has no rules: those, and the
invariants, are the machine's, in the test file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from hypothesis import note
from hypothesis.stateful import RuleBasedStateMachine
from msgspec import Raw

from anyiii._engine.actions import Action, Close, Completed, Send
from anyiii._engine.router import Router
from anyiii._protocol import events as ev
from anyiii._protocol.codes import (
    FUNCTION_NAMESPACE_CONFLICT,
    FUNCTION_NOT_FOUND,
    INVOCATION_STOPPED,
)
from anyiii._protocol.frames import ErrorBody, decode_value
from anyiii._protocol.worker import WorkerConnection
from strategies import uuid_text

GRACE: Final = 5.0
POOL: Final = ("svc::a", "svc::b", "svc::c")
BUILTIN: Final = "engine::functions::list"
ENGINE: Final = "engine"
"""The caller of an invocation the engine started itself (`router.call`)."""


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


class RouterModel(RuleBasedStateMachine):
    """The router, its workers and the model of both; `RouterMachine` adds the rules."""

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
