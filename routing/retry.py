"""Retry policy as data: how long to wait before attempt ``n + 1``.

Exponential backoff with full jitter (AWS architecture blog's "Full Jitter"). A
provider's ``Retry-After`` hint sets a floor, but every wait is capped at
``max_delay_s``: a batch worker does not park a whole tier batch for minutes on one
hint; a row that keeps failing ends ``failed`` after ``max_attempts`` and can be resubmitted.
"""

from __future__ import annotations

import random

from routing.policy import RetrySpec


def backoff_delay(
    attempt: int, spec: RetrySpec, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
    ceiling = min(spec.max_delay_s, spec.base_delay_s * 2 ** (attempt - 1))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, spec.max_delay_s))
    return delay


def should_retry(attempt: int, spec: RetrySpec) -> bool:
    return attempt < spec.max_attempts
