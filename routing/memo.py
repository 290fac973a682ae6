"""The values of a text alone — o200k token count, features, PII kinds, gaming flags —
computed once per distinct text and kept across batches in a bounded, fork-safe
:class:`TextMemo` (nightly jobs repeat prompts, templates and system prompts across chunks;
a forked child finds every memo empty: routing/forks.py).
Used by :mod:`routing.router`; no instance lives here: the caller owns its memos (a worker
process's are in workers/memos.py) and passes them to ``route_batch``.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from functools import cache
from itertools import compress, repeat

import numpy as np
import polars as pl

from routing import forks
from routing.features import FEATURES, compute_features
from routing.gaming import GamingSpec, detect_gaming
from routing.pii.detector import PII_COLUMN, PiiDetector
from routing.rules import PiiSpec
from routing.tokens import count_tokens

_KINDS = pl.List(pl.String)


@cache
def _detector(spec: PiiSpec) -> PiiDetector:
    return spec.detector()


@cache
def _feature_schema() -> pl.Schema:
    return compute_features(pl.Series([], dtype=pl.String)).schema


class TextValues:
    """Token counts, features, PII kinds and gaming flags (the last three optional) of
    distinct texts."""

    def __init__(
        self,
        tokens: np.ndarray,
        features: pl.DataFrame | None,
        kinds: pl.Series | None,
        gaming: pl.Series | None = None,
    ):
        self.tokens, self.features, self.kinds, self.gaming = tokens, features, kinds, gaming


def compute_values(
    texts: Sequence[str | None],
    *,
    features: bool = False,
    pii: PiiSpec | None = None,
    gaming: GamingSpec | None = None,
) -> TextValues:
    """The values of ``texts``, computed (no memo)."""
    if not features and pii is None and gaming is None:
        return TextValues(count_tokens(texts), None, None)
    series = pl.Series("prompt", texts, dtype=pl.String)
    feats = compute_features(series) if features or gaming is not None else None
    return TextValues(
        count_tokens(texts),
        feats if features else None,
        _detector(pii).detect(series) if pii is not None else None,
        detect_gaming(series, gaming, feats) if gaming is not None else None,
    )


class TextMemo:
    """The values of texts seen before, across batches: token count, features, PII kinds.

    Keys are the texts themselves, so a hit is an exact match — no hash collision can hand
    one text another's values — and results are the same with or without the memo.
    Bounded: at most ``max_entries`` texts and ``max_bytes`` of them (``sys.getsizeof``),
    least recently used out first. Besides the texts it holds ~240 bytes per text (ordered
    dict entry, slot, 11 numbers, a pointer per PII detector in use, at most 4; measured),
    so the defaults (100,000 texts, 64 MiB of text) stay under ~90 MiB (plus a pointer per
    gaming spec in use). Thread-safe (one
    lock, held for look-ups and stores; the computing happens outside it). Fork-safe: a
    forked child starts empty, with a new lock (another thread may have held the old one).
    """

    MAX_DETECTORS = 4

    def __init__(self, max_entries: int = 100_000, max_bytes: int = 64 << 20) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.clear()
        forks.register(self)

    def clear(self) -> None:
        self._lock = threading.Lock()
        self._slots: OrderedDict[str | None, int] = OrderedDict()
        self._free: list[int] = []
        self._bytes = 0
        self._tokens = np.zeros(0, np.int64)
        self._features = np.zeros((0, len(FEATURES)), np.float64)  # NaN: not computed
        self._kinds: dict[Hashable, np.ndarray] = {}  # per PII spec: tuple, None: unknown
        self._gaming: dict[Hashable, np.ndarray] = {}  # per gaming spec: str ("": none), None

    def reset_after_fork(self) -> None:
        """In a forked child (routing/forks.py): empty, with a new lock."""
        self.clear()

    def __len__(self) -> int:
        return len(self._slots)

    def values(
        self,
        texts: Sequence[str | None],
        *,
        features: bool = False,
        pii: PiiSpec | None = None,
        gaming: GamingSpec | None = None,
    ) -> TextValues:
        """The values of distinct ``texts``: from the memo, or computed and remembered."""
        n = len(texts)
        tokens = np.zeros(n, np.int64)
        feats = np.full((n, len(FEATURES)), np.nan) if features else None
        kinds = np.full(n, None, object) if pii is not None else None
        flags = np.full(n, None, object) if gaming is not None else None
        with self._lock:
            slots = np.fromiter(map(self._slots.get, texts, repeat(-1)), np.int64, n)
            hit = slots >= 0
            deque(map(self._slots.move_to_end, compress(texts, hit)), maxlen=0)  # used now
            tokens[hit] = self._tokens[slots[hit]]
            if feats is not None:
                feats[hit] = self._features[slots[hit]]
            column = self._kinds.get(pii) if kinds is not None else None
            if kinds is not None and column is not None:
                kinds[hit] = column[slots[hit]]
            stored = self._gaming.get(gaming) if flags is not None else None
            if flags is not None and stored is not None:
                flags[hit] = stored[slots[hit]]
        todo = ~hit
        if feats is not None:
            todo |= np.isnan(feats[:, 0])
        if kinds is not None:
            todo |= np.fromiter((k is None for k in kinds), np.bool_, n)
        if flags is not None:
            todo |= np.fromiter((f is None for f in flags), np.bool_, n)
        rows = np.flatnonzero(todo)
        if len(rows):
            new = [texts[i] for i in rows.tolist()]
            fresh = compute_values(new, features=features, pii=pii, gaming=gaming)
            tokens[rows] = fresh.tokens
            if feats is not None and fresh.features is not None:
                feats[rows] = fresh.features.to_numpy().astype(np.float64)
            if kinds is not None and fresh.kinds is not None:
                kinds[rows] = [tuple(k) for k in fresh.kinds.to_list()]
            if flags is not None and fresh.gaming is not None:
                flags[rows] = [f or "" for f in fresh.gaming.to_list()]
            with self._lock:
                self._remember(new, tokens[rows], feats, kinds, rows, pii)
                if flags is not None:
                    self._remember_flags(new, flags, rows, gaming)
        return self._result(tokens, feats, kinds, flags)

    def _remember_flags(
        self, texts: list[str | None], flags: np.ndarray, rows: np.ndarray, spec: Hashable
    ) -> None:
        """Store the gaming flags of ``texts`` (already given slots by ``_remember``)."""
        column = self._gaming.get(spec)
        if column is None:
            if len(self._gaming) >= self.MAX_DETECTORS:
                self._gaming.clear()
            column = self._gaming[spec] = np.full(len(self._tokens), None, object)
        slots = np.fromiter(map(self._slots.get, texts, repeat(-1)), np.int64, len(texts))
        kept = slots >= 0
        column[slots[kept]] = flags[rows[kept]]

    @staticmethod
    def _result(
        tokens: np.ndarray,
        feats: np.ndarray | None,
        kinds: np.ndarray | None,
        flags: np.ndarray | None = None,
    ) -> TextValues:
        frame = None
        if feats is not None:
            frame = pl.DataFrame(
                [
                    pl.Series(name, feats[:, j]).cast(dtype)
                    for j, (name, dtype) in enumerate(_feature_schema().items())
                ]
            )
        gaming = None
        if flags is not None:
            stored = pl.Series("gaming_flags", flags.tolist(), dtype=pl.String)
            gaming = pl.select(pl.when(stored != "").then(stored)).to_series()  # "": none
        return TextValues(tokens, frame, _kinds(kinds) if kinds is not None else None, gaming)

    def _remember(
        self,
        texts: list[str | None],
        tokens: np.ndarray,
        feats: np.ndarray | None,
        kinds: np.ndarray | None,
        rows: np.ndarray,
        pii: PiiSpec | None,
    ) -> None:
        """Store the values of ``texts`` (rows ``rows`` of ``feats``/``kinds``)."""
        slots = np.fromiter(map(self._slot, texts), np.int64, len(texts))
        kept = slots >= 0
        slots, rows = slots[kept], rows[kept]
        self._tokens[slots] = tokens[kept]
        if feats is not None:
            self._features[slots] = feats[rows]
        if kinds is not None:
            column = self._kinds.get(pii)
            if column is None:
                if len(self._kinds) >= self.MAX_DETECTORS:
                    self._kinds.clear()
                column = self._kinds[pii] = np.full(len(self._tokens), None, object)
            column[slots] = kinds[rows]

    def _slot(self, text: str | None) -> int:
        """The slot of ``text``, made (evicting the least recently used) if it is new;
        -1 if it cannot be kept."""
        slot = self._slots.get(text)
        if slot is not None:
            return slot
        size = sys.getsizeof(text)
        if size > self.max_bytes or self.max_entries <= 0:
            return -1
        while self._slots and (
            len(self._slots) >= self.max_entries or self._bytes + size > self.max_bytes
        ):
            old, freed = self._slots.popitem(last=False)
            self._bytes -= sys.getsizeof(old)
            self._free.append(freed)
        slot = self._free.pop() if self._free else self._grow()
        self._slots[text] = slot
        self._bytes += size
        self._features[slot] = np.nan  # a new text: only what is stored now is known
        for column in (*self._kinds.values(), *self._gaming.values()):
            column[slot] = None
        return slot

    def _grow(self) -> int:
        slot = len(self._tokens)
        size = min(max(1024, 2 * slot), max(self.max_entries, 1))
        self._tokens = np.resize(self._tokens, size)
        self._features = np.resize(self._features, (size, len(FEATURES)))
        for key, column in self._kinds.items():
            self._kinds[key] = np.resize(column, size)
        for key, column in self._gaming.items():
            self._gaming[key] = np.resize(column, size)
        self._free.extend(range(size - 1, slot, -1))
        return slot


def _kinds(found: np.ndarray) -> pl.Series:
    """PII kind lists (tuples) as detect's ``list[str]`` Series; few distinct ones."""
    ids: dict[tuple[str, ...], int] = {}
    rows = [ids.setdefault(k, len(ids)) for k in found]
    return pl.Series(PII_COLUMN, [list(k) for k in ids], dtype=_KINDS).gather(rows)
