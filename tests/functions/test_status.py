"""Statuses in the manner of Dispatch: the members and their flags, the default
classification of built-in exceptions, registrations along the MRO, the wire form, and the
retry policy."""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import random
import ssl
from collections.abc import Iterator

import pytest

from anyiii._functions.status import (
    DEFAULT_ERROR_STATUS,
    RetryPolicy,
    Status,
    error_code,
    preserved_registrations,
    register_error_type,
    register_output_type,
    status_for_error,
    status_for_output,
    status_from_code,
    unregister_error_type,
    unregister_output_type,
)
from anyiii._protocol import codes


@pytest.fixture(autouse=True)
def _isolated_registry() -> Iterator[None]:
    """Every test's registrations are undone after it."""
    with preserved_registrations():
        yield


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


# --- registrations along the MRO --------------------------------------------------------------


class MyValueError(ValueError):
    pass


class MyNarrowerValueError(MyValueError):
    pass


def test_subclass_of_a_registered_class_takes_its_status() -> None:
    assert status_for_error(MyValueError()) is Status.INVALID_ARGUMENT
    assert status_for_error(MyNarrowerValueError()) is Status.INVALID_ARGUMENT


def test_more_specific_registration_wins_over_the_base() -> None:
    register_error_type(MyValueError, Status.NOT_FOUND)
    assert status_for_error(MyValueError()) is Status.NOT_FOUND
    assert status_for_error(MyNarrowerValueError()) is Status.NOT_FOUND
    assert status_for_error(ValueError()) is Status.INVALID_ARGUMENT


def test_most_specific_wins_whatever_the_registration_order() -> None:
    register_error_type(MyNarrowerValueError, Status.THROTTLED)
    register_error_type(MyValueError, Status.NOT_FOUND)  # registered after the subclass
    assert status_for_error(MyNarrowerValueError()) is Status.THROTTLED
    assert status_for_error(MyValueError()) is Status.NOT_FOUND
    register_error_type(ValueError, Status.PERMANENT_ERROR)  # re-registering the base
    assert status_for_error(MyNarrowerValueError()) is Status.THROTTLED
    assert status_for_error(ValueError()) is Status.PERMANENT_ERROR


def test_multiple_inheritance_takes_the_first_registered_base_in_the_mro() -> None:
    class Both(ConnectionError, ValueError):
        pass

    class BothReversed(ValueError, ConnectionError):
        pass

    assert status_for_error(Both()) is Status.TCP_ERROR
    assert status_for_error(BothReversed()) is Status.INVALID_ARGUMENT


def test_later_registration_of_the_same_class_replaces_it() -> None:
    register_error_type(MyValueError, Status.NOT_FOUND)
    register_error_type(MyValueError, Status.HTTP_ERROR)
    assert status_for_error(MyValueError()) is Status.HTTP_ERROR


class HTTPFailure(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


def http_failure_status(exc: HTTPFailure) -> Status:
    if exc.status_code == 429:
        return Status.THROTTLED
    if exc.status_code >= 500:
        return Status.TEMPORARY_ERROR
    return Status.PERMANENT_ERROR


def test_function_mapper_gets_the_exception() -> None:
    assert status_for_error(HTTPFailure(503)) is None
    register_error_type(HTTPFailure, http_failure_status)
    assert status_for_error(HTTPFailure(429)) is Status.THROTTLED
    assert status_for_error(HTTPFailure(503)) is Status.TEMPORARY_ERROR
    assert status_for_error(HTTPFailure(404)) is Status.PERMANENT_ERROR

    class Narrower(HTTPFailure):
        pass

    assert status_for_error(Narrower(429)) is Status.THROTTLED


def test_function_mapper_returning_no_status_is_an_error() -> None:
    register_error_type(HTTPFailure, lambda exc: "THROTTLED")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not a Status"):
        status_for_error(HTTPFailure(429))


def test_registration_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="exception class"):
        register_error_type(int, Status.OK)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="exception class"):
        register_error_type(ValueError(), Status.OK)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Status"):
        register_error_type(ValueError, "TIMEOUT")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="class"):
        register_output_type(3, Status.OK)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Status"):
        register_output_type(int, 3)  # type: ignore[arg-type]
    assert status_for_error(ValueError()) is Status.INVALID_ARGUMENT


def test_unregister_falls_back_to_the_base() -> None:
    register_error_type(MyValueError, Status.NOT_FOUND)
    unregister_error_type(MyValueError)
    assert status_for_error(MyValueError()) is Status.INVALID_ARGUMENT
    unregister_error_type(MyValueError)  # no entry: nothing to do
    unregister_error_type(ConnectionError)
    assert status_for_error(ConnectionResetError()) is Status.TEMPORARY_ERROR  # OSError's


def test_preserved_registrations_undoes_the_block_even_on_error() -> None:
    def change_then_fail() -> None:
        with preserved_registrations():
            register_error_type(MyValueError, Status.NOT_FOUND)
            unregister_error_type(OSError)
            register_output_type(int, Status.THROTTLED)
            assert status_for_error(OSError()) is None
            raise RuntimeError

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert status_for_error(MyValueError()) is Status.INVALID_ARGUMENT
    assert status_for_error(OSError()) is Status.TEMPORARY_ERROR
    assert status_for_output(3) is Status.OK


