"""Cron expressions as the real engine reads them, and the times they name (no I/O).

The real engine parses `cron` trigger expressions with the Rust `cron` crate: six fields
(`sec min hour day-of-month month day-of-week`) or seven (plus `year`), or a shorthand such
as `@hourly`. Every field must match (a day-of-month *and* a day-of-week restriction both
apply, unlike classic crontab's "either"), and numbered days of the week run 1 = Sunday …
7 = Saturday. The arithmetic is `croniter`'s (maintained, seconds-first and year fields):
this module only refuses what the crate refuses, renumbers the days of the week to
croniter's 0 = Sunday, and turns times into the RFC 3339 text the real engine sends.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = ["CronExpressionError", "CronSchedule", "rfc3339"]

_DAY_OF_WEEK: Final = 5
"""The day-of-week field's index in a six- or seven-field expression."""

_DAY_NUMBER: Final = re.compile(r"(?<![/\d])\d+")
"""A day number in the day-of-week field (not a `/step`)."""


class CronExpressionError(ValueError):
    """An expression the engine's cron grammar refuses; the message says why."""


def _classic_hint(fields: list[str]) -> str:
    six = " ".join(["0", *fields])
    return (
        "it has 5 fields (classic crontab); the engine's cron expressions have 6 fields with "
        f"seconds first, or 7 with a year: use {six!r} for the same schedule"
    )


def _renumber_days(field: str) -> str:
    """Day numbers 1 = Sunday … 7 = Saturday (the crate) become 0 … 6 (croniter)."""

    def shift(match: re.Match[str]) -> str:
        day = int(match.group())
        if not 1 <= day <= 7:
            raise CronExpressionError(
                f"day of week {day} is out of range (1 = Sunday … 7 = Saturday)"
            )
        return str(day - 1)

    return _DAY_NUMBER.sub(shift, field)


class CronSchedule:
    """A parsed expression: `after(ms)` is its first time strictly after `ms`."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        text = expression.strip()
        fields = text.split()
        if text.startswith("@"):
            translated = text
        elif len(fields) == 5:
            raise CronExpressionError(
                f"Invalid cron expression {expression!r}: {_classic_hint(fields)}"
            )
        elif len(fields) not in (6, 7):
            raise CronExpressionError(
                f"Invalid cron expression {expression!r}: expected 6 fields "
                "(sec min hour day-of-month month day-of-week) or 7 (with year), "
                f"got {len(fields)}"
            )
        else:
            try:
                fields[_DAY_OF_WEEK] = _renumber_days(fields[_DAY_OF_WEEK])
            except CronExpressionError as exc:
                raise CronExpressionError(
                    f"Invalid cron expression {expression!r}: {exc}"
                ) from None
            translated = " ".join(fields)
        self._translated = translated
        try:
            croniter(translated, 0.0, second_at_beginning=True, day_or=False)
        except (CroniterError, ValueError, KeyError) as exc:
            raise CronExpressionError(f"Invalid cron expression {expression!r}: {exc}") from None

    def after(self, ms: int) -> int | None:
        """The first scheduled time (ms since the epoch) strictly after `ms`; None if the
        expression names no later time (a year in the past, say)."""
        start = datetime.fromtimestamp(ms / 1000, UTC)
        try:
            it = croniter(self._translated, start, second_at_beginning=True, day_or=False)
            nxt: datetime = it.get_next(datetime)
        except CroniterBadDateError:
            return None
        return round(nxt.timestamp() * 1000)


def rfc3339(ms: int) -> str:
    """`ms` as the real engine writes times (chrono's `to_rfc3339`): UTC as `+00:00`, the
    fraction only when there is one."""
    moment = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = ms % 1000
    return f"{moment}.{fraction:03d}+00:00" if fraction else f"{moment}+00:00"
