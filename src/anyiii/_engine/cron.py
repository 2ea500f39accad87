"""The `iii-cron` service (spec §10.2): the `cron` trigger type, on the engine's timers.

A binding's config is `{expression, condition_function_id?}`; the expression is checked at
registration (`cron_schedule.py`) and a bad one is refused with
`trigger_registration_failed`. On each scheduled time the binding's function is called with
`{"trigger": "cron", "job_id": <binding id>, "scheduled_time", "actual_time"}` (RFC 3339)
and the binding's metadata, after its condition (if any) did not answer `false`. Its answer
is dropped; an error is only logged.

Like the real engine, a job runs one call at a time: the next time is taken when the call
(and its condition) ended, as the first scheduled time after both the time just served and
the wall clock now. So the schedule never drifts (times come from the expression, not from
when a call happened), and times missed while the engine or the call was busy are skipped,
not fired late in a burst. A time is due when the engine's monotonic clock reaches the
deadline computed from the wall-clock distance to it, as the real engine sleeps; the wall
clock only names times. Nothing is persisted: bindings are re-registered by their workers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from msgspec import Raw

from .._protocol.codes import TRIGGER_REGISTRATION_FAILED
from .._protocol.frames import ErrorBody, RegisterTrigger, present, to_raw
from .cron_schedule import CronExpressionError, CronSchedule, rfc3339
from .deliveries import delivery
from .service import BaseService, Effect, Invoke, ServiceContext
from .service_config import adapter_note

__all__ = ["CRON_TRIGGER", "CronService"]

logger = logging.getLogger("anyiii.engine")

CRON_TRIGGER: Final = "cron"


class _Config(msgspec.Struct):
    expression: str
    condition_function_id: str | None = None


@dataclass(slots=True, eq=False)
class _Job:
    binding: RegisterTrigger
    schedule: CronSchedule
    condition: str | None
    scheduled_ms: int | None
    """The next time to serve (ms since the epoch), or None when there is none."""
    deadline: float | None
    """When `scheduled_ms` is due on the monotonic clock; None while a call runs."""


class CronService(BaseService):
    """Runs `cron` bindings on the engine's timers (see the module docstring)."""

    name = "iii-cron"
    description = "Cron-based scheduled triggers"

    def __init__(self, context: ServiceContext, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        adapter_note(self.name, config, local=("kv",))
        self._context = context
        self._jobs: dict[str, _Job] = {}
        self.trigger_types[CRON_TRIGGER] = self

    # --- the trigger type ------------------------------------------------------------------------

    def register(self, binding: RegisterTrigger) -> ErrorBody | None:
        """Accept a binding whose expression parses, and schedule its first time."""
        raw = present(binding.config)
        try:
            if raw is None:
                raise CronExpressionError("cron trigger config must have an expression")
            config = msgspec.json.decode(raw, type=_Config)
            schedule = CronSchedule(config.expression)
        except (msgspec.ValidationError, msgspec.DecodeError, CronExpressionError) as exc:
            return ErrorBody(TRIGGER_REGISTRATION_FAILED, str(exc))
        job = _Job(binding, schedule, config.condition_function_id, None, None)
        self._jobs[binding.id] = job
        self._schedule(job, self._context.wall_clock_ms())
        logger.info("cron job %s (%s) → %s", binding.id, schedule.expression, binding.function_id)
        return None

    def unregister(self, binding: RegisterTrigger) -> None:
        self._jobs.pop(binding.id, None)

    # --- timers ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return min(
            (j.deadline for j in self._jobs.values() if j.deadline is not None), default=None
        )

    def tick(self) -> Sequence[Effect]:
        """Start the call of every job whose time has come."""
        now = self._context.now()
        effects: list[Effect] = []
        for job in self._jobs.values():
            if job.deadline is None or job.deadline > now or job.scheduled_ms is None:
                continue
            job.deadline = None  # running: no next time until the call ends
            effects.append(self._fire(job, job.scheduled_ms))
        return effects

    def _fire(self, job: _Job, scheduled_ms: int) -> Invoke:
        binding = job.binding
        payload = {
            "trigger": CRON_TRIGGER,
            "job_id": binding.id,
            "scheduled_time": rfc3339(scheduled_ms),
            "actual_time": rfc3339(self._context.wall_clock_ms()),
        }
        logger.debug("cron job %s → %s", binding.id, binding.function_id)

        def done(result: Raw | None, error: ErrorBody | None) -> Sequence[Effect]:
            if error is not None:
                logger.warning(
                    "cron job %s: the call of %s failed (%s: %s)",
                    binding.id,
                    binding.function_id,
                    error.code,
                    error.message,
                )
            if self._jobs.get(binding.id) is job:  # still bound (not removed or replaced)
                self._schedule(job, max(scheduled_ms, self._context.wall_clock_ms()))
            return ()

        return delivery(binding, to_raw(payload), job.condition, done)

    def _schedule(self, job: _Job, after_ms: int) -> None:
        """Set the job's next time: the first one strictly after `after_ms`."""
        job.scheduled_ms = job.schedule.after(after_ms)
        if job.scheduled_ms is None:
            job.deadline = None
            logger.warning("cron job %s: its expression names no later time", job.binding.id)
            return
        wait = (job.scheduled_ms - self._context.wall_clock_ms()) / 1000
        job.deadline = self._context.now() + max(0.0, wait)
