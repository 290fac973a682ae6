"""The simulator's counters, as ``GET /_sim/stats`` shows them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stats"]


@dataclass
class Stats:
    """Requests, outcomes, per-model counts and distinct prompts since the last reset."""

    requests: int = 0
    completions: int = 0
    errors: int = 0
    rate_limited: int = 0
    invalid: int = 0
    hangs: int = 0
    abandoned: int = 0
    duplicate_prompts: int = 0
    by_model: Counter[str] = field(default_factory=Counter)
    requests_by_model: Counter[str] = field(default_factory=Counter)
    seen: set[int] = field(default_factory=set)  # 64-bit fingerprint prefixes: compact
    sections: dict[str, Counter[str]] = field(default_factory=dict)

    def record_completion(self, model: str, digest: bytes) -> None:
        self.completions += 1
        self.by_model[model] += 1
        key = int.from_bytes(digest[:8], "big")
        if key in self.seen:
            self.duplicate_prompts += 1
        else:
            self.seen.add(key)

    def section(self, name: str) -> Counter[str]:
        """The counters of one endpoint module of its own (a batch API, say), shown under
        ``name`` in :meth:`as_dict` once the module has used them."""
        return self.sections.setdefault(name, Counter())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completions": self.completions,
            "errors": self.errors,
            "rate_limited": self.rate_limited,
            "invalid": self.invalid,
            "hangs": self.hangs,
            "abandoned": self.abandoned,
            "by_model": dict(self.by_model),
            "requests_by_model": dict(self.requests_by_model),
            "distinct_prompts": len(self.seen),
            "duplicate_prompts": self.duplicate_prompts,
            **{name: dict(counters) for name, counters in self.sections.items()},
        }
