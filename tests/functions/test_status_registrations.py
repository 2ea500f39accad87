"""Statuses in the manner of Dispatch: error types registered along the MRO (by status or
by a function of the exception), output types likewise, and `preserved_registrations`.
Every test's registrations are undone after it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from anyiii._functions.status import (
    Status,
    preserved_registrations,
    register_error_type,
    register_output_type,
    status_for_error,
    status_for_output,
    unregister_error_type,
    unregister_output_type,
)


@pytest.fixture(autouse=True)
def _isolated_registry() -> Iterator[None]:
    """Every test's registrations are undone after it."""
    with preserved_registrations():
        yield


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
