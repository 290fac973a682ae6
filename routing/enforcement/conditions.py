"""Which rules match which rows: the frame prepared with every column the rules read, and
each rule's ``when`` as one vectorised polars expression."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import polars as pl

from routing.rules import ANY_PII, MetadataMatch, RuleConditions, RuleSpec

# Frame columns read by the rules; any of them may be absent (then: all null).
TEXT_COLUMNS = ("domain", "customer_tier", "tenant", "metadata")
PROMPT, TOKENS = "prompt", "input_tokens"
FOUND_PII = "__rules_pii"
_META = "__rules_meta:"


def prepare(
    frame: pl.DataFrame, pii_kinds: Sequence[Sequence[str]] | pl.Series | None
) -> pl.DataFrame:
    """The frame with every column the rules read (absent ones as nulls, as strings)."""
    columns = [
        pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, pl.String).alias(c)
        for c in TEXT_COLUMNS
    ]
    lists = pl.List(pl.String)
    if pii_kinds is None:
        kinds = pl.repeat(pl.lit([], lists), frame.height).alias(FOUND_PII)
    else:
        series = pii_kinds if isinstance(pii_kinds, pl.Series) else pl.Series(pii_kinds)
        if len(series) != frame.height:
            raise ValueError(f"{len(series)} PII kind lists for {frame.height} rows")
        kinds = pl.lit(series.cast(lists)).fill_null(pl.lit([], lists)).alias(FOUND_PII)
    return frame.with_columns(*columns, kinds)


def rule_matches(data: pl.DataFrame, rules: Sequence[RuleSpec]) -> np.ndarray:
    """rules × rows: does the rule match the row?"""
    if not rules:
        return np.zeros((0, data.height), dtype=np.bool_)
    used = {TOKENS for r in rules if r.when.min_tokens is not None or r.when.max_tokens is not None}
    if used - set(data.columns):
        raise ValueError(f"rules test input tokens but the frame has no {TOKENS!r} column")
    keys = sorted({key for r in rules for key in r.when.metadata})
    data = data.with_columns(_metadata_value(data.get_column("metadata"), k) for k in keys)
    names = [f"__rules_match{i}" for i in range(len(rules))]
    exprs = [_condition_expr(r.when).alias(name) for r, name in zip(rules, names, strict=True)]
    # with_columns, not select: an empty ``when`` is a literal, broadcast to every row
    return data.with_columns(exprs).select(names).to_numpy().T.astype(np.bool_)


def _metadata_value(metadata: pl.Series, key: str) -> pl.Series:
    """The JSON text of top-level ``key`` per row (null: absent or not JSON). JSON path
    matching costs ~0.6 µs a row, so it runs only on rows whose text has ``"key"``."""
    name = _META + key
    if not key.isascii() or not key.isprintable():  # the JSON text may escape such keys
        return metadata.str.json_path_match(f"$['{key}']").alias(name)
    rows = metadata.str.contains(json.dumps(key), literal=True).fill_null(value=False)
    result = pl.repeat(None, len(metadata), dtype=pl.String, eager=True).alias(name)
    if not rows.any():
        return result
    return result.scatter(rows.arg_true(), metadata.filter(rows).str.json_path_match(f"$['{key}']"))


def _condition_expr(when: RuleConditions) -> pl.Expr:
    """The boolean expression of ``when`` over the prepared frame (nulls count as false)."""
    parts: list[pl.Expr] = [pl.lit(value=True)]
    tokens, chars = pl.col(TOKENS), pl.col(PROMPT).str.len_chars()
    for value, expr in (
        (when.min_tokens, lambda v: tokens >= v),
        (when.max_tokens, lambda v: tokens <= v),
        (when.min_chars, lambda v: chars >= v),
        (when.max_chars, lambda v: chars <= v),
        (when.domain, lambda v: pl.col("domain").is_in(v)),
        (when.customer_tier, lambda v: pl.col("customer_tier").is_in(v)),
        (when.tenant, lambda v: pl.col("tenant").is_in(v)),
    ):
        if value is not None:
            parts.append(expr(value))
    parts += [_metadata_expr(key, match) for key, match in when.metadata.items()]
    if when.pii is not None:
        found = pl.col(FOUND_PII)
        parts.append(
            found.list.len() > 0
            if ANY_PII in when.pii
            else pl.any_horizontal([found.list.contains(k) for k in when.pii])
        )
    return pl.all_horizontal(parts).fill_null(value=False)


def _metadata_expr(key: str, match: MetadataMatch) -> pl.Expr:
    value = pl.col(_META + key)
    if match.contains is None:
        wanted = match.equals
        text = json.dumps(wanted) if isinstance(wanted, bool) else str(wanted)
        return value == text
    element = json.dumps(match.contains, ensure_ascii=False)
    return (
        pl.when(value.str.starts_with("["))
        .then(value.str.contains(element, literal=True))
        .otherwise(value.str.contains(match.contains, literal=True))
    )
