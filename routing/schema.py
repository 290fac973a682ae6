"""Parquet contracts: the input a job reads and the output it writes.

Input: one row per prompt. ``prompt_id`` and ``prompt`` (strings) are required; the
optional columns below are typed; any other column is carried through untouched.

Output: one row per input row, always (``row count out = row count in``). The
columns of :data:`RESULT_FIELDS` come first, then the optional input columns that
were present, then unknown input columns in input order.
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

# Money is exact: decimal with 12 fractional digits (prices are per token, ~1e-7..1e-4 USD).
MONEY = pa.decimal128(24, 12)


class Status(StrEnum):
    """Final status of an output row."""

    OK = "ok"
    FAILED = "failed"
    REJECTED = "rejected"
    OVER_BUDGET = "over_budget"


REQUIRED_INPUT: dict[str, pa.DataType] = {"prompt_id": pa.string(), "prompt": pa.string()}

# The tenant of a job submitted without one (no --tenant, schedule or drop folder tenant).
DEFAULT_TENANT = "default"

# Internal column (``__br_`` prefix: never in the output) that routing.validate.conform adds
# when a cell could not be conformed (invalid UTF-8, an integer out of range): the first
# such problem of the row, e.g. "system is not valid UTF-8"; null for a sound row.
CELL_ERROR = "__br_cell_error"

OPTIONAL_INPUT: dict[str, pa.DataType] = {
    "tenant": pa.string(),
    "system": pa.string(),
    "max_output_tokens": pa.int64(),
    "customer_tier": pa.string(),
    "domain": pa.string(),
    "metadata": pa.string(),
}

RESULT_FIELDS: list[pa.Field] = [
    pa.field("job_id", pa.string(), nullable=False),
    pa.field("prompt_id", pa.string()),
    pa.field("tenant", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("tier", pa.string()),
    pa.field("model", pa.string()),
    pa.field("provider", pa.string()),
    pa.field("response", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("input_tokens", pa.int64()),
    pa.field("output_tokens", pa.int64()),
    pa.field("cost_usd", MONEY),
    pa.field("baseline_cost_usd", MONEY),
    pa.field("latency_ms", pa.float64()),
    pa.field("attempts", pa.int32()),
    pa.field("escalated_from", pa.string()),
    pa.field("dedupe_of", pa.string()),
    pa.field("cache_hit", pa.bool_()),
    pa.field("complexity_score", pa.float64()),
    pa.field("confidence", pa.float64()),
    pa.field("route_reason", pa.string()),
    pa.field("policy_version", pa.string()),
    pa.field("error", pa.string()),
    pa.field("classifier_version", pa.string()),
    pa.field("pii_kinds", pa.string()),
    pa.field("gaming_flags", pa.string()),  # routing.gaming kinds, comma-separated; null: none
    pa.field("minimised", pa.string()),  # fields not stored (policy minimise): "prompt,response"
    pa.field("fallback_from", pa.string()),
    pa.field("mode", pa.string()),  # how the answer was obtained: realtime | batch (null: none)
    pa.field("batch_id", pa.string()),  # the provider batch that answered (mode = batch)
    pa.field("round", pa.int32()),  # the job round of the answer: 1, or 2 for an escalation
    pa.field("batch_saved_usd", MONEY),  # realtime − batch price of the row's batch calls
    pa.field("reasoning_tokens", pa.int64()),  # of output_tokens, spent thinking (null: unsaid)
    pa.field("cached_input_tokens", pa.int64()),  # of input_tokens, from the prompt cache
    pa.field("confidence_source", pa.string()),  # what scored `confidence`: logprobs | verifier:…
    pa.field("explored", pa.string()),  # the tier that answered the prompt too (policy explore)
    pa.field("arm", pa.string()),  # the experiment arm that routed the row (policy experiment)
    pa.field("near_dup_of", pa.string()),  # prompt_id of a near-duplicate (routing.neardup)
    pa.field("input_file", pa.string()),
    pa.field("input_row", pa.int64()),
]
RESULT_SCHEMA = pa.schema(RESULT_FIELDS)
RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in RESULT_FIELDS)

# Output names an input column may not keep: such a column is carried through as src_<name>.
RESERVED = frozenset(RESULT_COLUMNS) - set(REQUIRED_INPUT) - {"tenant"}

# What every cost aggregate carries per group (tier, model, status, mode, arm). ``mode`` is the
# rows' ``mode`` (realtime | batch; null: no call made); ``batch_saved_usd`` the exact sum
# of their ``batch_saved_usd`` (0 when none). Files written before batch mode lack both.
_COST_FIELDS = [
    pa.field("tier", pa.string()),
    pa.field("model", pa.string()),
    pa.field("status", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("arm", pa.string()),  # the experiment arm (null: no experiment)
    pa.field("rows", pa.int64()),
    pa.field("input_tokens", pa.int64()),
    pa.field("output_tokens", pa.int64()),
    pa.field("cost_usd", MONEY),
    pa.field("baseline_cost_usd", MONEY),
    pa.field("batch_saved_usd", MONEY),
]

# Columns of the cost summary written by the finalizer under cost/ (one row per tenant,
# tier, model, status and mode).
COST_SUMMARY_SCHEMA = pa.schema(
    [pa.field("job_id", pa.string()), pa.field("tenant", pa.string()), *_COST_FIELDS]
)

# Upper bounds (ms) of the cost rollup's cumulative latency buckets (`latency_le_<b>ms`).
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000)

# Columns of a cost rollup file, cost/day=<YYYY-MM-DD>/tenant=<t>/part-0.parquet: one row
# per tier, model, status and mode; job_id, day and tenant are the hive path (docs/reports.md).
COST_ROLLUP_SCHEMA = pa.schema(
    [
        *_COST_FIELDS,
        pa.field("cache_hits", pa.int64()),
        pa.field("cache_saved_usd", MONEY),
        pa.field("duplicates", pa.int64()),
        pa.field("dedupe_saved_usd", MONEY),
        pa.field("escalated", pa.int64()),
        pa.field("latency_count", pa.int64()),
        pa.field("latency_ms_sum", pa.float64()),
        pa.field("latency_ms_max", pa.float64()),
        *(pa.field(f"latency_le_{b}ms", pa.int64()) for b in LATENCY_BUCKETS_MS),
    ]
)


def output_schema(input_schema: pa.Schema) -> pa.Schema:
    """The result schema for a given (already validated) input schema."""
    extra = [f for f in input_schema if f.name not in RESULT_COLUMNS]
    return pa.schema([*RESULT_FIELDS, *extra])
