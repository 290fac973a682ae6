"""The report's figures from cost rollup rows: totals and breakdowns, as JSON-ready dicts.

Money is summed as ``decimal(24,12)`` and printed as exact decimal strings with 12
places; latency percentiles are estimated from the rollup's cumulative buckets by linear
interpolation inside the bucket that holds the rank (as Prometheus' ``histogram_quantile``),
capped by the observed maximum.

``mode`` splits cost by how rows were answered: ``realtime``, ``batch`` (provider batches,
at the batch price; ``batch_saved_usd`` is what the batch discount saved), ``(no call)``
(no call made: rejected, over budget before a call), and ``(not recorded)`` for the rows
of rollups written before batch mode (no ``mode`` column: their ``batch_saved_usd`` is
null too, where a newer rollup's is 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import polars as pl

from routing.cost import pct, usd_text
from routing.names import NO_TENANT_LABEL, NOT_ROUTED_LABEL
from routing.schema import LATENCY_BUCKETS_MS
from workers.rollup import NO_CALL

NOT_ROUTED = NOT_ROUTED_LABEL  # a tier or model of rows that never reached a tier
NO_TENANT = NO_TENANT_LABEL  # rows without a tenant (no tenant may take the name: routing.names)
COUNTS = ["rows", "input_tokens", "output_tokens", "cache_hits", "duplicates", "escalated"]
NOT_RECORDED = "(not recorded)"  # the mode of rows of rollups written before batch mode
MONEY = ["cost_usd", "baseline_cost_usd", "cache_saved_usd", "dedupe_saved_usd", "batch_saved_usd"]
BUCKETS = [f"latency_le_{b}ms" for b in LATENCY_BUCKETS_MS]
LATENCY = ["latency_count", "latency_ms_sum", *BUCKETS]
BREAKDOWNS = ("tenant", "tier", "model", "mode", "day", "status", "job_id")
QUANTILES = (0.5, 0.95, 0.99)


money = usd_text  # an exact USD amount as a fixed 12-place decimal string (routing.cost)


def _sums() -> list[pl.Expr]:
    return [
        *(pl.col(c).sum() for c in COUNTS + MONEY + LATENCY),
        pl.col("latency_ms_max").max(),
    ]


def quantile(q: float, row: dict[str, Any]) -> float | None:
    """The ``q`` latency quantile (ms) estimated from the cumulative buckets of ``row``."""
    count = row["latency_count"] or 0
    if count == 0:
        return None
    rank, top = q * count, float(row["latency_ms_max"] or 0.0)
    low, below = 0.0, 0
    for bound, column in zip(LATENCY_BUCKETS_MS, BUCKETS, strict=True):
        cumulative = row[column] or 0
        if cumulative >= rank:
            inside = cumulative - below
            estimate = low + (bound - low) * ((rank - below) / inside if inside else 1.0)
            return round(min(estimate, top), 1)
        low, below = float(bound), cumulative
    return round(top, 1)  # beyond the last bucket: the maximum is the best bound


def latency(row: dict[str, Any]) -> dict[str, Any]:
    count = int(row["latency_count"] or 0)
    mean = float(row["latency_ms_sum"]) / count if count else None
    return {
        "count": count,
        "mean_ms": round(mean, 1) if mean is not None else None,
        **{f"p{round(q * 100)}_ms": quantile(q, row) for q in QUANTILES},
        "max_ms": round(float(row["latency_ms_max"]), 1) if count else None,
    }


def entry(row: dict[str, Any]) -> dict[str, Any]:
    """One total or breakdown line: counts, exact money, saving, latency."""
    cost = row["cost_usd"] or Decimal(0)
    baseline = row["baseline_cost_usd"] or Decimal(0)
    saving = baseline - cost
    return {
        **{c: int(row[c] or 0) for c in COUNTS},
        "cost_usd": money(cost),
        "baseline_cost_usd": money(baseline),
        "saving_usd": money(saving),
        "saving_pct": pct(saving, baseline),
        "cache_saved_usd": money(row["cache_saved_usd"]),
        "dedupe_saved_usd": money(row["dedupe_saved_usd"]),
        "batch_saved_usd": money(row["batch_saved_usd"]),
        "latency_ms": latency(row),
    }


def label(key: str, value: Any) -> str:
    if value is None:
        return {"tenant": NO_TENANT, "mode": NO_CALL}.get(key, NOT_ROUTED)
    return str(value)


def with_modes(frame: pl.DataFrame) -> pl.DataFrame:
    """``mode`` of the rows of rollups written before batch mode (no ``mode`` nor
    ``batch_saved_usd`` column: both read as null) set to ``(not recorded)``; a null
    ``mode`` with a ``batch_saved_usd`` is a newer rollup's: no call made."""
    legacy = pl.col("mode").is_null() & pl.col("batch_saved_usd").is_null()
    return frame.with_columns(
        pl.when(legacy).then(pl.lit(NOT_RECORDED)).otherwise(pl.col("mode")).alias("mode")
    )


def grouped(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Rollup rows summed by ``keys``, sorted (nulls last)."""
    return frame.group_by(list(keys)).agg(_sums()).sort(list(keys), nulls_last=True)


def breakdown(frame: pl.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    """Lines by ``key``: days in order, anything else by cost then rows, largest first
    (rows that never reached a tier last)."""
    lines = grouped(frame, [key])
    if key != "day":
        lines = lines.sort(
            pl.col(key).is_null(), "cost_usd", "rows", descending=[False, True, True]
        )
    return {label(key, r[key]): entry(r) for r in lines.iter_rows(named=True)}


def totals(frame: pl.DataFrame) -> dict[str, Any]:
    return entry(frame.select(_sums()).row(0, named=True))


def build(frame: pl.DataFrame, searched: int, filters: dict[str, Any]) -> dict[str, Any]:
    """The report object ``report --json`` prints, over ``searched`` finished jobs."""
    days = frame["day"].drop_nulls()
    return {
        "jobs": frame["job_id"].n_unique(),
        "jobs_searched": searched,
        "filters": filters,
        "first_day": days.min().isoformat() if len(days) else None,  # type: ignore[union-attr]
        "last_day": days.max().isoformat() if len(days) else None,  # type: ignore[union-attr]
        "totals": totals(frame),
        **{f"by_{'job' if k == 'job_id' else k}": breakdown(frame, k) for k in BREAKDOWNS},
    }
