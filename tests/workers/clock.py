"""A thread-safe fake clock for the in-memory breaker, rate limiter and ledger."""

from __future__ import annotations

import threading


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
