"""Runs the in-engine services for the router: their functions, effects and timers (sans-IO).

The router hands a call of a service-owned function id to `ServiceHost.run`, which runs it
and turns its `Reply` into actions: the answer to the caller (after a `Persist` when the
reply has changes) and the reply's effects. Calls a service asks for (`Invoke`) are routed
like any engine-originated call; those whose outcome matters (a condition to check first,
an `on_done` to continue with) get an invocation id of their own and a continuation, run
when the router reports the call `completed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeAlias

from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import ErrorBody, InvokeFunction
from .actions import Action, Callback, Persist, answer
from .providers import TriggerProvider
from .service import (
    Commit,
    Effect,
    Forward,
    Invoke,
    Notify,
    OnDone,
    Reply,
    Service,
    ServiceContext,
    ServiceFunction,
)
from .tables import INTERNAL, Tables

__all__ = [
    "Continuation",
    "EngineContext",
    "RouteCall",
    "ServiceFactory",
    "ServiceHost",
    "is_literal_false",
]

logger = logging.getLogger("anyiii.engine")

ServiceFactory: TypeAlias = Callable[[ServiceContext], Service]
"""Makes a service bound to the engine it runs in."""

RouteCall: TypeAlias = Callable[[InvokeFunction, "int | None", "Raw | None", list[Action]], None]
"""The router's way to run a call: (frame, who waits for it, metadata, actions)."""

Continuation: TypeAlias = Callable[["Raw | None", "ErrorBody | None", list[Action]], None]
"""What to do when one of the engine's own tracked calls ends."""

_FALSE: Final = b"false"


def is_literal_false(result: Raw | None) -> bool:
    """Whether a condition function answered exactly `false` (the only answer that skips)."""
    return result is not None and bytes(result).strip() == _FALSE


@dataclass(frozen=True, slots=True)
class EngineContext:
    """The `ServiceContext` of a router: its clocks, its ids and its function table."""

    now: Callable[[], float]
    wall_clock_ms: Callable[[], int]
    new_id: Callable[[], str]
    tables: Tables

    def has_function(self, namespace: str, function_id: str) -> bool:
        """Whether the function is registered (worker-hosted or in-engine)."""
        return (namespace, function_id) in self.tables.functions


