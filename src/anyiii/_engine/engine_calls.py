"""The router's timers and the calls the engine makes on its own behalf.

The I/O layer asks the router when it next has work (`next_deadline`), runs it (`tick`:
namespace grace, provider answers, reattach grace, discovery, services), starts the
engine's own calls (`call`) and reports how they and the HTTP calls of HTTP-invoked
functions ended. It is a part of `Router` (a base class of it), kept apart so the router's
module stays about connections and routing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE
from .._protocol.frames import ErrorBody, InvokeFunction
from .actions import Action
from .discovery import Discovery, Fire
from .hosting import ServiceHost
from .http_routing import HttpFunctions
from .http_targets import HttpResponse
from .listings import bounded_array
from .ownership import Ownership
from .registration_limits import RegistrationLimits
from .shapes import function_summaries
from .tables import INTERNAL, Connection, Tables
from .triggers import Triggers

__all__ = ["EngineCalls"]


class EngineCalls:
    """The timer and engine-call side of `Router` (see the module docstring)."""

    tables: Tables
    services: ServiceHost
    timers_changed: bool
    _clock: Callable[[], float]
    _new_id: Callable[[], str]
    _triggers: Triggers
    _discovery: Discovery
    _ownership: Ownership
    _limits: RegistrationLimits
    _http: HttpFunctions
    _service_deadline: float | None

    if TYPE_CHECKING:  # provided by `Router` and `RegistrationHandling`

        def _route_call(
            self,
            conn: Connection | None,
            call: InvokeFunction,
            caller: int | None,
            metadata: Raw | None,
            out: list[Action],
        ) -> None: ...

        def _fix_namespace(self, conn: Connection, namespace: str, out: list[Action]) -> None: ...

        def _fire(self, fires: list[Fire], out: list[Action]) -> None: ...

        def _end_reservations(self, now: float, out: list[Action]) -> None: ...

    # --- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `tick()` next has work to do (clock seconds), or None."""
        deadlines = [
            c.grace_deadline for c in self.tables.connections.values() if c.namespace is None
        ]
        for deadline in (
            self._triggers.next_deadline(),
            self._ownership.next_deadline(),
            self._discovery.next_deadline(),
            self.services.next_deadline(),
        ):
            if deadline is not None:
                deadlines.append(deadline)
        return min(deadlines, default=None)

    def tick(self) -> list[Action]:
        """Run whatever timers are due: namespace grace, provider answers, reservations,
        discovery, services."""
        now = self._clock()
        out: list[Action] = []
        for conn in self.tables.live_connections():
            if conn.namespace is None and conn.grace_deadline <= now:
                self._fix_namespace(conn, DEFAULT_NAMESPACE, out)
        self._triggers.expire(now, out)
        self._end_reservations(now, out)
        if self._discovery.due(now):
            fires = self._discovery.announce_functions(
                frozenset(self.tables.functions),
                lambda: bounded_array(
                    function_summaries(self.tables, everything=True),
                    self._limits.max_listing_bytes,
                )[0],
            )
            self._fire(fires, out)
        self.services.tick(now, out)
        return out

    # --- engine-originated calls -----------------------------------------------------------

    def call(
        self,
        function_id: str,
        data: Raw,
        *,
        metadata: Raw | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> tuple[str, list[Action]]:
        """Invoke a function on the engine's own behalf; a `Completed` action ends it."""
        invocation_id = self._new_id()
        out: list[Action] = []
        frame = InvokeFunction(
            function_id=function_id,
            invocation_id=invocation_id,
            data=data,
            traceparent=traceparent,
            baggage=baggage,
            namespace=namespace,
        )
        self._route_call(None, frame, INTERNAL, metadata, out)
        return invocation_id, out

    def completed(
        self, invocation_id: str, result: Raw | None, error: ErrorBody | None
    ) -> list[Action]:
        """One of the engine's own calls that no waiter of the I/O layer awaited has ended:
        the service that made it continues."""
        out = self.services.completed(invocation_id, result, error) or []
        self._watch_service_deadline()
        return out

    def _watch_service_deadline(self) -> None:
        """A service's timer may have moved earlier (a cron binding registered, a job's call
        ended): tell the I/O layer to re-arm, as `next_deadline()` may now be sooner."""
        deadline = self.services.next_deadline()
        if deadline is not None and deadline != self._service_deadline:
            self.timers_changed = True
        self._service_deadline = deadline

    def http_answered(self, invocation_id: str, outcome: HttpResponse | ErrorBody) -> list[Action]:
        """The request of an `HttpCall` ended: its answer, or why there is none."""
        out: list[Action] = []
        self._http.answered(invocation_id, outcome, out)
        return out

    def abandon(self, invocation_id: str) -> None:
        """The engine stopped waiting for one of its own calls (e.g. an HTTP timeout)."""
        invocation = self.tables.invocations.get(invocation_id)
        if invocation is not None and invocation.caller == INTERNAL:
            invocation.caller = None
