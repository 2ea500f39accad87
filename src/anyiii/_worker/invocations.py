"""Running the invocations a worker receives: admission, slots, context, answers, drain.

The runner decides and runs; it never touches the protocol core or the transport. The
session asks `admit()` (synchronous: a handler to run, or the error body to answer with at
once), starts `run()` in the task group `host()` holds for an admitted invocation, and passes the
function through which `run()` hands back the one answer the invocation gets. Because
admission is a plain function of the runner's state, its rules (not found, stopping, busy)
are tested without any connection.

Bounds (see docs/backpressure.md): `max_concurrency` handlers run at once; up to
`max_queued` more wait for a slot; an invocation beyond both is refused with
`worker_busy`, so the session's reader never waits and nothing queues without bound.
Plain handlers run in threads, at most `max_threads` at once.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from msgspec import Raw

from .._protocol import events as ev
from .._protocol.codes import (
    FUNCTION_NOT_FOUND,
    INVOCATION_CANCELLED,
    INVOCATION_FAILED,
    WORKER_BUSY,
    WORKER_STOPPING,
)
from .._protocol.frames import ErrorBody, to_raw
from .context import CallingWorker, Context, enter_context, leave_context, trace_context_of
from .handlers import Handler
from .slots import Slots
from .telemetry import Telemetry

__all__ = ["Answer", "InvocationRunner", "WorkerLimits", "error_body"]

logger = logging.getLogger("anyiii.worker")

Answer = Callable[[str, Raw | None, ErrorBody | None], None]
"""Sends an invocation's one answer: `answer(invocation_id, result, error)`."""


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """Bounds on what one worker takes on (see docs/backpressure.md).

    `max_concurrency` handlers run at once; up to `max_queued` more wait for a slot; an
    invocation beyond both is answered at once with the error `worker_busy`, so the reader
    never blocks and nothing queues without bound. `max_threads` bounds plain (non-async)
    user code running in threads. `invocation_timeout_ms` is the default wait for a call's
    result.
    """

    max_concurrency: int = 256
    max_queued: int = 4096
    max_threads: int = 40
    invocation_timeout_ms: int = 30_000


def error_body(exc: BaseException) -> ErrorBody:
    """The wire error for a handler exception, as the official SDKs send it.

    The code is `invocation_failed`, unless the exception carries its own in a string
    attribute `iii_error_code` (the function model's classified errors do).
    """
    stacktrace = "".join(traceback.format_exception(exc))
    code = getattr(exc, "iii_error_code", None)
    return ErrorBody(
        code if isinstance(code, str) and code else INVOCATION_FAILED,
        str(exc) or type(exc).__name__,
        stacktrace,
    )