class ServiceHost:
    """The services of one engine (see the module docstring)."""

    def __init__(
        self,
        services: Sequence[Service],
        *,
        tables: Tables,
        route: RouteCall,
        context: ServiceContext,
    ) -> None:
        self.services = tuple(services)
        self._tables = tables
        self._route = route
        self._context = context
        self._functions: dict[str, ServiceFunction] = {}
        for service in self.services:
            for function_id, function in service.functions.items():
                if function_id in self._functions:
                    raise ValueError(f"two services provide {function_id}")
                self._functions[function_id] = function
        self._continuations: dict[str, Continuation] = {}

    # --- what the services provide -------------------------------------------------------------

    def descriptions(self) -> dict[str, str]:
        """Every service function id and its description."""
        return {function_id: f.description for function_id, f in self._functions.items()}

    def trigger_types(self) -> Iterator[tuple[str, TriggerProvider]]:
        """Every trigger type the services provide."""
        for service in self.services:
            yield from service.trigger_types.items()

    def service(self, name: str) -> Service | None:
        """The service called `name`, if it runs."""
        return next((s for s in self.services if s.name == name), None)

    @property
    def schema(self) -> list[str]:
        """Every service's tables."""
        return [statement for service in self.services for statement in service.schema]

    @property
    def restore_queries(self) -> list[str]:
        """Every service's restore queries, in service order."""
        return [query for service in self.services for query in service.restore_queries]

    def restore(self, rows: Sequence[Sequence[tuple[Any, ...]]]) -> None:
        """Hand each service the rows of its own restore queries."""
        at = 0
        for service in self.services:
            count = len(service.restore_queries)
            service.restore(rows[at : at + count])
            at += count

    # --- calls ---------------------------------------------------------------------------------

    def owns(self, function_id: str) -> bool:
        """Whether a service runs this function id."""
        return function_id in self._functions

    def run(
        self,
        function_id: str,
        data: Raw,
        caller: int | None,
        invocation_id: str | None,
        out: list[Action],
    ) -> None:
        """Run a service function and answer whoever waits for it."""
        self._finish(self._functions[function_id].run(data), caller, invocation_id, out)

    def _finish(
        self, reply: Reply, caller: int | None, invocation_id: str | None, out: list[Action]
    ) -> None:
        """Answer a service function's caller with `reply` and carry out the rest of it."""
        then: list[Action] = []
        if isinstance(reply.result, Forward) and reply.result.then is not None:
            self._forward_and_continue(reply.result, caller, invocation_id, then)
        elif isinstance(reply.result, Forward):
            forward = reply.result
            frame = InvokeFunction(
                function_id=forward.function_id,
                invocation_id=invocation_id,
                data=forward.data,
                namespace=forward.namespace,
            )
            self._route(frame, caller, None, then)
        else:
            answer(self._tables, caller, invocation_id, reply.result, reply.error, then)
        self.apply(reply.effects, then)
        if reply.changes:
            out.append(Persist(reply.changes, then))
        else:
            out.extend(then)

    def _forward_and_continue(
        self, forward: Forward, caller: int | None, invocation_id: str | None, out: list[Action]
    ) -> None:
        convert = forward.then
        assert convert is not None

        def finish(result: Raw | None, error: ErrorBody | None, out: list[Action]) -> None:
            self._finish(convert(result, error), caller, invocation_id, out)

        self.call(forward.function_id, forward.data, finish, out, namespace=forward.namespace)

    def apply(self, effects: Iterable[Effect], out: list[Action]) -> None:
        """Carry out effects: route their calls, queue their commits."""
        for effect in effects:
            if isinstance(effect, Notify):
                out.append(Callback(effect.run))
            elif isinstance(effect, Commit):
                then: list[Action] = []
                self.apply(effect.effects, then)
                out.append(Persist(effect.changes, then))
            elif effect.condition_function_id is not None:
                self._check_condition(effect, out)
            elif effect.on_done is None:
                frame = InvokeFunction(
                    function_id=effect.function_id,
                    data=effect.data,
                    namespace=effect.namespace,
                )
                self._route(frame, None, effect.metadata, out)
            else:
                self.call(
                    effect.function_id,
                    effect.data,
                    self._continue_with(effect.on_done),
                    out,
                    namespace=effect.namespace,
                    metadata=effect.metadata,
                )

    def _continue_with(self, on_done: OnDone) -> Continuation:
        def continue_with(result: Raw | None, error: ErrorBody | None, out: list[Action]) -> None:
            self.apply(on_done(result, error), out)

        return continue_with

    def _check_condition(self, invoke: Invoke, out: list[Action]) -> None:
        condition = invoke.condition_function_id
        assert condition is not None
        unconditional = replace(invoke, condition_function_id=None)

        def decide(result: Raw | None, error: ErrorBody | None, out: list[Action]) -> None:
            if error is not None:
                logger.warning(
                    "condition %s for %s failed (%s: %s); not calling it",
                    condition,
                    invoke.function_id,
                    error.code,
                    error.message,
                )
                if invoke.on_done is not None:
                    self.apply(invoke.on_done(None, error), out)
            elif is_literal_false(result):
                if invoke.on_done is not None:
                    self.apply(invoke.on_done(None, None), out)
            else:
                self.apply((unconditional,), out)

        # The condition is resolved in the target's namespace (as the real engine does).
        self.call(condition, invoke.data, decide, out, namespace=invoke.namespace)

    def call(
        self,
        function_id: str,
        data: Raw,
        then: Continuation,
        out: list[Action],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        metadata: Raw | None = None,
    ) -> None:
        """Call a function on the engine's behalf and continue with `then` when it ends."""
        invocation_id = self._context.new_id()
        self._continuations[invocation_id] = then
        frame = InvokeFunction(
            function_id=function_id, invocation_id=invocation_id, data=data, namespace=namespace
        )
        self._route(frame, INTERNAL, metadata, out)

    def completed(
        self, invocation_id: str, result: Raw | None, error: ErrorBody | None
    ) -> list[Action] | None:
        """One of the engine's own calls ended; None when it was not one of ours."""
        then = self._continuations.pop(invocation_id, None)
        if then is None:
            return None
        out: list[Action] = []
        then(result, error, out)
        return out

    def forget_calls(self) -> None:
        """The engine stops: nobody continues (what is persisted is retried on restart)."""
        self._continuations.clear()

    # --- timers --------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest deadline of any service."""
        deadlines = [d for s in self.services if (d := s.next_deadline()) is not None]
        return min(deadlines, default=None)

    def tick(self, now: float, out: list[Action]) -> None:
        """Let every service whose deadline has come do its work."""
        for service in self.services:
            deadline = service.next_deadline()
            if deadline is not None and deadline <= now:
                self.apply(service.tick(), out)
