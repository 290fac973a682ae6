"""The job's cost rollup: result rows aggregated by tenant, tier, model, status, mode
(``realtime`` | ``batch``; null when no call was made) and experiment arm (null: none),
written by the finalizer as
hive-partitioned Parquet under ``cost/day=<YYYY-MM-DD>/tenant=<t>/``.

The rollup carries everything the report needs so it never reads result rows: rows,
tokens, exact cost, baseline and batch saving (``decimal(24,12)``: the sums of the rollup
equal the sums of the rows exactly), cache and dedupe savings, escalations, and latency as
a count, sum, max and cumulative buckets (``routing.schema.LATENCY_BUCKETS_MS``) over the
rows that made a provider call (not a duplicate, not a cache hit, ``attempts`` > 0 when
the table has it).

``day`` is the UTC calendar date of the job's ``created_at`` (when it was planned): a
nightly job is one day; every row of a job is in its day. Definitions match the
manifest's (workers.finalize): ``cache_hits`` are ``ok`` rows answered from the cache that
are not duplicates, ``duplicates`` are ``ok`` rows with ``dedupe_of`` set, and their
``*_saved_usd`` are those rows' tokens at the serving model's list prices.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TypedDict

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from routing.cost import ZERO, call_cost
from routing.policy import Policy
from routing.schema import (
    COST_ROLLUP_SCHEMA,
    DEFAULT_TENANT,
    LATENCY_BUCKETS_MS,
    RESULT_SCHEMA,
    Status,
)
from workers import layout
from workers.storage import Storage

INPUTS = [  # the result columns the rollup reads
    "tenant",
    "tier",
    "model",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "latency_ms",
    "dedupe_of",
    "cache_hit",
    "escalated_from",
    "mode",
    "batch_saved_usd",
    "arm",
]
ATTEMPTS = "attempts"  # read when the table has it: a row with 0 attempts made no call
KEYS = ["tenant", "tier", "model", "status", "mode", "arm"]
NO_CALL = "(no call)"  # the breakdown label of rows whose ``mode`` is null: no call made
_SAVED = ("cache", "dedupe")


class Written(TypedDict):
    """The manifest's ``cost_rollup`` entry: the day, and the files relative to the job root."""

    day: str
    parts: list[str]


def day_of(created_at: str) -> date:
    """The job's day: the UTC date of its ``created_at`` (ISO 8601; naive means UTC)."""
    moment = datetime.fromisoformat(created_at)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def _typed(table: pa.Table) -> pl.DataFrame:
    """The input columns with their result types (an empty job's columns are untyped);
    a column the table lacks (``attempts``; ``mode`` and ``batch_saved_usd`` of result
    parts written before batch mode) reads as nulls."""
    names = [*INPUTS, ATTEMPTS]
    fields = [pa.field(c, RESULT_SCHEMA.field(c).type) for c in names]
    columns = [
        table.column(c).cast(f.type) if c in table.column_names else pa.nulls(len(table), f.type)
        for c, f in zip(names, fields, strict=True)
    ]
    frame = pl.from_arrow(pa.Table.from_arrays(columns, schema=pa.schema(fields)))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _aggregations() -> list[pl.Expr]:
    ok = pl.col("status") == Status.OK.value
    dup = pl.col("dedupe_of").is_not_null()
    masks = {"cache": ok & pl.col("cache_hit").fill_null(False) & ~dup, "dedupe": ok & dup}
    # latency of provider calls only: not a duplicate, not a cache hit, at least one attempt
    called = ~dup & ~pl.col("cache_hit").fill_null(False) & (pl.col(ATTEMPTS).fill_null(1) > 0)
    latency = pl.col("latency_ms").filter(called)
    return [
        pl.len().cast(pl.Int64).alias("rows"),
        pl.col("input_tokens").sum(),
        pl.col("output_tokens").sum(),
        pl.col("cost_usd").sum(),
        pl.col("baseline_cost_usd").sum(),
        pl.col("batch_saved_usd").sum(),
        masks["cache"].sum().alias("cache_hits"),
        masks["dedupe"].sum().alias("duplicates"),
        *(
            pl.col(tokens).filter(mask).sum().alias(f"_{name}_{tokens}")
            for name, mask in masks.items()
            for tokens in ("input_tokens", "output_tokens")
        ),
        pl.col("escalated_from").is_not_null().sum().alias("escalated"),
        latency.count().alias("latency_count"),
        latency.sum().alias("latency_ms_sum"),
        latency.max().alias("latency_ms_max"),  # null when no call
        *((latency <= b).sum().alias(f"latency_le_{b}ms") for b in LATENCY_BUCKETS_MS),
    ]


