"""A router with a fake clock and simulated workers: the harness of the router tests.

Each test wires real worker-role protocol cores (`WorkerConnection`) to one router with a
fake clock, the way the engine's I/O layer does: `Send` actions are fed to the addressed
worker's core, `Close` and `Completed` actions are recorded. `Engine` is that router and
its I/O side, `Peer` one simulated worker; the `engine` fixture (`conftest.py`) gives each
test a fresh `Engine()`. Used by the `test_router*.py` files and by other router-level
tests (HTTP routing, ownership, registration limits, parked bindings, cron).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from msgspec import Raw

from anyiii._engine.actions import Action, Close, Completed, Send
from anyiii._engine.router import Router
from anyiii._protocol import events as ev
from anyiii._protocol.codes import INVOCATION_STOPPED
from anyiii._protocol.frames import (
    ErrorBody,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    decode_frame,
    decode_value,
    to_raw,
)
from anyiii._protocol.registry import Registry, WorkerInfo
from anyiii._protocol.worker import WorkerConnection

E = TypeVar("E", bound=ev.Event)

STOPPED = ErrorBody(INVOCATION_STOPPED, "Invocation stopped")


@dataclass(eq=False)
class Peer:
    """One simulated worker: its protocol core and everything the router sent it."""

    conn: int
    core: WorkerConnection
    events: list[ev.Event] = field(default_factory=list)
    frames: list[object] = field(default_factory=list)

    @property
    def worker_id(self) -> str:
        assert self.core.worker_id is not None
        return self.core.worker_id

    def take(self, kind: type[E]) -> list[E]:
        """Remove and return the events of one kind received so far."""
        taken = [e for e in self.events if isinstance(e, kind)]
        self.events = [e for e in self.events if not isinstance(e, kind)]
        return taken

    def one(self, kind: type[E]) -> E:
        """The single event of `kind` received so far (removed from `events`)."""
        taken = self.take(kind)
        assert len(taken) == 1, (kind, taken, self.events)
        return taken[0]


class Engine:
    """A router with a fake clock, and the I/O layer's side of every connection."""

    def __init__(self, **options: Any) -> None:
        self.now = 0.0
        self.router = Router(
            clock=lambda: self.now, wall_clock_ms=lambda: 0, namespace_grace=5.0, **options
        )
        self.peers: dict[int, Peer] = {}
        self.completed: list[Completed] = []
        self.closes: list[Close] = []

    def perform(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                assert action.conn in self.router.tables.connections, f"sent to a closed {action}"
                peer = self.peers[action.conn]
                peer.frames.append(decode_frame(action.data))
                peer.events.extend(peer.core.receive(action.data))
            elif isinstance(action, Close):
                self.closes.append(action)
            elif isinstance(action, Completed):
                # As the I/O layer does: a call a service made continues in the router.
                follow_up = self.router.completed(action.invocation_id, action.result, action.error)
                if follow_up:
                    self.perform(follow_up)
                else:
                    self.completed.append(action)
            else:  # Persist: this fake storage commits at once
                self.perform(action.then)

    def open(self, *, namespace: str | None = None, ids: Callable[[], str] | None = None) -> Peer:
        """A worker connects; it sends nothing yet."""
        conn, actions = self.router.open()
        peer = Peer(conn, WorkerConnection(namespace=namespace, ids=ids))
        self.peers[conn] = peer
        self.perform(actions)
        peer.one(ev.Registered)
        return peer

    def connect(
        self,
        *functions: str,
        namespace: str | None = None,
        name: str = "worker",
        register: bool = True,
        types: Iterable[str] = (),
        bindings: Iterable[RegisterTrigger] = (),
        previous: Peer | None = None,
        token: str | None = None,
    ) -> Peer:
        """A worker connects and sends its open sequence (Python SDK order, spec §4.2)."""
        peer = self.open(namespace=namespace)
        registry = Registry()
        for type_id in types:
            registry.add(RegisterTriggerType(id=type_id, description=f"{type_id} events"))
        for function_id in functions:
            registry.add(RegisterFunction(id=function_id, description=f"{function_id} here"))
        for binding in bindings:
            registry.add(binding)
        reattach: dict[str, Any] = {}
        if previous is not None:
            reattach = {
                "previous_worker_id": previous.worker_id,
                "previous_reattach_token": token or previous.core.reattach_token,
            }
        info = WorkerInfo(name=name, pid=4242, namespace=namespace)
        frames = peer.core.open_sequence(registry, info, **reattach)
        for frame in frames if register else frames[:-1]:
            self.send(peer, frame)
        return peer

    def send(self, peer: Peer, frame: bytes | str) -> None:
        self.perform(self.router.receive(peer.conn, frame))

    def call(self, peer: Peer, function_id: str, payload: object = None, **options: Any) -> str:
        invocation_id, frame = peer.core.call(function_id, to_raw(payload), **options)
        self.send(peer, frame)
        return invocation_id

    def disconnect(self, peer: Peer) -> None:
        self.perform(self.router.close(peer.conn))
        peer.core.receive(None)

    def tick(self, now: float) -> None:
        self.now = now
        self.perform(self.router.tick())


def value(result: Raw | None) -> object:
    return None if result is None else decode_value(result)


def provider_of(engine: Engine, trigger_id: str) -> tuple[str, str] | None:
    """Where a binding is served: (namespace, trigger type), or None while parked."""
    return engine.router.tables.bindings[trigger_id].provider


def webhook_binding(trigger_id: str = "t-1", function_id: str = "svc::a") -> RegisterTrigger:
    return RegisterTrigger(
        id=trigger_id,
        trigger_type="webhook",
        function_id=function_id,
        config=to_raw({"path": "/hook"}),
        metadata=to_raw({"tag": 1}),
    )


def call_value(engine: Engine, peer: Peer, function_id: str, payload: object) -> Any:
    """Call `function_id` from `peer` and return the decoded result (the call must succeed)."""
    invocation_id = engine.call(peer, function_id, payload)
    completed = peer.one(ev.CallCompleted)
    assert completed.invocation_id == invocation_id
    return value(completed.result)
