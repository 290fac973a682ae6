"""The simulated provider's configuration (``SimConfig``).

Per request, in this order: with probability ``auth_error_rate`` answer 401 with the request's
``Authorization`` / ``x-api-key`` headers echoed in the message (a careless provider, for the
secret-redaction tests); with probability ``rate_limit_rate`` answer 429; with ``error_rate``
answer 500 (always for a model in ``fail_models``: an outage); with ``hang_rate`` sleep
``hang_s`` first (simulates a timeout); then sleep ``latency_ms_mean`` +/- uniform
``latency_ms_jitter`` ms and answer. Decisions draw from one ``random.Random(seed)``
(workers/sim/faults.py).

The batch APIs (workers/sim/openai_batches.py, workers/sim/anthropic_batches.py) answer a
batch's requests all at once, at the first retrieve ``batch_processing_s`` seconds or more after
its creation (before that it is in progress). Each request is decided when the batch is created,
from the same random source: with probability ``batch_expire_rate`` it is not reached (the
batch then ends as expired, that request ``batch_expired`` / ``expired``), else with
``batch_error_rate`` it is answered with a 500 error, else with the deterministic answer. The
realtime faults above do not apply to batch requests.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SimConfig"]


@dataclass(frozen=True)
class SimConfig:
    """Behaviour of the simulated provider; all rates are probabilities in [0, 1]."""

    latency_ms_mean: float = 0.0
    latency_ms_jitter: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    seed: int = 0
    fail_models: tuple[str, ...] = ()  # every request for these models answers 500 (outage)
    auth_error_rate: float = 0.0  # 401 echoing the request's auth headers (a careless provider)
    batch_processing_s: float = 0.0  # a batch ends at the first retrieve this long after creation
    batch_error_rate: float = 0.0  # per batch request: answered with a 500 error line
    batch_expire_rate: float = 0.0  # per batch request: not reached; its batch ends expired

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "fail_models":
                if isinstance(value, str) or not all(isinstance(m, str) for m in value):
                    raise ValueError("fail_models must be a list of model names")
                object.__setattr__(self, f.name, tuple(value))
                continue
            if f.name == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("seed must be an integer")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be a finite, non-negative number")
            if f.name.endswith("_rate") and value > 1:
                raise ValueError(f"{f.name} must be between 0 and 1")
            object.__setattr__(self, f.name, float(value))

    def updated(self, changes: dict[str, Any]) -> SimConfig:
        """Return a copy with ``changes`` applied; unknown fields raise ValueError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fail_models": list(self.fail_models)}