def _saved(grouped: pl.DataFrame, policy: Policy) -> dict[str, list[Decimal]]:
    """Per group, what the cache and dedupe saved (tokens at the model's list prices)."""
    models = {(t.name, m.name): m for t in policy.tiers for m in t.models}
    out: dict[str, list[Decimal]] = {f"{n}_saved_usd": [] for n in _SAVED}
    for row in grouped.iter_rows(named=True):
        model = models.get((row["tier"], row["model"]))
        for name in _SAVED:
            tokens = (row[f"_{name}_input_tokens"] or 0, row[f"_{name}_output_tokens"] or 0)
            out[f"{name}_saved_usd"].append(call_cost(model, *tokens) if model else ZERO)
    return out


def build(table: pa.Table, policy: Policy) -> pa.Table:
    """The rollup of a job's result rows: ``tenant`` plus ``COST_ROLLUP_SCHEMA``, one row
    per tenant, tier, model, status and mode, sorted (so a re-run writes the same bytes)."""
    grouped = (
        _typed(table)
        .group_by(KEYS)
        .agg(_aggregations())
        .sort(KEYS, nulls_last=True)
        .with_columns(pl.col("input_tokens", "output_tokens").fill_null(0))
        .with_columns(pl.col("batch_saved_usd").fill_null(ZERO))
    )
    saved = _saved(grouped, policy)
    arrow = grouped.to_arrow()
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "tenant": arrow.column("tenant").cast(pa.string())
    }
    for field in COST_ROLLUP_SCHEMA:
        if field.name in saved:
            columns[field.name] = pa.array(saved[field.name], field.type)
        else:
            columns[field.name] = arrow.column(field.name).cast(field.type)
    return pa.table(columns)


def write(
    storage: Storage,
    root: str,
    table: pa.Table,
    created_at: str,
    policy: Policy,
    tenant: str | None,
) -> Written:
    """:func:`build` the job's rollup from its result rows, then :func:`write_built`."""
    return write_built(storage, root, build(table, policy), created_at, tenant)


def write_built(
    storage: Storage, root: str, rollup: pa.Table, created_at: str, tenant: str | None
) -> Written:
    """Write a built rollup, one file per tenant under its day (a job with no rows
    writes an empty file for the job's tenant — ``default`` when it has none, as ingest
    labels rows — so the job still shows in reports).
    Returns ``{"day": ..., "parts": [paths relative to the job root]}``."""
    day = day_of(created_at).isoformat()
    tenants = sorted(set(rollup.column("tenant").to_pylist()), key=lambda t: (t is None, t))
    parts: list[str] = []
    for name in tenants or [tenant or DEFAULT_TENANT]:  # the label ingest gives rows
        rows = rollup.filter(_is(rollup.column("tenant"), name)) if tenants else rollup
        uri = layout.cost_rollup_part(root, day, name)
        storage.write_parquet(uri, rows.drop(["tenant"]).cast(COST_ROLLUP_SCHEMA))
        parts.append(uri[len(root.rstrip("/")) + 1 :])
    return {"day": day, "parts": parts}


def _is(column: pa.ChunkedArray, value: str | None) -> pa.ChunkedArray:
    if value is None:
        return pc.is_null(column)
    return pc.fill_null(pc.equal(column, value), False)
