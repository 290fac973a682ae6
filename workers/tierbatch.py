"""A routed tier batch, as the serving engines see it: the rows of one chunk routed to one
tier (Arrow IPC inline in the message, or a staged Parquet file), the :class:`Row` each
distinct prompt is served as, and the result columns its outcomes become.

Both engines use it: realtime (``workers/stages.py`` dispatch, ``workers/calls.py``) and
provider batch mode (``workers/batches/``).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from routing.cost import ZERO
from routing.minimise import minimise
from routing.plan import JobContext
from routing.policy import Policy, TierSpec
from routing.router import ALLOWED, EST_INPUT_TOKENS
from routing.schema import DEFAULT_TENANT, Status
from routing.tokens import count_tokens, truncate_tokens
from workers import audit, layout
from workers.chunks import part_counts
from workers.runtime import Runtime, Sink
from workers.served import Row, Served
from workers.storage import Storage


def job_tenant(ctx: JobContext) -> str:
    """The job's tenant — from how it was submitted (``--tenant``, the drop folder, the
    schedule), else ``default`` — and the only tenant of its rows: billing, rules, budget
    scopes and the cache namespace. A row naming another is rejected (routing.validate)."""
    return ctx.tenant or DEFAULT_TENANT


def load_batch(storage: Storage, batch: dict[str, Any]) -> pa.Table:
    if batch.get("inline") is not None:
        data = base64.b64decode(batch["inline"])
        return pa.ipc.open_stream(io.BytesIO(data)).read_all()
    return storage.read_parquet_file(batch["staged"])


def canonical_mask(table: pa.Table) -> list[bool]:
    """Which rows are served (the first of each in-chunk duplicate group)."""
    mask: list[bool] = pc.is_null(table.column("dedupe_of")).to_pylist()
    return mask


def serving_rows(
    table: pa.Table, canonical: list[bool], tier: TierSpec, chunk: int, tenant: str
) -> list[Row]:
    """The :class:`Row` of every canonical row of ``table``, in order."""
    return [
        _row(r, tier, chunk, tenant)
        for r, first in zip(_rows(table), canonical, strict=True)
        if first
    ]


_ROW_COLUMNS = ("prompt", "system", "max_output_tokens", "input_row")


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    names = [n for n in (*_ROW_COLUMNS, EST_INPUT_TOKENS, ALLOWED) if n in table.column_names]
    rows: list[dict[str, Any]] = table.select(names).to_pylist()
    return rows


def _row(row: dict[str, Any], tier: TierSpec, chunk: int, tenant: str) -> Row:
    prompt, system = row["prompt"], row.get("system")
    tokens = row.get(EST_INPUT_TOKENS)
    if tier.truncate_input and tokens is not None and tokens > tier.max_input_tokens:
        prompt, system, tokens = _truncate(prompt, system, tier.max_input_tokens)
    return Row(
        ref=f"c{chunk}/r{row['input_row']}",  # the job's own name for the row
        prompt=prompt,
        system=system,
        max_output_tokens=row.get("max_output_tokens"),
        tenant=tenant,
        input_tokens=int(tokens or 0),
        allowed=row.get(ALLOWED),
    )


def _truncate(prompt: str, system: str | None, limit: int) -> tuple[str, str | None, int]:
    """Keep the system prompt whole and the end of the prompt (where the question is)."""
    used = int(count_tokens([system])[0]) if system else 0
    if used >= limit:  # the system prompt alone does not fit: keep the end of both
        return "", truncate_tokens(system or "", limit), limit
    kept = truncate_tokens(prompt, limit - used)
    return kept, system, used + int(count_tokens([kept])[0])


def outcomes(
    table: pa.Table,
    canonical: list[bool],
    served: list[Served],
    policy: Policy,
    ctx: JobContext,
) -> dict[str, list[Any]]:
    """Result columns for every row; duplicates reuse their canonical row's answer."""
    baseline_model = policy.baseline_tier.primary
    ids = table.column("prompt_id").to_pylist()
    dedupe_of = table.column("dedupe_of").to_pylist()
    reasons = table.column("route_reason").to_pylist()
    by_id = dict(zip((i for i, c in zip(ids, canonical, strict=True) if c), served, strict=True))
    rows = [by_id[original or pid] for pid, original in zip(ids, dedupe_of, strict=True)]
    dup = [bool(original) for original in dedupe_of]  # answered by its canonical row
    done = [s.done for s in rows]
    status = [s.status for s in rows]
    ok = [st is Status.OK for st in status]
    cols: dict[str, list[Any]] = {
        "status": [st.value for st in status],
        "response": [d.text for d in done],
        "finish_reason": [d.finish_reason for d in done],
        "input_tokens": [d.input_tokens if k else None for d, k in zip(done, ok, strict=True)],
        "output_tokens": [d.output_tokens if k else None for d, k in zip(done, ok, strict=True)],
        "reasoning_tokens": [
            d.reasoning_tokens if k else None for d, k in zip(done, ok, strict=True)
        ],
        "cached_input_tokens": [
            d.cached_input_tokens if k else None for d, k in zip(done, ok, strict=True)
        ],
        "cost_usd": [ZERO if d else s.cost for s, d in zip(rows, dup, strict=True)],
        "baseline_cost_usd": [
            d.cost(baseline_model) if k else ZERO for d, k in zip(done, ok, strict=True)
        ],
        "latency_ms": [0.0 if p else d.latency_ms for d, p in zip(done, dup, strict=True)],
        "attempts": [0 if d else s.calls for s, d in zip(rows, dup, strict=True)],
        "error": [None if k else d.error for d, k in zip(done, ok, strict=True)],
        "cache_hit": [s.cache_hit for s in rows],
        "tier": [s.tier.name for s in rows],
        "model": [s.model.name for s in rows],
        "provider": [s.model.provider for s in rows],
        "fallback_from": [s.fallback_from for s in rows],
        "escalated_from": [s.escalated_from for s in rows],
        "confidence": [s.confidence for s in rows],
        "confidence_source": [s.confidence_source for s in rows],
        "explored": [None if d else s.explored for s, d in zip(rows, dup, strict=True)],
        "mode": [s.mode if s.calls or s.cache_hit else None for s in rows],
        "batch_id": [s.batch_id for s in rows],
        "round": [s.round for s in rows],
        "batch_saved_usd": [ZERO if d else s.batch_saved for s, d in zip(rows, dup, strict=True)],
        "route_reason": [
            "; ".join([reason, *s.notes]) if s.notes else reason
            for s, reason in zip(rows, reasons, strict=True)
        ],
    }
    n = table.num_rows
    cols.update(job_id=[ctx.job_id] * n, policy_version=[ctx.policy_version] * n)
    return cols


OUTCOME_COLUMNS = (
    "status",
    "response",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_input_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "latency_ms",
    "attempts",
    "error",
    "cache_hit",
    "tier",
    "model",
    "provider",
    "fallback_from",
    "escalated_from",
    "confidence",
    "confidence_source",
    "explored",
    "mode",
    "batch_id",
    "round",
    "batch_saved_usd",
    "route_reason",
)


# ---------------------------------------------------------------- publish / finalize


def publish(
    rt: Runtime, ctx: JobContext, chunk: int, part: str, table: pa.Table, sink: Sink
) -> None:
    """Write a result part (its audit part first) and count it done; the last part of the
    job sends finalize."""
    audit.append_part(rt.storage, ctx, chunk, part, table)  # before the part it describes
    table = minimise(table, rt.policy(ctx).minimise)  # after: the audit keeps fingerprints
    rt.storage.write_parquet(layout.result_part(ctx.job_root, chunk, part), table)
    if rt.tracker.complete(ctx.job_id, chunk, part, part_counts(table), ctx.total_chunks):
        sink.finalize(ctx)
