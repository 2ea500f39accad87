"""The retry policy of the Dispatch-style statuses (`RetryPolicy`): its defaults, delays
that grow and cap, jitter, and which error codes are retried how often."""

from __future__ import annotations

import dataclasses
import random

import pytest

from anyiii._functions.status import RetryPolicy, Status, error_code
from anyiii._protocol import codes

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
