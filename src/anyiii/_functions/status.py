"""Outcome statuses in the manner of Dispatch: what kind of failure an error is, and whether
trying again may help.

A handler's exception (or its return value) is classified as a `Status`; the status's name is
the error code on the wire, and its `temporary` flag tells a caller whether a retry may
succeed. `RetryPolicy` turns that into a decision and a pause; the call path applies it.

The members, their numbers and their `temporary` flags are Dispatch's (dispatch-py 0.8,
`dispatch.status`, numbered as its `dispatch.sdk.v1.Status` protobuf enum).

Classification
--------------
`register_error_type(exc_type, status_or_fn)` and `register_output_type(type, status_or_fn)`
map a class to a status, or to a function computing one from the instance. Lookup walks the
instance's class MRO, so the most specific registered class wins, whatever the order of the
registrations: register `ValueError` and a subclass of it, and the subclass's entry decides
for its instances while every other `ValueError` keeps the base's. `status_for_error` answers
None for an exception no registered class covers (Dispatch then says `PERMANENT_ERROR`;
`DEFAULT_ERROR_STATUS` names that choice for callers that want it); `status_for_output`
answers `OK` for an unregistered value.

The default error mapping, registered at import (Dispatch's, see the note below the table)::

    exception class                 status              temporary
    ------------------------------  ------------------  ---------
    TimeoutError                    TIMEOUT             yes
    TypeError, ValueError           INVALID_ARGUMENT    no
    ConnectionError (and BrokenPipe-, ConnectionReset-, -Refused-, -Aborted-)
                                    TCP_ERROR           yes
    PermissionError                 PERMISSION_DENIED   no
    FileNotFoundError               NOT_FOUND           no
    OSError (the rest of it), EOFError, InterruptedError, KeyboardInterrupt
                                    TEMPORARY_ERROR     yes
    ssl.SSLError                    TLS_ERROR           yes
    ssl.SSLCertVerificationError    INVALID_ARGUMENT    no
    io.UnsupportedOperation         INVALID_ARGUMENT    no
    anything else                   (None)              (Dispatch: PERMANENT_ERROR)

So `KeyError`, `IndexError`, `LookupError`, `AttributeError`, `RuntimeError`,
`NotImplementedError` and the like are unclassified, as in Dispatch (which files them under
`PERMANENT_ERROR`): a bug or a missing item is not cured by calling again.

Dispatch classifies built-ins with a fixed chain of `isinstance` tests rather than by MRO; the
table reproduces that chain's results, with these notes:

* Dispatch tests `TimeoutError`, `ConnectionError`, `PermissionError` and
  `FileNotFoundError` before `OSError`, their base; the MRO gives the same answers.
* Dispatch tests `ValueError` before `OSError`, so the two built-in classes deriving from both
  (`io.UnsupportedOperation`, `ssl.SSLCertVerificationError`, alias `ssl.CertificateError`)
  are `INVALID_ARGUMENT` there. An MRO lookup would find `OSError` first, so both are
  registered explicitly to keep Dispatch's answer (a rejected certificate does not become
  valid by retrying).
* Dispatch's chain lists `ssl.SSLError` as `TLS_ERROR`, but tests `OSError` (its base) first,
  so its `TLS_ERROR` branch is never reached and TLS failures come out `TEMPORARY_ERROR`.
  Here `ssl.SSLError` is `TLS_ERROR`, the status Dispatch names for it; both are temporary,
  so the retry decision is the same.
* A user class deriving from two registered bases takes the first of them in its MRO (for
  `class E(ConnectionError, ValueError)`, `TCP_ERROR`), where Dispatch's chain would take
  `ValueError` first.

Wire form
---------
`error_code(status)` is the status's name as it is (`"TIMEOUT"`, `"INVALID_ARGUMENT"`), and
`status_from_code(code)` maps a received code back: exactly a member's name, or None for any
other code (`"invocation_failed"`, `"function_not_found"`, `"worker_busy"`, ...). Two names
are also codes iii gives a meaning of its own: `"TIMEOUT"` is what a caller's SDK reports
when its own wait for a result runs out, and `"NOT_FOUND"` is an engine error code. A
received `"TIMEOUT"` therefore reads as `Status.TIMEOUT` whichever side produced it; that is
harmless for retrying, since a caller's timeout is as temporary as a handler's.
"""

from __future__ import annotations

import enum
import io
import random
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from .._protocol.codes import INVOCATION_STOPPED, WORKER_BUSY

__all__ = [
    "DEFAULT_ERROR_STATUS",
    "RetryPolicy",
    "Status",
    "error_code",
    "preserved_registrations",
    "register_error_type",
    "register_output_type",
    "status_for_error",
    "status_for_output",
    "status_from_code",
    "unregister_error_type",
    "unregister_output_type",
]