class InvocationRunner:
    """Admits, runs and drains one worker's inbound invocations (see the module docstring).

    `handlers` is the worker's live handler table (function id → `Handler`); `worker` is
    what `get_context().worker` shows handlers; `threads` bounds plain user code; `refs`
    turns the channel refs in payloads into live channel ends.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        limits: WorkerLimits,
        *,
        worker: CallingWorker | None = None,
        telemetry: Telemetry | None = None,
        refs: Callable[[Raw, Any], Any] | None = None,
    ) -> None:
        self.worker = worker
        self._refs = refs
        """Makes channel refs in payloads live (`channels.channel_resolver`), if set."""
        self.threads = anyio.CapacityLimiter(limits.max_threads)
        self.running = 0
        """Admitted invocations not finished yet (running or waiting for a slot)."""
        self.rejected_busy = 0
        self.stopping = False
        self._handlers = handlers
        self._max_admitted = limits.max_concurrency + limits.max_queued
        self._slots = Slots(limits.max_concurrency)
        self._telemetry = telemetry
        self._idle = anyio.Event()
        self._idle.set()
        self._groups: set[anyio.CancelScope] = set()
        """The cancel scopes of the task groups invocations run in (one per connection)."""

    # --- admission (synchronous) --------------------------------------------------------------

    def admit(self, function_id: str) -> Handler | ErrorBody:
        """The handler to run for a new invocation of `function_id`, or the error to answer.

        An admitted invocation counts as running until its `run()` ends, so the caller must
        start `run()` for every handler this returns.
        """
        handler = self._handlers.get(function_id)
        if handler is None:
            return ErrorBody(FUNCTION_NOT_FOUND, f"Function '{function_id}' not found")
        if self.stopping:
            return ErrorBody(WORKER_STOPPING, "the worker is shutting down")
        if self.running >= self._max_admitted:
            self.rejected_busy += 1
            return ErrorBody(
                WORKER_BUSY, f"the worker is at its limit of {self.running} invocations"
            )
        self.running += 1
        if self.running == 1:  # was idle (its event set): busy from now on
            self._idle = anyio.Event()
        return handler

    # --- running ----------------------------------------------------------------------------

    async def host(
        self, *, task_status: anyio.abc.TaskStatus[anyio.abc.TaskGroup] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold a task group for a connection's invocations until cancelled.

        `drain()` cancels the invocations by cancelling these groups, so a single
        invocation needs no cancel scope of its own (one fewer scope to enter and leave on
        every invocation, which showed in the callee's profile). Start it with
        `await tasks.start(runner.host)`; it hands back the group to `run()` invocations in.
        """
        async with anyio.create_task_group() as invocations:
            self._groups.add(invocations.cancel_scope)
            try:
                task_status.started(invocations)
                await anyio.sleep_forever()
            finally:
                self._groups.discard(invocations.cancel_scope)

    async def run(self, handler: Handler, event: ev.InvocationRequested, answer: Answer) -> None:
        """Run one admitted invocation and hand its answer to `answer` (none for a void call).

        The handler runs with its invocation context current (and its span, with OTel).
        Cancelled (by `drain()` or by the connection ending), it answers
        `invocation_cancelled` before the cancellation goes on.
        """
        assert self.worker is not None, "the worker sets itself before it connects"
        invocation_id = event.invocation_id
        token = enter_context(
            Context(
                self.worker,
                event.function_id,
                invocation_id,
                event.metadata,
                trace_context_of(event.traceparent, event.baggage),
            )
        )
        try:
            try:
                if self._telemetry is None:
                    result = await self._run_in_slot(handler, event)
                else:
                    with self._telemetry.invocation_span(
                        event.function_id, invocation_id, event.traceparent, event.baggage
                    ):
                        result = await self._run_in_slot(handler, event)
            except anyio.get_cancelled_exc_class():
                if invocation_id is not None:
                    cancelled = ErrorBody(INVOCATION_CANCELLED, "the invocation was cancelled")
                    answer(invocation_id, None, cancelled)
                raise
            except Exception as exc:
                if invocation_id is None:
                    logger.exception("void invocation of %s failed", event.function_id)
                else:
                    answer(invocation_id, None, error_body(exc))
                return
            if invocation_id is not None:
                try:
                    encoded = to_raw(result)
                except (TypeError, msgspec.EncodeError) as exc:
                    message = f"the result could not be encoded as JSON: {exc}"
                    answer(invocation_id, None, ErrorBody(INVOCATION_FAILED, message))
                else:
                    answer(invocation_id, encoded, None)
        finally:
            leave_context(token)
            self.running -= 1
            if self.running == 0:
                self._idle.set()

    async def _run_in_slot(self, handler: Handler, event: ev.InvocationRequested) -> Any:
        """Run the handler once one of `max_concurrency` slots is free."""
        # A free slot is taken without a checkpoint: two scheduling round trips fewer per
        # invocation than `async with limiter`, which matters at tens of thousands/s.
        if not self._slots.take_nowait():
            await self._slots.take()
        try:
            return await handler.run(event.data, event.metadata, self.threads, self._refs)
        finally:
            self._slots.give_back()

    # --- idle and drain ---------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until no admitted invocation is left."""
        await self._idle.wait()

    async def drain(self, grace: float, cancel_grace: float) -> None:
        """Stop admitting, wait up to `grace` seconds for running invocations, then cancel
        what is left and wait up to `cancel_grace` seconds for it to answer and end.

        Takes at most `grace + cancel_grace` seconds.
        """
        self.stopping = True
        with anyio.move_on_after(grace):
            await self._idle.wait()
        if self.running:
            for group in list(self._groups):
                group.cancel()
            # The cancelled handlers only need to reach their next checkpoint to queue
            # their `invocation_cancelled` answers before the connection closes.
            with anyio.move_on_after(cancel_grace):
                await self._idle.wait()
