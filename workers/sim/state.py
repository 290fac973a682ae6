"""One simulator app's mutable state: its config, random source, counters and response ids."""

from __future__ import annotations

import itertools
import random
from collections import OrderedDict
from typing import Any

from aiohttp import web

from workers.sim.config import SimConfig
from workers.sim.prompt import Prompt
from workers.sim.stats import Stats

__all__ = ["STATE", "SimState"]


class Prefixes:
    """The prompt prefixes a model has seen (bounded, least recently seen dropped)."""

    def __init__(self, size: int = 10_000) -> None:
        self._seen: OrderedDict[Any, None] = OrderedDict()
        self._size = size

    def seen(self, key: Any) -> bool:
        """Whether ``key`` was seen before; it is remembered from now on."""
        before = key in self._seen
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return before


class SimState:
    """Mutable per-app state; only touched from the server's event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.stats = Stats()
        self.ids = itertools.count(1)
        self.prefixes = Prefixes()  # the prompt cache (workers/sim/openai_chat.py)

    def configure(self, changes: dict[str, Any]) -> SimConfig:
        """Apply ``changes`` to the config; a ``seed`` among them re-seeds the random source."""
        self.config = self.config.updated(changes)
        if "seed" in changes:
            self.rng.seed(self.config.seed)
        return self.config

    def reset_stats(self) -> None:
        self.stats = Stats()

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (no draw for a rate of 0 or 1)."""
        return rate >= 1.0 or (rate > 0.0 and self.rng.random() < rate)

    def delay_s(self) -> float:
        cfg = self.config
        jitter = self.rng.uniform(-1.0, 1.0) * cfg.latency_ms_jitter if cfg.latency_ms_jitter else 0
        return max(0.0, cfg.latency_ms_mean + jitter) / 1000.0

    def record_answer(self, request: web.BaseRequest, prompt: Prompt) -> None:
        """Count an answer as a completion, or as abandoned when the client has gone (its
        timeout fired before the answer)."""
        if request.transport is None or request.transport.is_closing():
            self.stats.abandoned += 1
        else:
            self.stats.record_completion(prompt.model, prompt.digest)


STATE = web.AppKey("sim_state", SimState)
