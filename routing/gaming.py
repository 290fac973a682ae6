"""Complexity gaming: prompts engineered to look complex, flagged per row.

A router that sends long, code- or reasoning-heavy prompts to dearer tiers invites
padding a cheap question until it looks hard. :func:`detect_gaming` flags such prompts;
the flags are recorded in the ``gaming_flags`` output column and the policy may cap a
flagged prompt's tier (``gaming: {cap: balanced}``, applied as a step of routing.enforcement).

Kinds (a prompt may have several; they are listed in this order, comma-separated):

- ``invisible``: hidden characters — Unicode tag characters (any), or a run of 3+
  zero-width / invisible characters, or 8+ of them in all.
- ``bidi``: bidirectional overrides or isolates (U+202A–202E, U+2066–2069), which can
  hide or reorder text.
- ``whitespace``: a run of 200+ whitespace characters, or 25+ newlines in a row (text
  pushed out of sight).
- ``comment``: HTML comments of 200+ characters in all (text a reader never sees).
- ``blob``: a base64-like run of 256+ characters.
- ``repetition``: repeated filler — 50+ words with one word at 60%+ of them, or 100+
  words with Guiraud's index (distinct words / √words) under 1.2, or a prompt of
  ``min_repetition_chars`` or more that zlib compresses more than
  ``max_compression_ratio`` (7×).
- ``stuffing``: the complexity lexicons (reasoning verbs, constraint and maths words of
  routing.features) at 8+ hits and 25%+ of the words, or 5+ reasoning verbs among 20+
  words of which under 35% are distinct.

Thresholds were set on the shared corpus (16,935 real prompts: 4 flagged) and generated
gamed prompts (docs/governance.md). Everything is vectorised with polars except the zlib
ratio. Pure: no I/O.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from routing.features import compute_features

GAMING_KINDS = ("invisible", "bidi", "whitespace", "comment", "blob", "repetition", "stuffing")

_INVISIBLE = (
    r"[\x{200B}-\x{200D}\x{2060}-\x{2064}\x{FEFF}\x{00AD}\x{180E}\x{3164}\x{FFA0}\x{115F}"
    r"\x{1160}\x{034F}]"
)
_TAGS = r"[\x{E0000}-\x{E007F}]"
_BIDI = r"[\x{202A}-\x{202E}\x{2066}-\x{2069}]"
_WHITESPACE = r"\s{200,}|(?:[ \t\r]*\n){25,}"
_COMMENT = r"<!--(?s:.)*?-->"
_BLOB = r"[A-Za-z0-9+/]{256,}={0,2}"
_WORD = r"[^\W\d_]+"


class GamingSpec(BaseModel):
    """``gaming:`` in the policy. ``enabled``: detect and record ``gaming_flags``;
    ``cap``: the most expensive tier a flagged prompt may use (None: record only);
    ``kinds``: which kinds count (None: all of :data:`GAMING_KINDS`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    cap: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]*$")
    kinds: tuple[str, ...] | None = None
    min_repetition_chars: int = Field(1000, gt=0)
    max_compression_ratio: float = Field(7.0, gt=1)

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(value or ()) - set(GAMING_KINDS))
        if unknown:
            raise ValueError(f"unknown gaming kinds {unknown}; known: {list(GAMING_KINDS)}")
        return value


def detect_gaming(
    prompts: pl.Series, spec: GamingSpec | None = None, features: pl.DataFrame | None = None
) -> pl.Series:
    """Per prompt, the gaming kinds found, comma-separated (null: none).

    ``features``: routing.features values of the same prompts, if already computed."""
    spec = spec or GamingSpec()
    text = prompts.cast(pl.String).fill_null("").rename("prompt")
    if len(text) == 0:
        return pl.Series("gaming_flags", [], dtype=pl.String)
    feats = features if features is not None else compute_features(text)
    n_words = feats.get_column("n_words").to_numpy()
    verbs = feats.get_column("reasoning_verbs").to_numpy()
    stats = _word_stats(text, np.flatnonzero((n_words >= 50) | ((verbs >= 5) & (n_words >= 20))))
    frame = pl.DataFrame([text, *(feats.get_column(c) for c in (*_LEXICON, "n_words")), *stats])
    ratio = compression_ratio(text, spec.min_repetition_chars)
    flags = frame.select(
        _invisible().alias("invisible"),
        pl.col("prompt").str.contains(_BIDI).alias("bidi"),
        pl.col("prompt").str.contains(_WHITESPACE).alias("whitespace"),
        _comment().alias("comment"),
        pl.col("prompt").str.contains(_BLOB).alias("blob"),
        (_repeated_words() | pl.lit(ratio > spec.max_compression_ratio)).alias("repetition"),
        _stuffing().alias("stuffing"),
    )
    kinds = [k for k in GAMING_KINDS if spec.kinds is None or k in spec.kinds]
    names = [pl.when(pl.col(k)).then(pl.lit(k)) for k in kinds]
    joined = pl.concat_str(names, separator=",", ignore_nulls=True)
    return (
        flags.select(pl.when(joined != "").then(joined).alias("gaming_flags"))
        .to_series()
        .cast(pl.String)
    )


