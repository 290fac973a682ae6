"""PII detection over a whole batch of prompts: :class:`PiiDetector` (three passes, see
:mod:`routing.pii`) and :func:`detect` with every built-in kind."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl
import pyarrow as pa

from routing.pii.kinds import BUILTIN_KINDS, PiiKind

PII_COLUMN = "pii_kinds"


class PiiDetector:
    """Detects a fixed set of PII kinds in batches of prompts. Build once, reuse.

    One pass of the union of the kinds' prefilters over the whole batch selects the
    candidate rows (a few percent of real traffic); each kind's prefilter, pattern and
    validator then run on those rows only. Kinds without a prefilter scan every row.
    """

    def __init__(self, kinds: Iterable[PiiKind] | None = None) -> None:
        chosen = list(BUILTIN_KINDS.values()) if kinds is None else list(kinds)
        names = [k.name for k in chosen]
        if len(set(names)) != len(names):
            raise ValueError(f"PII kind names must be unique: {names}")
        for kind in chosen:
            kind.check()
        self.kinds: tuple[PiiKind, ...] = tuple(sorted(chosen, key=lambda k: k.name))
        prefilters = [k.prefilter for k in self.kinds if k.prefilter is not None]
        self._union = "|".join(f"(?:{p})" for p in prefilters) if prefilters else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.kinds)

    def flags(self, prompts: pl.Series) -> pl.DataFrame:
        """One boolean column per kind (in name order): is that kind in the prompt?"""
        matrix = self._matrix(prompts)
        return pl.DataFrame(
            {name: matrix[:, j] for j, name in enumerate(self.names)},
            schema={name: pl.Boolean for name in self.names},
        )

    def detect(self, prompts: pl.Series) -> pl.Series:
        """Per prompt, the sorted unique names of the PII kinds found (``list[str]``)."""
        matrix = self._matrix(prompts)
        # Built as Arrow offsets + values: per-row Python lists or ``concat_list`` over
        # boolean columns cost ~60 ms per 17k rows, this ~1 ms.
        rows, cols = np.nonzero(matrix)  # row-major: kinds come out in name order
        offsets = np.zeros(len(matrix) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(matrix)), out=offsets[1:])
        values = pa.array([self.names[j] for j in cols], pa.string())
        lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)
        return pl.Series(PII_COLUMN, lists, dtype=pl.List(pl.String))

    def _matrix(self, prompts: pl.Series) -> np.ndarray:
        """rows × kinds booleans."""
        text = prompts.cast(pl.String)
        matrix = np.zeros((len(text), len(self.kinds)), dtype=np.bool_)
        if not self.kinds or len(text) == 0:
            return matrix
        rows = np.arange(len(text))
        candidates = text
        if self._union is not None:
            rows = text.str.contains(self._union).fill_null(value=False).arg_true().to_numpy()
            candidates = text.gather(rows)
        for j, kind in enumerate(self.kinds):
            if kind.prefilter is None:
                matrix[:, j] = _flag(text, kind)
            elif len(rows):
                matrix[rows, j] = _flag(candidates, kind)
        return matrix


def _flag(text: pl.Series, kind: PiiKind) -> np.ndarray:
    """Does ``kind`` occur in each text? The prefilter first, then the full pattern and
    the validator on the rows that passed it."""
    hit = text.str.contains(kind.prefilter or kind.pattern).fill_null(value=False)
    result = hit.to_numpy()
    if not hit.any() or (kind.validator is None and kind.prefilter is None):
        return result
    rows = hit.arg_true()
    candidates = text.gather(rows)
    check = kind.validator
    if check is None:
        valid = candidates.str.contains(kind.pattern).to_numpy()
    else:
        matches = candidates.str.extract_all(kind.pattern).to_list()
        valid = np.array([any(check(m) for m in ms or ()) for ms in matches], np.bool_)
    result = np.zeros(len(text), dtype=np.bool_)
    result[rows.to_numpy()] = valid
    return result


_DEFAULT: PiiDetector | None = None


def detect(prompts: pl.Series) -> pl.Series:
    """:meth:`PiiDetector.detect` with every built-in kind."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PiiDetector()
    return _DEFAULT.detect(prompts)