@enum.unique
class Status(enum.IntEnum):
    """How a function's invocation ended, numbered as Dispatch's protobuf `Status`.

    The members fall in three groups:

    * no failure: `UNSPECIFIED`, `OK`;
    * temporary failures, where trying again may succeed: `TIMEOUT`, `THROTTLED`,
      `TEMPORARY_ERROR`, `INCOMPATIBLE_STATE`, `DNS_ERROR`, `TCP_ERROR`, `TLS_ERROR`,
      `HTTP_ERROR`;
    * permanent failures, where the same call fails the same way again: `INVALID_ARGUMENT`,
      `INVALID_RESPONSE`, `PERMANENT_ERROR`, `UNAUTHENTICATED`, `PERMISSION_DENIED`,
      `NOT_FOUND`.

    `str()` and `format()` give the name, which is also the wire error code.
    """

    UNSPECIFIED = 0
    """No status given (the protobuf default)."""
    OK = 1
    """The function returned as expected."""
    TIMEOUT = 2
    """An operation timed out; may be retried (temporary)."""
    THROTTLED = 3
    """The function was throttled; may be retried later (temporary)."""
    INVALID_ARGUMENT = 4
    """The function was given an invalid input (permanent)."""
    INVALID_RESPONSE = 5
    """The function received an unexpected response from something it called (permanent)."""
    TEMPORARY_ERROR = 6
    """A failure that may go away; may be retried (temporary)."""
    PERMANENT_ERROR = 7
    """A failure that will not go away; should not be retried (permanent)."""
    INCOMPATIBLE_STATE = 8
    """The function's saved state does not fit the running code; may be restarted from
    scratch (temporary)."""
    DNS_ERROR = 9
    """Name resolution failed (temporary)."""
    TCP_ERROR = 10
    """A connection failed or broke (temporary)."""
    TLS_ERROR = 11
    """A TLS handshake or session failed (temporary)."""
    HTTP_ERROR = 12
    """An HTTP exchange failed (temporary)."""
    UNAUTHENTICATED = 13
    """An operation was attempted without authentication (permanent)."""
    PERMISSION_DENIED = 14
    """An operation was attempted without permission (permanent)."""
    NOT_FOUND = 15
    """An operation was attempted on a resource that does not exist (permanent)."""

    def __str__(self) -> str:
        return self.name

    def __format__(self, format_spec: str) -> str:
        return format(self.name, format_spec)

    @property
    def temporary(self) -> bool:
        """Whether trying again may succeed (Dispatch's flag: timeouts, throttling, temporary
        errors, incompatible state, and the DNS, TCP, TLS and HTTP errors)."""
        return self in _TEMPORARY


_TEMPORARY: Final[frozenset[Status]] = frozenset(
    {
        Status.TIMEOUT,
        Status.THROTTLED,
        Status.TEMPORARY_ERROR,
        Status.INCOMPATIBLE_STATE,
        Status.DNS_ERROR,
        Status.TCP_ERROR,
        Status.TLS_ERROR,
        Status.HTTP_ERROR,
    }
)

DEFAULT_ERROR_STATUS: Final = Status.PERMANENT_ERROR
"""What Dispatch answers for an exception no registration covers (`status_for_error` answers
None there, so the caller decides)."""


# --- the registry -------------------------------------------------------------------------

E = TypeVar("E", bound=BaseException)
T = TypeVar("T")

_ErrorEntry = Status | Callable[[BaseException], Status]
_OutputEntry = Status | Callable[[Any], Status]

_error_types: dict[type, _ErrorEntry] = {}
_output_types: dict[type, _OutputEntry] = {}


def _check_entry(status_or_fn: object) -> None:
    if not isinstance(status_or_fn, Status) and not callable(status_or_fn):
        raise TypeError(f"expected a Status or a function returning one, got {status_or_fn!r}")


def register_error_type(exc_type: type[E], status_or_fn: Status | Callable[[E], Status]) -> None:
    """Classify instances of `exc_type` (and of its subclasses that have no entry of their
    own) as `status_or_fn`: a `Status`, or a function computing one from the exception.

    A later registration of the same class replaces the earlier one.
    """
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise TypeError(f"expected an exception class, got {exc_type!r}")
    _check_entry(status_or_fn)
    _error_types[exc_type] = cast(_ErrorEntry, status_or_fn)


def register_output_type(
    output_type: type[T], status_or_fn: Status | Callable[[T], Status]
) -> None:
    """Classify return values of `output_type` (and of its subclasses that have no entry of
    their own) as `status_or_fn`: a `Status`, or a function computing one from the value
    (say, from an HTTP response's status code).

    A later registration of the same class replaces the earlier one.
    """
    if not isinstance(output_type, type):
        raise TypeError(f"expected a class, got {output_type!r}")
    _check_entry(status_or_fn)
    _output_types[output_type] = cast(_OutputEntry, status_or_fn)


def unregister_error_type(exc_type: type[BaseException]) -> None:
    """Remove `exc_type`'s own entry, if any; its instances fall back to a base's entry."""
    _error_types.pop(exc_type, None)


