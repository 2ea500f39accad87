"""Statuses in the manner of Dispatch: the members and their flags, the default
classification of built-in exceptions, and the wire form. Registrations of error and output
types are in `test_status_registrations.py`, the retry policy in `test_status_retry.py`."""

from __future__ import annotations

import builtins
import io
import json
import ssl

import pytest

from anyiii._functions.status import (
    DEFAULT_ERROR_STATUS,
    Status,
    error_code,
    status_for_error,
    status_from_code,
)
from anyiii._protocol import codes

# --- members ----------------------------------------------------------------------------------

#: Dispatch's members and protobuf numbers (dispatch.sdk.v1.Status), in declaration order.
DISPATCH_MEMBERS = [
    ("UNSPECIFIED", 0),
    ("OK", 1),
    ("TIMEOUT", 2),
    ("THROTTLED", 3),
    ("INVALID_ARGUMENT", 4),
    ("INVALID_RESPONSE", 5),
    ("TEMPORARY_ERROR", 6),
    ("PERMANENT_ERROR", 7),
    ("INCOMPATIBLE_STATE", 8),
    ("DNS_ERROR", 9),
    ("TCP_ERROR", 10),
    ("TLS_ERROR", 11),
    ("HTTP_ERROR", 12),
    ("UNAUTHENTICATED", 13),
    ("PERMISSION_DENIED", 14),
    ("NOT_FOUND", 15),
]

#: Dispatch's `Status.temporary` set.
DISPATCH_TEMPORARY = {
    "TIMEOUT",
    "THROTTLED",
    "TEMPORARY_ERROR",
    "INCOMPATIBLE_STATE",
    "DNS_ERROR",
    "TCP_ERROR",
    "TLS_ERROR",
    "HTTP_ERROR",
}


def test_members_are_dispatchs_names_and_numbers() -> None:
    assert [(s.name, s.value) for s in Status] == DISPATCH_MEMBERS


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.name)
def test_temporary_flag_is_dispatchs(status: Status) -> None:
    assert status.temporary is (status.name in DISPATCH_TEMPORARY)


def test_class_docstring_groups_the_members_by_their_flag() -> None:
    assert Status.__doc__ is not None
    groups = Status.__doc__.split("* ")[1:]
    assert len(groups) == 3
    named = [{s.name for s in Status if f"`{s.name}`" in group} for group in groups]
    assert named[0] == {"UNSPECIFIED", "OK"}
    assert named[1] == DISPATCH_TEMPORARY
    assert named[2] == {s.name for s in Status} - DISPATCH_TEMPORARY - named[0]


def test_str_and_format_give_the_name() -> None:
    assert str(Status.TIMEOUT) == "TIMEOUT"
    assert f"{Status.TCP_ERROR}" == "TCP_ERROR"
    assert f"{Status.OK:>4}" == "  OK"
    assert int(Status.NOT_FOUND) == 15


# --- the default mapping ----------------------------------------------------------------------

DEFAULTS = [
    (TimeoutError(), Status.TIMEOUT),
    (TypeError("x"), Status.INVALID_ARGUMENT),
    (ValueError("x"), Status.INVALID_ARGUMENT),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), Status.INVALID_ARGUMENT),
    (json.JSONDecodeError("bad", "{", 0), Status.INVALID_ARGUMENT),
    (ConnectionError(), Status.TCP_ERROR),
    (ConnectionResetError(), Status.TCP_ERROR),
    (ConnectionRefusedError(), Status.TCP_ERROR),
    (ConnectionAbortedError(), Status.TCP_ERROR),
    (BrokenPipeError(), Status.TCP_ERROR),
    (PermissionError(), Status.PERMISSION_DENIED),
    (FileNotFoundError(), Status.NOT_FOUND),
    (OSError(), Status.TEMPORARY_ERROR),
    (IsADirectoryError(), Status.TEMPORARY_ERROR),
    (BlockingIOError(), Status.TEMPORARY_ERROR),
    (InterruptedError(), Status.TEMPORARY_ERROR),
    (EOFError(), Status.TEMPORARY_ERROR),
    (KeyboardInterrupt(), Status.TEMPORARY_ERROR),
    (ssl.SSLError(), Status.TLS_ERROR),
    (ssl.SSLEOFError(), Status.TLS_ERROR),
    (ssl.SSLCertVerificationError(), Status.INVALID_ARGUMENT),
    (io.UnsupportedOperation(), Status.INVALID_ARGUMENT),
    (KeyError("k"), None),
    (IndexError(), None),
    (LookupError(), None),
    (AttributeError(), None),
    (RuntimeError(), None),
    (NotImplementedError(), None),
    (ZeroDivisionError(), None),
    (Exception(), None),
    (SystemExit(), None),
    (ExceptionGroup("g", [ValueError()]), None),
]


