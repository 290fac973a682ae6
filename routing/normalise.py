"""The text normalisation of the fingerprint contract (``batch-router-fp``, described in
:mod:`routing.dedupe`): Unicode NFKC, every run of white space collapsed to one space and
stripped, optionally lower-cased. Exact dedupe, near-duplicate detection and the audit
trail's fingerprints all normalise text this way."""

from __future__ import annotations

import unicodedata

import polars as pl

# Replacing this with one space collapses every whitespace run to one space, as ``\s+``
# would, but matches only the runs that change (not each single space between words):
# ~4x faster on real prompts. A run of two or more is matched whole from its start
# (leftmost-first, greedy); a single non-space whitespace character is matched alone; a
# single space is not matched.
COLLAPSE = r"\s{2,}|[^\S ]"
_NON_ASCII = r"[^\x00-\x7f]"  # ASCII text is already NFKC: skip the (slow) normalisation


def normalise_expr(expr: pl.Expr, *, case_sensitive: bool = True) -> pl.Expr:
    """Steps 2–3 of the contract on a string expression (NFKC is applied by the caller to
    non-ASCII texts only: see :func:`normalised`)."""
    out = expr.fill_null("").str.replace_all(COLLAPSE, " ").str.strip_chars()
    return out if case_sensitive else out.str.to_lowercase()


def normalised(texts: pl.Series, *, case_sensitive: bool = True) -> pl.Series:
    """The normalised form of each text (the whole contract)."""
    texts = texts.cast(pl.String)
    wide = texts.str.contains(_NON_ASCII).fill_null(False)
    if wide.any():  # NFKC only where it can change something; the stdlib's is ~2.5x faster
        nfkc = [unicodedata.normalize("NFKC", t) for t in texts.filter(wide).to_list()]
        texts = texts.scatter(wide.arg_true(), pl.Series(nfkc, dtype=pl.String))
    frame = pl.DataFrame({"t": texts})
    return frame.select(normalise_expr(pl.col("t"), case_sensitive=case_sensitive)).to_series()
