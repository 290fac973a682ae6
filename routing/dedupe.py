"""Exact-duplicate fingerprints and in-chunk duplicate marking, vectorised with polars.

Normalisation contract (``batch-router-fp/v1``), applied to the system prompt and the
prompt separately:

1. Unicode NFKC (compatibility forms folded: full-width letters, ligatures, NBSP → space);
2. every run of Unicode ``White_Space`` collapsed to one space, then stripped;
3. lower-cased (Unicode default lower-casing) only when the policy's
   ``dedupe.case_sensitive`` is false.

A null or empty system prompt is the same as none. The fingerprint is the BLAKE2b-128
digest (32 hex characters) of ``scope ␟ system ␟ prompt`` (UTF-8, unit separators), where
*scope* is what else makes two requests differ (tenant, customer tier, domain, metadata,
output limit; built by :mod:`routing.router`). BLAKE2b is in every Python's ``hashlib``
and does not depend on the polars version, so fingerprints computed on different hosts —
a fleet mid-upgrade included — agree, and can be shared through Redis (job-wide dedupe).

Speed: rows are first grouped by their *raw* text with polars' own 64-bit hash (two
independently seeded hashes must both agree; in-process only, never stored), so the
normalisation and the digest run once per distinct raw text, not once per row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from routing.frozen import Frozen
from routing.normalise import normalised

FORMAT = "batch-router-fp/v2"  # v2: length-prefixed key parts
_SEP = "\x1f"
CANONICAL = "canonical_row"  # mark_duplicates: the row (index) that answers this one


class NearDupSpec(Frozen):
    """Near-duplicate detection (MinHash LSH, :mod:`routing.neardup`): flagged in
    ``near_dup_of``; with ``reuse`` the flagged row is answered with its near-duplicate's
    answer instead of being sent (opt-in: a near-duplicate may ask something else)."""

    enabled: bool = False
    threshold: float = Field(0.95, gt=0.5, le=1.0, description="word-shingle Jaccard")
    reuse: bool = False
    num_perm: int = Field(128, ge=16, le=512)


class DedupeSpec(Frozen):
    """The policy's ``dedupe:`` section (docs/dedupe.md)."""

    case_sensitive: bool = True
    job_wide: bool = Field(True, description="a prompt is sent once per job, not per chunk")
    near_duplicates: NearDupSpec = NearDupSpec()


def digest(keys: pl.Series) -> pl.Series:
    """BLAKE2b-128 hex digest of each (UTF-8) string."""
    blake2b = hashlib.blake2b
    raw = keys.cast(pl.Binary).to_list()
    return pl.Series([blake2b(b, digest_size=16).hexdigest() for b in raw], dtype=pl.String)


def fingerprint_key(
    frame: pl.DataFrame, *, case_sensitive: bool = True, scope: str | None = None
) -> pl.Series:
    """The string a fingerprint digests, per row of ``frame`` (``prompt``, ``system`` and
    optionally ``scope`` columns): each part as ``<length in characters>:<text>``, joined
    by U+001F — the length prefix makes the key unambiguous whatever the texts hold."""
    n = frame.height
    parts = [
        normalised(
            frame.get_column(c) if c in frame.columns else pl.repeat("", n, eager=True),
            case_sensitive=case_sensitive,
        )
        for c in ("system", "prompt")
    ]
    if scope is not None:
        parts.insert(0, frame.get_column(scope).cast(pl.String).fill_null(""))
    prefixed = [
        pl.concat_str([pl.lit(p).str.len_chars().cast(pl.String), pl.lit(":"), pl.lit(p)])
        for p in parts
    ]
    return pl.select(pl.concat_str(prefixed, separator=_SEP)).to_series()


def _texts(frame: pl.DataFrame) -> list[str]:
    return [c for c in ("system", "prompt") if c in frame.columns]


@dataclass(frozen=True)
class Fingerprints:
    """Per row: its fingerprint, and the first row with the same fingerprint."""

    fingerprint: pl.Series
    canonical: np.ndarray