@pytest.mark.parametrize(("exc", "expected"), DEFAULTS, ids=lambda v: type(v).__name__)
def test_default_mapping(exc: BaseException, expected: Status | None) -> None:
    assert status_for_error(exc) is expected


def dispatch_chain(exc: BaseException) -> Status:
    """Dispatch's built-in classification, its `isinstance` tests in its order (a test-side
    restatement of `dispatch.status.status_for_error` with nothing registered)."""
    if isinstance(exc, TimeoutError):
        return Status.TIMEOUT
    if isinstance(exc, TypeError | ValueError):
        return Status.INVALID_ARGUMENT
    if isinstance(exc, ConnectionError):
        return Status.TCP_ERROR
    if isinstance(exc, PermissionError):
        return Status.PERMISSION_DENIED
    if isinstance(exc, FileNotFoundError):
        return Status.NOT_FOUND
    if isinstance(exc, EOFError | InterruptedError | KeyboardInterrupt | OSError):
        return Status.TEMPORARY_ERROR
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Status.TLS_ERROR  # never reached: SSLError is an OSError
    return Status.PERMANENT_ERROR


def _exception_classes() -> list[type[BaseException]]:
    found = [
        value
        for value in vars(builtins).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    found += [
        value
        for value in vars(ssl).values()
        if isinstance(value, type) and issubclass(value, BaseException)
    ]
    found += [io.UnsupportedOperation, json.JSONDecodeError]
    return sorted(set(found), key=lambda cls: cls.__qualname__)


@pytest.mark.parametrize("cls", _exception_classes(), ids=lambda cls: cls.__qualname__)
def test_every_builtin_exception_agrees_with_dispatchs_chain(cls: type[BaseException]) -> None:
    """Unclassified is Dispatch's PERMANENT_ERROR; the one documented divergence, the SSL
    errors (TLS_ERROR here, TEMPORARY_ERROR in Dispatch), keeps the temporary flag."""
    exc = cls.__new__(cls) if not issubclass(cls, BaseExceptionGroup) else cls("g", [ValueError()])
    ours = status_for_error(exc) or DEFAULT_ERROR_STATUS
    theirs = dispatch_chain(exc)
    if issubclass(cls, ssl.SSLError) and theirs is Status.TEMPORARY_ERROR:
        assert ours is Status.TLS_ERROR
        assert ours.temporary is theirs.temporary
    else:
        assert ours is theirs


# --- the wire form ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.name)
def test_code_round_trip(status: Status) -> None:
    assert error_code(status) == status.name
    assert status_from_code(error_code(status)) is status


@pytest.mark.parametrize(
    "code",
    [
        "invocation_failed",
        "function_not_found",
        "timeout",
        "Timeout",
        "Status.TIMEOUT",
        "2",
        "",
        " TIMEOUT",
        "INVALID_ARGUMENTS",
        "invalid_response",
        "_member_map_",
        "temporary",
    ],
)
def test_foreign_codes_are_no_status(code: str) -> None:
    assert status_from_code(code) is None


def test_only_timeout_and_not_found_among_iiis_codes_are_status_names() -> None:
    """The documented collisions; a new one would need documenting too."""
    iii_codes = {
        name: value
        for name, value in vars(codes).items()
        if name.isupper() and isinstance(value, str)
    }
    colliding = {value for value in iii_codes.values() if status_from_code(value) is not None}
    assert colliding == {"TIMEOUT", "NOT_FOUND"}
    assert status_from_code(codes.TIMEOUT) is Status.TIMEOUT