_LEXICON = ("reasoning_verbs", "constraint_words")
# The maths words of routing.features (its maths markers also count operators and LaTeX,
# which real maths prompts are full of).
_MATH_WORDS = r"equation|integral|derivative|probability|matrix|theorem|lemma|polynomial"


def _invisible() -> pl.Expr:
    text = pl.col("prompt")
    return (
        text.str.contains(_TAGS)
        | text.str.contains(_INVISIBLE + "{3,}")
        | (text.str.count_matches(_INVISIBLE) >= 8)
    )


def _comment() -> pl.Expr:
    comments = pl.col("prompt").str.extract_all(_COMMENT)
    return comments.list.eval(pl.element().str.len_chars()).list.sum().fill_null(0) >= 200


def _word_stats(text: pl.Series, rows: np.ndarray) -> list[pl.Series]:
    """Letter words (lowercased) of the given rows: how many (``words``), how many
    distinct (``distinct``) and the count of the most frequent one (``top``); 0 elsewhere.
    ``top`` is counted (a hash group-by of the exploded words) only where it could reach
    60% of the words, i.e. where at most 40% of them are distinct; elsewhere it is 0."""
    n = len(text)
    out = {name: np.zeros(n, np.int64) for name in ("words", "distinct", "top")}
    if not len(rows):
        return [pl.Series(name, values) for name, values in out.items()]
    words = text.gather(rows).str.to_lowercase().str.extract_all(_WORD)
    out["words"][rows] = words.list.len().to_numpy()
    out["distinct"][rows] = words.list.n_unique().to_numpy()
    few = out["distinct"][rows] <= 0.4 * out["words"][rows] + 1
    if few.any():
        counts = (
            pl.DataFrame({"row": rows[few], "w": words.filter(pl.Series(few))})
            .explode("w")
            .drop_nulls()
            .group_by("row", "w")
            .len()
            .group_by("row")
            .agg(pl.col("len").max())
        )
        out["top"][counts.get_column("row").to_numpy()] = counts.get_column("len").to_numpy()
    return [pl.Series(name, values) for name, values in out.items()]


def _repeated_words() -> pl.Expr:
    """Prompts of 50+ words dominated by one word, or with few distinct words (on the
    corpus, Guiraud's index distinct/√words is ≥ 1.49 for every prompt of 100+ words)."""
    n = pl.col("words")
    top_share = pl.col("top") / pl.max_horizontal(n, pl.lit(1))
    guiraud = pl.col("distinct") / n.sqrt()  # distinct words / √words: length-robust
    return (n >= 50) & ((top_share >= 0.6) | ((n >= 100) & (guiraud < 1.2)))


def _stuffing() -> pl.Expr:
    """The complexity lexicons far denser than in real prompts."""
    lower = pl.col("prompt").str.to_lowercase()
    hits = pl.sum_horizontal(pl.col(c) for c in _LEXICON) + lower.str.count_matches(_MATH_WORDS)
    n = pl.max_horizontal(pl.col("n_words"), pl.lit(1))
    distinct = pl.col("distinct") / pl.max_horizontal(pl.col("words"), pl.lit(1))
    dense = (hits >= 8) & (hits / n >= 0.25)
    repeated = (pl.col("reasoning_verbs") >= 5) & (distinct < 0.35) & (pl.col("words") >= 20)
    return dense | repeated


def compression_ratio(prompts: pl.Series, min_chars: int) -> np.ndarray:
    """UTF-8 size / zlib (level 1) size per prompt; 1.0 for prompts under ``min_chars``."""
    out = np.ones(len(prompts), np.float64)
    long = prompts.str.len_chars().fill_null(0).to_numpy() >= min_chars
    for i, text in zip(np.flatnonzero(long), prompts.filter(pl.Series(long)), strict=True):
        data = text.encode("utf-8", "surrogatepass")
        out[i] = len(data) / len(zlib.compress(data, 1))
    return out
