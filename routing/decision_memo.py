"""Routing decisions of requests seen before, across batches: a bounded, fork-safe memo.

A row's decision — its score, tier, reasons, allowed tiers, PII kinds, gaming flags, input
tokens and fingerprint — is a function of its system prompt, its prompt, its *scope* (the
columns rules read and the output limit: routing.router) and the policy and scorer
versions; nothing else in the batch changes it (only which row answers a duplicate does,
and :mod:`routing.router` works that out per batch). Nightly traffic repeats requests
across chunks and nights, so :func:`routing.router.route_batch` looks rows up here first
and routes only the rows it has not seen.

Keys are two independently seeded 64-bit polars hashes of (scope, system, prompt): the
first indexes the memo, the second is checked on every hit, so a wrong decision would need
both to collide (~2^-128 per pair of distinct requests). polars' hash is stable within a
process, and the memo never leaves one. A memo is per (policy version, scorer version,
scorer object) — the object too, so two scorers that share a version string by mistake
never share decisions; the memo holds a reference to it, so its id is not reused while
its decisions are kept. At most ``max_namespaces`` are kept, each bounded by
``max_entries`` (oldest first out); an entry holds ~0.6 KB (its tuple and strings: route
reason, fingerprint, …; measured with tracemalloc on the corpus), so a full namespace
takes ~60 MB. Thread-safe (one lock); a forked child starts empty with a new lock
(routing/forks.py). No instance lives here: the caller owns it
(workers/memos.py for a worker process) and passes it to ``route_batch``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from itertools import islice
from typing import Any

import numpy as np

from routing import forks

# The values kept per request, in this order (routing.router builds and reads them).
FIELDS = (
    "complexity_score",
    "tier",
    "route_reason",
    "rejected_reason",
    "allowed",
    "pii_kinds",
    "gaming_flags",
    "input_tokens",
    "fingerprint",
)
Decision = tuple[Any, ...]


class DecisionMemo:
    """Decisions by request key, per (policy version, scorer version)."""

    def __init__(self, max_entries: int = 100_000, max_namespaces: int = 4) -> None:
        self.max_entries, self.max_namespaces = max_entries, max_namespaces
        self.clear()
        forks.register(self)

    def clear(self) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[tuple[str, str, int], dict[int, tuple[int, Decision]]] = {}
        self._owners: dict[tuple[str, str, int], object] = {}  # keeps each scorer's id taken

    def reset_after_fork(self) -> None:
        """In a forked child (routing/forks.py): empty, with a new lock."""
        self.clear()

    def __len__(self) -> int:
        return sum(len(space) for space in self._spaces.values())

    def lookup(
        self, namespace: tuple[str, str], owner: object, h1: np.ndarray, h2: np.ndarray
    ) -> list[Decision | None]:
        """Per key, its decision, or None when not seen (or the second hash differs)."""
        with self._lock:
            space = self._spaces.get((*namespace, id(owner)))
            if space is None:
                return [None] * len(h1)
            found = list(map(space.get, h1.tolist()))
        check = h2.tolist()
        return [
            None if entry is None or entry[0] != check[i] else entry[1]
            for i, entry in enumerate(found)
        ]

    def store(
        self,
        namespace: tuple[str, str],
        owner: object,
        h1: np.ndarray,
        h2: np.ndarray,
        decisions: Sequence[Decision],
    ) -> None:
        """Remember ``decisions`` under their keys (the oldest entries make room)."""
        if self.max_entries <= 0 or not len(decisions):
            return
        key = (*namespace, id(owner))
        with self._lock:
            space = self._spaces.get(key)
            if space is None:
                if len(self._spaces) >= self.max_namespaces:
                    oldest = next(iter(self._spaces))
                    del self._spaces[oldest], self._owners[oldest]
                space = self._spaces[key] = {}
                self._owners[key] = owner
            space.update(zip(h1.tolist(), zip(h2.tolist(), decisions, strict=True), strict=True))
            excess = len(space) - self.max_entries
            if excess > 0:  # insertion order: the oldest keys first
                for old in list(islice(space, excess)):
                    del space[old]
