"""One simulator app's mutable state: its config, random source, counters and response ids,
and the recorded answers of replay mode (fixed for the app's life)."""

from __future__ import annotations

import itertools
import random
from collections import OrderedDict
from typing import Any

from aiohttp import web

from workers.sim.config import SimConfig
from workers.sim.prompt import Prompt
from workers.sim.replay import HIT, JUDGE_RECORDED, JUDGE_RULE, MISS, Replay
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

    def __init__(self, config: SimConfig, replay: Replay | None = None) -> None:
        self.config = config
        self.replay = replay  # replay mode (workers/sim/replay.py) when set
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

    def tally(self, kind: str) -> None:
        """Count where an answer came from (workers/sim/replay.py's ``source``): the
        ``judge`` and ``replay`` sections of the counters."""
        if kind in (JUDGE_RECORDED, JUDGE_RULE):
            judge = self.stats.section("judge")
            judge["requests"] += 1
            judge["recorded" if kind == JUDGE_RECORDED else "rule"] += 1
        elif kind in (HIT, MISS):
            self.stats.section("replay")["hits" if kind == HIT else "misses"] += 1

    def record_answer(self, request: web.BaseRequest, prompt: Prompt) -> None:
        """Count an answer as a completion, or as abandoned when the client has gone (its
        timeout fired before the answer)."""
        if request.transport is None or request.transport.is_closing():
            self.stats.abandoned += 1
        else:
            self.stats.record_completion(prompt.model, prompt.digest)


STATE = web.AppKey("sim_state", SimState)
