"""Near-duplicates: MinHash LSH (datasketch) over word shingles, verified exactly.

Method, per chunk, over the rows that are not exact duplicates, in row order:

1. A text is the fingerprint normalisation of its prompt (:mod:`routing.dedupe`: NFKC,
   whitespace collapsed), lower-cased, split into words (``\\w+``); its shingles are the
   word 3-grams (the whole word sequence when shorter).
2. MinHash signatures (``num_perm`` permutations) go into an LSH index of *representatives*
   (rows not flagged themselves) tuned to a Jaccard a little below ``threshold``; each new
   row queries it for candidates.
3. A candidate is a near-duplicate only if the exact Jaccard of the two shingle sets is
   ``≥ threshold`` **and** both rows have the same scope and normalised system prompt, the
   same numbers in the same order, and the same multiple-choice option lines (``A. …``):
   a changed number or answer option is a different question, however similar the text.
4. The row is flagged with the most similar candidate (the earliest on a tie).

``docs/dedupe.md`` gives the false-hit rate of the default threshold on the shared corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl
from datasketch import MinHash, MinHashLSH

from routing.normalise import normalised

SHINGLE_WORDS = 3
_WORD = re.compile(r"\w+|[^\w\s]")  # words and single symbols (+, <, / matter)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_OPTION = re.compile(r"^[ \t]*\(?[A-Ja-j][.)][ \t].*$", re.MULTILINE)
_LSH_MARGIN = 0.1  # the index finds pairs from threshold - margin; Jaccard decides


@dataclass(frozen=True)
class Doc:
    """What near-duplicate matching reads of one text."""

    shingles: frozenset[str]
    guard: tuple[str, ...]  # group, numbers, option lines: must be equal to match


def shingles(text: str) -> frozenset[str]:
    words = _WORD.findall(text)
    k = SHINGLE_WORDS
    if len(words) <= k:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + k]) for i in range(len(words) - k + 1))


def make_doc(text: str, raw: str | None = None, group: str = "") -> Doc:
    """``text``: normalised and lower-cased (:func:`docs_of`); ``raw``: as written (its
    option lines are read before whitespace is collapsed)."""
    options = "\n".join(" ".join(m.split()).lower() for m in _OPTION.findall(raw or text))
    return Doc(shingles(text), (group, " ".join(_NUMBER.findall(text)), options))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def docs_of(prompts: pl.Series, groups: list[str]) -> list[Doc]:
    """One :class:`Doc` per prompt (normalised as fingerprints are, lower-cased)."""
    raw = prompts.cast(pl.String).fill_null("").to_list()
    texts = normalised(prompts, case_sensitive=False).to_list()
    return [make_doc(t, r, g) for t, r, g in zip(texts, raw, groups, strict=True)]


def find(docs: list[Doc], threshold: float, num_perm: int = 128) -> list[int]:
    """Per doc, the index of an earlier near-duplicate representative, or -1."""
    lsh = MinHashLSH(threshold=max(threshold - _LSH_MARGIN, 0.3), num_perm=num_perm)
    sigs = MinHash.bulk([[s.encode() for s in d.shingles] for d in docs], num_perm=num_perm)
    out = [-1] * len(docs)
    for i, (doc, sig) in enumerate(zip(docs, sigs, strict=True)):
        best, best_j = -1, threshold
        for j in sorted(int(k) for k in lsh.query(sig)):
            other = docs[j]
            if other.guard != doc.guard:
                continue
            similarity = jaccard(doc.shingles, other.shingles)
            if similarity >= best_j and (best < 0 or similarity > best_j):
                best, best_j = j, similarity
        if best >= 0:
            out[i] = best
        else:
            lsh.insert(str(i), sig)
    return out


def near_duplicates(
    df: pl.DataFrame,
    canonical: np.ndarray,
    threshold: float,
    num_perm: int,
    *,
    scope: str | None = None,
) -> np.ndarray:
    """Per row of ``df`` (``prompt``, optional ``system`` / ``scope``), the row index of its
    near-duplicate, or -1; only rows that are their own ``canonical`` are matched."""
    rows = np.flatnonzero(canonical == np.arange(df.height))
    sub = df[rows]
    system = (
        normalised(sub.get_column("system"), case_sensitive=False).to_list()
        if "system" in sub.columns
        else [""] * len(rows)
    )
    scopes = sub.get_column(scope).cast(pl.String).fill_null("").to_list() if scope else None
    groups = [f"{scopes[i] if scopes else ''}\x1f{s}" for i, s in enumerate(system)]
    found = find(docs_of(sub.get_column("prompt"), groups), threshold, num_perm)
    out = np.full(df.height, -1, np.int64)
    for i, j in enumerate(found):
        if j >= 0:
            out[rows[i]] = rows[j]
    return out
