"""What `PairMachine` (`test_pair_machine.py`) draws, and the two cores it wires together.

The strategies for the frames, ids and worker infos the rules send, and `PairHarness`: a
`WorkerConnection` and an `EngineConnection` back to back, the small model of what each
side should be tracking, and the plumbing every rule uses: `to_engine` and `to_worker`
feed one side's frames to the other at once, `_open_sequence` sends the worker's open
sequence and checks what the engine makes of it, `_new_pair` starts a fresh pair (the
first one, and each reconnect). It has no rules: `pair_calls.PairCalls` and the machine
itself add them.
"""

from __future__ import annotations

import uuid

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine
from msgspec import UNSET, Raw

from anyiii._protocol import events as ev
from anyiii._protocol.codes import REGISTER_WORKER
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import (
    ErrorBody,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    VoidAction,
    decode_value,
    present,
    to_raw,
)
from anyiii._protocol.ids import InvocationIds
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.state import State
from anyiii._protocol.worker import WorkerConnection
from strategies import EXACT_OBJECTS

# --- strategies -----------------------------------------------------------------------------

maybe_raw = st.none() | EXACT_OBJECTS.map(to_raw) | st.just(None).map(to_raw)  # last: JSON null
function_ids = st.sampled_from(["greet", "math::add", "orders::create", "engine::functions::list"])
type_ids = st.sampled_from(["webhook", "queue", "mail"])
trigger_ids = st.sampled_from(
    [str(uuid.UUID(int=n, version=4)) for n in (0x1111, 0x2222, 0x3333, 0x4444)]
)
texts = st.none() | st.text(max_size=8)
namespaces = st.none() | st.sampled_from(["shop", "infra"])
traceparents = st.none() | st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
error_bodies = st.builds(
    ErrorBody,
    code=st.sampled_from(["invocation_failed", "function_not_found", "boom", ""]),
    message=st.text(max_size=10),
    stacktrace=texts,
)

register_functions = st.builds(
    RegisterFunction,
    id=function_ids,
    description=texts,
    request_format=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
    metadata=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
)
register_trigger_types = st.builds(
    RegisterTriggerType,
    id=type_ids,
    description=st.sampled_from(["Webhooks", "d"]),
    trigger_request_format=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
    namespace=namespaces,
)
register_triggers = st.builds(
    RegisterTrigger,
    id=trigger_ids,
    trigger_type=type_ids | st.just("http"),
    function_id=function_ids,
    config=EXACT_OBJECTS.map(to_raw) | st.just(to_raw(None)),
    metadata=EXACT_OBJECTS.map(to_raw) | st.just(UNSET),
    namespace=namespaces,
    trigger_namespace=namespaces,
)
registrations = st.lists(
    register_functions | register_trigger_types | register_triggers, max_size=6
)
worker_infos = st.builds(
    WorkerInfo,
    name=st.text(min_size=1, max_size=10),
    version=st.just("0.1.0"),
    os=st.just("Linux 6.8.0 (x86_64)"),
    pid=st.integers(1, 99999),
    isolation=st.none() | st.just("docker"),
    namespace=namespaces,
    description=texts,
    telemetry=st.none() | st.just({"language": "en_US", "framework": "anyiii"}),
)


def expected_raw(value: Raw | None) -> Raw | None:
    """What the receiving side reports for an optional raw JSON value we sent."""
    return None if value is None else present(value)


class PairHarness(RuleBasedStateMachine):
    """A `WorkerConnection` and an `EngineConnection` talking to each other, and the model."""

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry()
        self.generation = 0
        self.worker_namespace: str | None = None
        self._forced_ids: list[str] = []
        self._default_ids = InvocationIds()
        self._dispatch_counter = 0
        self._bad_counter = 0

    # --- plumbing ---------------------------------------------------------------------------

    def _next_id(self) -> str:
        return self._forced_ids.pop() if self._forced_ids else self._default_ids()

    def _new_pair(self, namespace: str | None) -> None:
        self.generation += 1
        self.worker_namespace = namespace
        self.worker = WorkerConnection(namespace=namespace, ids=self._next_id)
        self.engine = EngineConnection(
            str(uuid.UUID(int=0xA000 + self.generation, version=4)),
            str(uuid.UUID(int=0xB000 + self.generation, version=4)),
        )
        # Model: what each side should be tracking.
        self.calls: dict[str, str] = {}  # worker calls awaiting a result, as the worker sees
        self.forgotten: dict[str, str] = {}  # calls the worker gave up on; engine still awaits
        self.dispatches: dict[str, str] = {}  # engine dispatches awaiting the worker's answer
        self.bindings: dict[str, int] = {}  # forwarded bindings awaiting an answer (count)
        self.opened = False
        self.dropped = False
        self.bad_calls = 0  # calls with a non-UUID id: the engine counts each as a violation
        self.late_results = 0  # results the worker dropped because it had forgotten the call
        [registered] = self.worker.receive(self.engine.start())
        assert registered == ev.Registered(self.engine.worker_id, self.engine.reattach_token, ())
        assert self.worker.worker_id == self.engine.worker_id

    def to_engine(self, *frames: bytes) -> list[ev.Event]:
        out: list[ev.Event] = []
        for frame in frames:
            out.extend(self.engine.receive(frame))
        note(f"worker -> engine: {[f.decode() for f in frames]} => {out}")
        return out

    def to_worker(self, *frames: bytes) -> list[ev.Event]:
        out: list[ev.Event] = []
        for frame in frames:
            out.extend(self.worker.receive(frame))
        note(f"engine -> worker: {[f.decode() for f in frames]} => {out}")
        return out

    def _fresh_dispatch_id(self) -> str:
        self._dispatch_counter += 1
        return str(uuid.UUID(int=self._dispatch_counter, version=4))

    def _open_sequence(
        self,
        info: WorkerInfo,
        previous: tuple[str, str | None] | None = None,
    ) -> None:
        if previous is None:
            frames = self.worker.open_sequence(self.registry, info)
        else:
            frames = self.worker.open_sequence(
                self.registry,
                info,
                previous_worker_id=previous[0],
                previous_reattach_token=previous[1],
            )
        events = self.to_engine(*frames)
        expected: list[ev.Event] = []
        if previous is not None:
            expected.append(ev.ReattachRequested(*previous))
        expected.extend(ev.TriggerTypeRegistered(f) for f in self.registry.trigger_types)
        expected.extend(ev.FunctionRegistered(f) for f in self.registry.functions)
        expected.extend(ev.TriggerRegistered(f) for f in self.registry.triggers)
        assert events[:-1] == expected
        [register] = events[-1:]
        assert isinstance(register, ev.CallRequested)
        call = register.call
        assert call.function_id == REGISTER_WORKER
        assert call.action == VoidAction()
        assert call.invocation_id is None
        assert decode_value(call.data) == info.to_builtins()
        assert call.namespace is None  # Python sends no namespace on this call (spec §4.2)
        self.opened = True

    def _worker_can_send_new(self) -> bool:
        return self.opened and self.worker.state is State.OPEN

    def _engine_can_send_new(self) -> bool:
        # Rules are gated on the open sequence so that it runs first and most steps are spent
        # on a registered worker.
        return self.opened and not self.dropped and self.engine.state is State.OPEN