def _raw_groups(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Per row, the first row with the same raw values of ``columns``."""

    def hashed(seed: int) -> pl.Expr:
        out = pl.lit(0, pl.UInt64)
        for i, c in enumerate(columns):
            out = out ^ pl.col(c).hash(seed + 7919 * i)
        return out

    keys = frame.select(hashed(0x5EED).alias("h1"), hashed(0xF00D).alias("h2")).with_row_index()
    firsts = keys.filter(pl.col("h1").is_first_distinct()).select("h1", first="index")
    joined = keys.join(firsts, on="h1", how="left", maintain_order="left")
    first = joined.get_column("first").to_numpy()
    h2 = joined.get_column("h2").to_numpy()
    if np.array_equal(h2, h2[first]):
        return first.astype(np.int64)
    return _exact_groups(frame, columns)  # two texts share h1: never seen in practice


def _exact_groups(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """:func:`_raw_groups` on the exact values (slower: compares whole strings)."""
    exact = frame.select(columns).with_row_index()
    first_exact = exact.group_by(columns, maintain_order=True).agg(pl.col("index").first())
    joined_exact = exact.join(
        first_exact.rename({"index": "first"}),
        on=columns,
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )
    return joined_exact.get_column("first").to_numpy().astype(np.int64)


def fingerprints(
    frame: pl.DataFrame, *, case_sensitive: bool = True, scope: str | None = None
) -> Fingerprints:
    """Fingerprints of every row of ``frame`` (``prompt``, optional ``system``, optional
    ``scope`` column), computed once per distinct raw text."""
    n = frame.height
    if n == 0:
        return Fingerprints(pl.Series("fingerprint", [], pl.String), np.zeros(0, np.int64))
    columns = [*([scope] if scope else []), *_texts(frame)]
    raw_first = _raw_groups(frame, columns)
    distinct_rows = np.flatnonzero(raw_first == np.arange(n))
    distinct = frame.select(columns)[distinct_rows]
    fp = digest(fingerprint_key(distinct, case_sensitive=case_sensitive, scope=scope))
    # The first row of each fingerprint, among the distinct raw texts (in row order).
    by_fp = pl.DataFrame({"fp": fp, "row": distinct_rows})
    fp_first = by_fp.select(pl.col("row").first().over("fp")).to_series().to_numpy()
    slot = np.empty(n, np.int64)
    slot[distinct_rows] = np.arange(len(distinct_rows))
    of_row = slot[raw_first]
    return Fingerprints(fp.gather(of_row).alias("fingerprint"), fp_first[of_row].astype(np.int64))


def first_occurrences(fingerprint: pa.ChunkedArray | pl.Series, ids: pl.Series) -> pl.DataFrame:
    """The marks :func:`mark_duplicates` gives rows whose ``fingerprint`` is already known
    (near-duplicates off): ``dedupe_of``, ``near_dup_of`` (null) and :data:`CANONICAL`,
    the first row with the same fingerprint."""
    fp = pl.Series("fingerprint", fingerprint, dtype=pl.String)
    n = len(fp)
    canonical = (
        pl.DataFrame({"fp": fp, "row": np.arange(n, dtype=np.int64)})
        .select(pl.col("row").first().over("fp"))
        .to_series()
        .to_numpy()
    )
    own = canonical == np.arange(n)
    dedupe_of = pl.select(pl.when(pl.Series(~own)).then(ids.gather(canonical))).to_series()
    return pl.DataFrame(
        [
            dedupe_of.alias("dedupe_of"),
            pl.Series("near_dup_of", [None] * n, pl.String),
            pl.Series(CANONICAL, canonical, pl.Int64),
        ]
    )


def mark_duplicates(df: pl.DataFrame, spec: DedupeSpec | None = None) -> pl.DataFrame:
    """Add ``fingerprint``, ``dedupe_of`` (null for the first occurrence),
    ``near_dup_of`` and :data:`CANONICAL` (the row that answers this one) to ``df``.

    ``df`` needs ``prompt_id`` and ``prompt`` (and ``system``) columns; an optional
    ``scope`` column (tenant, output limit…) separates otherwise equal requests. With
    near-duplicate ``reuse``, a near-duplicate's ``dedupe_of`` and canonical row are its
    near-duplicate's."""
    spec = spec or DedupeSpec()
    scope = "scope" if "scope" in df.columns else None
    fps = fingerprints(df, case_sensitive=spec.case_sensitive, scope=scope)
    canonical = fps.canonical
    near = pl.Series("near_dup_of", [None] * df.height, pl.String)
    ids = df.get_column("prompt_id")
    if spec.near_duplicates.enabled and df.height:
        from routing.neardup import near_duplicates  # datasketch: imported only when on

        near_spec = spec.near_duplicates
        target = near_duplicates(
            df, canonical, near_spec.threshold, near_spec.num_perm, scope=scope
        )
        flagged = target >= 0
        near = ids.gather(np.where(flagged, target, 0)).alias("near_dup_of")
        near = pl.select(pl.when(pl.Series(flagged)).then(near)).to_series().alias("near_dup_of")
        if spec.near_duplicates.reuse:  # a flagged row, and its exact duplicates, follow
            canonical = np.where(flagged, target, np.arange(df.height))[canonical]
    own = canonical == np.arange(df.height)
    dedupe_of = pl.select(pl.when(pl.Series(~own)).then(ids.gather(canonical))).to_series()
    return df.with_columns(
        fps.fingerprint,
        dedupe_of.alias("dedupe_of"),
        near,
        pl.Series(CANONICAL, canonical, pl.Int64),
    )