def unregister_output_type(output_type: type) -> None:
    """Remove `output_type`'s own entry, if any; its values fall back to a base's entry."""
    _output_types.pop(output_type, None)


@contextmanager
def preserved_registrations() -> Iterator[None]:
    """Undo, on exit, every registration and unregistration made inside the block.

    For tests and for code that classifies temporarily; the tables are process-wide, so this
    is not meant for concurrent use from several threads.
    """
    errors = dict(_error_types)
    outputs = dict(_output_types)
    try:
        yield
    finally:
        _error_types.clear()
        _error_types.update(errors)
        _output_types.clear()
        _output_types.update(outputs)


def _lookup(table: dict[type, Any], value: object) -> Any:
    """The entry of the first class in `type(value).__mro__` that has one, else None."""
    for cls in type(value).__mro__:
        entry = table.get(cls)
        if entry is not None:
            return entry
    return None


def _resolve(entry: Status | Callable[[Any], Status], value: object) -> Status:
    if isinstance(entry, Status):
        return entry
    status = entry(value)
    if not isinstance(status, Status):
        raise TypeError(f"{entry!r} returned {status!r} for {value!r}, not a Status")
    return status


def status_for_error(exc: BaseException) -> Status | None:
    """The status of `exc` by its most specific registered class, or None if no registered
    class covers it (the caller decides; Dispatch uses `DEFAULT_ERROR_STATUS`)."""
    entry: _ErrorEntry | None = _lookup(_error_types, exc)
    if entry is None:
        return None
    return _resolve(entry, exc)


def status_for_output(value: object) -> Status:
    """The status of a function's return value by its most specific registered class; `OK`
    when none is registered (returning is success unless a registration says otherwise)."""
    entry: _OutputEntry | None = _lookup(_output_types, value)
    if entry is None:
        return Status.OK
    return _resolve(entry, value)


# Dispatch's classification of built-in exceptions; see the table in the module docstring.
_DEFAULT_ERROR_TYPES: Final[tuple[tuple[type[BaseException], Status], ...]] = (
    (TimeoutError, Status.TIMEOUT),
    (TypeError, Status.INVALID_ARGUMENT),
    (ValueError, Status.INVALID_ARGUMENT),
    (ConnectionError, Status.TCP_ERROR),
    (PermissionError, Status.PERMISSION_DENIED),
    (FileNotFoundError, Status.NOT_FOUND),
    (OSError, Status.TEMPORARY_ERROR),
    (EOFError, Status.TEMPORARY_ERROR),
    (InterruptedError, Status.TEMPORARY_ERROR),
    (KeyboardInterrupt, Status.TEMPORARY_ERROR),
    (ssl.SSLError, Status.TLS_ERROR),
    (ssl.SSLCertVerificationError, Status.INVALID_ARGUMENT),
    (io.UnsupportedOperation, Status.INVALID_ARGUMENT),
)

for _exc_type, _status in _DEFAULT_ERROR_TYPES:
    register_error_type(_exc_type, _status)
del _exc_type, _status


# --- the wire form ------------------------------------------------------------------------


def error_code(status: Status) -> str:
    """The wire error code for `status`: its name, as it is (`"TIMEOUT"`)."""
    return status.name


def status_from_code(code: str) -> Status | None:
    """The status whose name `code` is, or None for a code that is no status name (iii's own
    codes such as `"invocation_failed"`). Note that `"TIMEOUT"` is also what a caller's SDK
    reports for its own timeout; both read as `Status.TIMEOUT`."""
    return Status.__members__.get(code)


# --- retrying -----------------------------------------------------------------------------

_RETRYABLE_CODES: Final = frozenset({INVOCATION_STOPPED, WORKER_BUSY})
"""iii codes that are worth a retry though no status names them: the invocation was stopped
before it answered (its connection went away, its worker shut down), or the worker refused
it at once because it was at its limits; neither says anything about the call itself."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a failed call again, and how long to wait first.

    `attempts` counts every try, the first included (1 never retries). The pause after the
    n-th failed try is `initial_delay * multiplier ** (n - 1)` seconds, capped at `max_delay`,
    less a random fraction of up to `jitter` of it, so that callers failing together do not
    all come back at the same instant; a pause therefore never exceeds `max_delay`.
    """

    attempts: int = 3
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after try number `attempt` (1 for the first) failed.

        `rng` supplies the jitter (the `random` module's generator by default); pass a seeded
        `random.Random` for repeatable pauses.
        """
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        if self.initial_delay == 0:
            return 0.0
        try:
            base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        except OverflowError:  # a huge attempt number: long past the cap
            base = self.max_delay
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)

    def should_retry(self, code: str, attempt: int) -> bool:
        """Whether to try again after try number `attempt` (1 for the first) failed with the
        error `code`: only for a temporary status's code, `invocation_stopped` or
        `worker_busy`, and only while fewer than `attempts` tries have been made."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        if attempt >= self.attempts:
            return False
        if code in _RETRYABLE_CODES:
            return True
        status = status_from_code(code)
        return status is not None and status.temporary
