"""Retry policy as data: full-jitter backoff, Retry-After, the cap, the attempt budget."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.policy import RetrySpec, load_policy
from routing.retry import backoff_delay, should_retry
from tests.routing.helpers import PROPERTY

SPEC = RetrySpec(max_attempts=10, base_delay_s=0.5, max_delay_s=8.0)


class _Top(random.Random):
    """An RNG whose jitter always draws the upper bound, to observe the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _ceiling(attempt: int, spec: RetrySpec = SPEC) -> float:
    return backoff_delay(attempt, spec, None, _Top())


def test_ceiling_doubles_each_attempt_until_the_cap() -> None:
    assert [_ceiling(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_cap_below_the_base_delay() -> None:
    spec = RetrySpec(max_attempts=3, base_delay_s=5.0, max_delay_s=1.0)
    assert _ceiling(1, spec) == 1.0


def test_zero_base_delay_retries_immediately() -> None:
    spec = RetrySpec(max_attempts=5, base_delay_s=0.0, max_delay_s=8.0)
    assert {backoff_delay(n, spec, None, random.Random(n)) for n in range(1, 6)} == {0.0}


@PROPERTY
@given(
    attempt=st.integers(min_value=1, max_value=10),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0.0, max_value=5.0),
    cap=st.floats(min_value=0.0, max_value=60.0),
)
def test_full_jitter_stays_between_zero_and_the_ceiling(
    attempt: int, seed: int, base: float, cap: float
) -> None:
    spec = RetrySpec(max_attempts=10, base_delay_s=base, max_delay_s=cap)
    delay = backoff_delay(attempt, spec, None, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2 ** (attempt - 1))


def test_jitter_spreads_retries_over_the_whole_window() -> None:
    delays = [backoff_delay(4, SPEC, None, random.Random(seed)) for seed in range(500)]
    assert min(delays) < 0.5 < 3.5 < max(delays) <= 4.0
    assert len(set(delays)) == len(delays), "no two workers retry in lockstep"


def test_same_seed_same_delay() -> None:
    first = [backoff_delay(n, SPEC, None, random.Random(7)) for n in range(1, 6)]
    again = [backoff_delay(n, SPEC, None, random.Random(7)) for n in range(1, 6)]
    assert first == again


# ---------------------------------------------------------------- Retry-After


@PROPERTY
@given(
    attempt=st.integers(min_value=1, max_value=10),
    seed=st.integers(min_value=0, max_value=2**32),
    retry_after=st.floats(min_value=0.0, max_value=1000.0),
)
def test_never_sooner_than_retry_after_and_never_past_the_cap(
    attempt: int, seed: int, retry_after: float
) -> None:
    delay = backoff_delay(attempt, SPEC, retry_after, random.Random(seed))
    assert delay >= min(retry_after, SPEC.max_delay_s)
    assert delay <= SPEC.max_delay_s


def test_retry_after_longer_than_the_jitter_is_honoured_exactly() -> None:
    # Attempt 1's window is 0..0.5 s; the provider asked for 3 s.
    assert backoff_delay(1, SPEC, 3.0, random.Random(1)) == 3.0


def test_retry_after_beyond_the_cap_waits_the_cap() -> None:
    assert backoff_delay(1, SPEC, 120.0, random.Random(1)) == SPEC.max_delay_s
    assert backoff_delay(1, SPEC, float("inf"), random.Random(1)) == SPEC.max_delay_s


@pytest.mark.parametrize("retry_after", [0.0, 0.01])
def test_short_retry_after_keeps_the_jitter(retry_after: float) -> None:
    with_hint = backoff_delay(5, SPEC, retry_after, random.Random(3))
    without = backoff_delay(5, SPEC, None, random.Random(3))
    assert with_hint == max(without, retry_after)


# ---------------------------------------------------------------- attempt budget


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 10])
def test_should_retry_allows_exactly_max_attempts_calls(max_attempts: int) -> None:
    spec = RetrySpec(max_attempts=max_attempts)
    calls = 1
    while should_retry(calls, spec):
        calls += 1
    assert calls == max_attempts
    assert not should_retry(max_attempts + 1, spec)


def test_default_retry_spec_matches_the_default_policy() -> None:
    assert load_policy().retry == RetrySpec(max_attempts=3, base_delay_s=0.2, max_delay_s=8.0)
