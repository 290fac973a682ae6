"""Exact-duplicate fingerprints, vectorised with polars.

Normalisation (documented contract): the system prompt and the prompt are each
whitespace-collapsed and stripped, then joined with a unit separator, after the row's
*scope* (the tenant and the requested ``max_output_tokens``: a different tenant or a
different output limit is a different request); the fingerprint is polars' 64-bit hash
of that string, rendered in decimal. Two rows with the same fingerprint in one chunk are
the same request: the first is answered, the others carry ``dedupe_of`` = the first
row's ``prompt_id``. (polars' hash is stable within a process, not across versions: it
is not meant to be persisted.)
"""

from __future__ import annotations

import polars as pl

_SEP = "\x1f"
# Replacing this with one space collapses every whitespace run to one space, as ``\s+``
# would, but matches only the runs that change (not each single space between words):
# ~4x faster on real prompts. A run of two or more is matched whole from its start
# (leftmost-first, greedy); a single non-space whitespace character is matched alone; a
# single space is not matched.
COLLAPSE = r"\s{2,}|[^\S ]"


def fingerprint_expr(
    prompt: str = "prompt", system: str = "system", scope: str | None = None
) -> pl.Expr:
    def norm(name: str) -> pl.Expr:
        return pl.col(name).fill_null("").str.replace_all(COLLAPSE, " ").str.strip_chars()

    return (
        pl.concat_str(
            [*([pl.col(scope).fill_null("")] if scope else []), norm(system), norm(prompt)],
            separator=_SEP,
        )
        .hash(seed=0x5EED)
        .cast(pl.String)
    )


def mark_duplicates(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``fingerprint`` and ``dedupe_of`` (null for the first occurrence) to ``df``.

    ``df`` needs ``prompt_id``, ``prompt`` and ``system`` columns; an optional ``scope``
    column (tenant, output limit) separates otherwise equal requests.
    """
    scope = "scope" if "scope" in df.columns else None
    with_fp = df.with_columns(fingerprint_expr(scope=scope).alias("fingerprint"))
    first = pl.col("prompt_id").first().over("fingerprint")
    return with_fp.with_columns(
        pl.when(first != pl.col("prompt_id")).then(first).otherwise(None).alias("dedupe_of")
    )