# --- output types -----------------------------------------------------------------------------


@dataclasses.dataclass
class Response:
    status_code: int


class RetryLater:
    pass


def test_unregistered_outputs_are_ok() -> None:
    for value in (None, 1, "x", b"", [], {}, object(), Response(500), ValueError()):
        assert status_for_output(value) is Status.OK


def test_output_types_by_status_and_by_function() -> None:
    register_output_type(RetryLater, Status.THROTTLED)
    register_output_type(
        Response, lambda r: Status.OK if r.status_code < 400 else Status.HTTP_ERROR
    )
    assert status_for_output(RetryLater()) is Status.THROTTLED
    assert status_for_output(Response(200)) is Status.OK
    assert status_for_output(Response(502)) is Status.HTTP_ERROR


def test_output_types_follow_the_mro() -> None:
    class Base:
        pass

    class Middle(Base):
        pass

    class Leaf(Middle):
        pass

    register_output_type(Base, Status.INVALID_RESPONSE)
    assert status_for_output(Leaf()) is Status.INVALID_RESPONSE
    register_output_type(Middle, Status.NOT_FOUND)
    assert status_for_output(Leaf()) is Status.NOT_FOUND
    assert status_for_output(Base()) is Status.INVALID_RESPONSE
    unregister_output_type(Middle)
    assert status_for_output(Leaf()) is Status.INVALID_RESPONSE


def test_error_and_output_tables_are_separate() -> None:
    register_output_type(MyValueError, Status.NOT_FOUND)
    assert status_for_error(MyValueError()) is Status.INVALID_ARGUMENT
    assert status_for_output(MyValueError()) is Status.NOT_FOUND


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


# --- the retry policy -------------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.initial_delay, policy.multiplier) == (3, 0.1, 2.0)
    assert (policy.max_delay, policy.jitter) == (5.0, 0.2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.attempts = 5  # type: ignore[misc]


def test_delays_grow_and_cap() -> None:
    policy = RetryPolicy(jitter=0.0)
    delays = [policy.delay(n) for n in range(1, 10)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert policy.delay(100_000) == 5.0  # no overflow for a huge attempt number
    assert RetryPolicy(initial_delay=0.0).delay(100_000) == 0.0
    assert RetryPolicy(multiplier=1.0, jitter=0.0).delay(7) == pytest.approx(0.1)


def test_jitter_stays_within_its_fraction_and_under_the_cap() -> None:
    policy = RetryPolicy(jitter=0.25)
    rng = random.Random(1234)
    for attempt in (1, 2, 3, 8, 50):
        base = min(5.0, 0.1 * 2.0 ** (attempt - 1))
        draws = [policy.delay(attempt, rng=rng) for _ in range(500)]
        assert all(0.75 * base <= d <= base for d in draws)
        assert max(draws) - min(draws) > 0.15 * base  # it does spread
    # with jitter, consecutive pauses still grow until the cap
    policy = RetryPolicy(jitter=0.2)
    for attempt in range(1, 6):
        assert policy.delay(attempt + 1, rng=rng) > policy.delay(attempt, rng=rng)


def test_seeded_rng_repeats_and_module_random_is_the_default() -> None:
    policy = RetryPolicy()
    first = [policy.delay(n, rng=random.Random(7)) for n in range(1, 6)]
    again = [policy.delay(n, rng=random.Random(7)) for n in range(1, 6)]
    assert first == again
    random.seed(99)
    a = policy.delay(3)
    random.seed(99)
    assert policy.delay(3) == a


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"initial_delay": -0.1},
        {"max_delay": -1.0},
        {"multiplier": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_numbers_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        RetryPolicy().delay(0)
    with pytest.raises(ValueError, match="from 1"):
        RetryPolicy().should_retry("TIMEOUT", 0)


@pytest.mark.parametrize("status", list(Status), ids=lambda s: s.name)
def test_retries_exactly_the_temporary_statuses(status: Status) -> None:
    assert RetryPolicy().should_retry(error_code(status), 1) is status.temporary


@pytest.mark.parametrize("code", [codes.INVOCATION_STOPPED, codes.WORKER_BUSY])
def test_retries_stopped_and_busy(code: str) -> None:
    assert RetryPolicy().should_retry(code, 1)


@pytest.mark.parametrize(
    "code",
    [
        codes.INVOCATION_FAILED,
        codes.FUNCTION_NOT_FOUND,
        codes.WORKER_STOPPING,
        codes.INVOCATION_CANCELLED,
        codes.INVALID_ARGUMENTS,
        codes.DESERIALIZATION_ERROR,
        "timeout",
        "",
    ],
)
def test_does_not_retry_other_codes(code: str) -> None:
    assert not RetryPolicy().should_retry(code, 1)


def test_never_past_attempts() -> None:
    policy = RetryPolicy(attempts=3)
    assert [policy.should_retry("TCP_ERROR", n) for n in (1, 2, 3, 4)] == [
        True,
        True,
        False,
        False,
    ]
    assert [policy.should_retry(codes.WORKER_BUSY, n) for n in (1, 2, 3)] == [True, True, False]
    once = RetryPolicy(attempts=1)
    assert not once.should_retry("TIMEOUT", 1)
    assert not once.should_retry(codes.INVOCATION_STOPPED, 1)
