"""HTTP-invoked functions in the router: registering them, calling them, their answers.

A function registered with an `invocation` object is kept in the function table like any
other, owned by the connection that registered it (so it goes when that connection
unregisters it or leaves, as in the real engine), but it carries an `HttpTarget`: a call to
it is answered by the engine's own HTTP request (`http_targets.py` decides what to send
and what the answer means) instead of by a dispatch to that worker. The router stays
sans-IO: a call becomes an `HttpCall` action, and the I/O layer hands the answer back to
`answered`. The invocation waits in the invocation table meanwhile, so a caller that
leaves, or the engine stopping, ends it the way it ends any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from msgspec import Raw

from .._protocol.codes import CHANNEL_SEND_FAILED
from .._protocol.frames import ErrorBody, RegisterFunction, present
from .actions import Action, HttpCall, answer
from .http_targets import (
    HttpFunctionSettings,
    HttpResponse,
    HttpTarget,
    build_request,
    parse_target,
    read_response,
)
from .tables import Invocation, Tables

__all__ = ["HttpFunctions"]


class HttpFunctions:
    """The router's HTTP-invoked functions (see the module docstring).

    `environ` is where auth secrets are looked up (the process environment, normally);
    `wall_clock_ms` stamps requests; `new_id` makes their `x-iii-Invocation-ID`.
    """

    def __init__(
        self,
        tables: Tables,
        settings: HttpFunctionSettings,
        environ: Mapping[str, str],
        wall_clock_ms: Callable[[], int],
        new_id: Callable[[], str],
    ) -> None:
        self._tables = tables
        self._settings = settings
        self._environ = environ
        self._wall_clock_ms = wall_clock_ms
        self._new_id = new_id

    def target(self, frame: RegisterFunction) -> HttpTarget | ErrorBody | None:
        """What a registration's `invocation` asks for: None for a worker-hosted function,
        an `ErrorBody` saying why an HTTP one must be refused."""
        invocation = present(frame.invocation)
        if invocation is None:
            return None
        return parse_target(invocation, self._settings, self._environ)

    def call(
        self,
        function_id: str,
        target: HttpTarget,
        invocation_id: str | None,
        data: Raw,
        caller: int | None,
        out: list[Action],
    ) -> None:
        """Start one call: record the invocation and ask for its request to be sent."""
        tables = self._tables
        call_id = invocation_id if invocation_id is not None else self._new_id()
        if call_id in tables.invocations:
            reason = f"invocation id {call_id} is already in flight"
            answer(tables, caller, invocation_id, None, ErrorBody(CHANNEL_SEND_FAILED, reason), out)
            return
        request = build_request(
            target, function_id, bytes(data), self._wall_clock_ms() // 1000, self._new_id()
        )
        if isinstance(request, ErrorBody):
            answer(tables, caller, invocation_id, None, request, out)
            return
        tables.add_invocation(call_id, Invocation(function_id, caller, None))
        out.append(HttpCall(call_id, request))

    def answered(
        self, invocation_id: str, outcome: HttpResponse | ErrorBody, out: list[Action]
    ) -> None:
        """A request ended: answer whoever still waits for its call."""
        invocation = self._tables.pop_invocation(invocation_id)
        if invocation is None:  # stopped meanwhile (the engine is stopping)
            return
        ended = (None, outcome) if isinstance(outcome, ErrorBody) else read_response(outcome)
        answer(self._tables, invocation.caller, invocation_id, *ended, out)
