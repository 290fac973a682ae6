"""The pipeline stages — ingest, dispatch, finalize — independent of where they run.

The Celery tasks and the local executor both call these functions; a :class:`Sink`
decides where a routed batch or the finalize signal goes (a tier queue, or an in-process
call). Every stage is idempotent: outputs go to deterministic keys and progress is
recorded as set members.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from routing import carried, results
from routing.cost import ZERO, call_cost
from routing.minimise import minimise
from routing.plan import ChunkRef, JobContext
from routing.policy import Policy, TierSpec
from routing.router import ALLOWED, EST_INPUT_TOKENS, REJECTED_REASON, route_batch
from routing.schema import CELL_ERROR, DEFAULT_TENANT, Status
from routing.tokens import count_tokens, truncate_tokens
from routing.validate import row_rejections
from workers import audit, dedupe, layout, prompt_ids
from workers.calls import Caller, Row, Served
from workers.chunks import part_counts, read_chunk
from workers.runtime import Runtime, Sink
from workers.storage import Storage

REJECTED_PART = "rejected"


# ---------------------------------------------------------------- ingest


def job_tenant(ctx: JobContext) -> str:
    """The job's tenant — from how it was submitted (``--tenant``, the drop folder, the
    schedule), else ``default`` — and the only tenant of its rows: billing, rules, budget
    scopes and the cache namespace. A row naming another is rejected (routing.validate)."""
    return ctx.tenant or DEFAULT_TENANT


def _with_tenant(table: pa.Table, tenant: str) -> pa.Table:
    """Every row's ``tenant`` is the job's (the row's own cell was checked against it)."""
    column = pa.array([tenant] * table.num_rows, pa.string())
    if CELL_ERROR in table.column_names:  # read by row_rejections; not routed further
        table = table.drop_columns([CELL_ERROR])
    if "tenant" in table.column_names:
        return table.set_column(table.column_names.index("tenant"), "tenant", column)
    return table.append_column("tenant", column)


def ingest(
    rt: Runtime, ctx: JobContext, chunk: ChunkRef, sink: Sink, only: list[str] | None = None
) -> None:
    """Read, validate, route and dedupe one chunk; hand one batch per tier to ``sink``.

    The parts the chunk will write are recorded in the tracker and in the object store
    (``_job/chunks/``) first. ``only`` (from ``reconcile``) limits the work to those parts:
    routing is deterministic, so the other parts, already written, are not redone."""
    policy, tenant = rt.policy(ctx), job_tenant(ctx)
    table = carried.apply(read_chunk(rt.storage, chunk), ctx.carried_columns)
    reasons = row_rejections(table, policy.limits, tenant)
    reasons, lost = prompt_ids.reject_repeats(
        rt, ctx, chunk.chunk, table, reasons, replay=only is not None
    )
    table = _with_tenant(table, tenant)
    valid = pc.is_null(reasons)
    bad, bad_reasons = table.filter(pc.invert(valid)), reasons.filter(pc.invert(valid))
    memos, scorer = rt.memos, rt.scorer_for(ctx, policy)
    routed = route_batch(
        table.filter(valid), policy, scorer, memo=memos.text, decisions=memos.decisions
    )
    routable = pc.not_equal(routed.column("tier"), "")
    unroutable = routed.filter(pc.invert(routable))
    routed = routed.filter(routable)
    routed, held = dedupe.hold_duplicates(rt, ctx, chunk.chunk, routed, policy)
    tiers = [t for t in policy.tier_names if t in set(routed.column("tier").to_pylist())]
    rejected_rows = bad.num_rows + unroutable.num_rows
    parts = tiers + ([REJECTED_PART] if rejected_rows else []) + dedupe.tracked(held)
    rt.tracker.expect(ctx.job_id, chunk.chunk, parts)
    if only is None:
        record = {"chunk": chunk.chunk, "parts": parts, prompt_ids.RECORD_FIELD: lost}
        manifest = json.dumps(record).encode()
        rt.storage.write_bytes(layout.chunk_parts(ctx.job_root, chunk.chunk), manifest)
    for tier in tiers:
        if only is not None and tier not in only:
            continue
        batch = routed.filter(pc.equal(routed.column("tier"), tier))
        sink.dispatch(ctx, _make_batch(rt, ctx, chunk.chunk, tier, batch))
    if rejected_rows and (only is None or REJECTED_PART in only):
        out = pa.concat_tables(
            [
                results.rejected(bad, bad_reasons.to_pylist(), ctx.job_id, ctx.policy_version),
                results.rejected(
                    unroutable,
                    unroutable.column(REJECTED_REASON).to_pylist(),
                    ctx.job_id,
                    ctx.policy_version,
                ),
            ],
            promote_options="permissive",
        )
        _publish(rt, ctx, chunk.chunk, REJECTED_PART, out, sink)
    dedupe.complete_held(rt, ctx, chunk.chunk, held, sink)


def _make_batch(
    rt: Runtime, ctx: JobContext, chunk: int, tier: str, table: pa.Table
) -> dict[str, Any]:
    """A routed batch message: Arrow IPC inline when small, else a staged Parquet URI."""
    batch: dict[str, Any] = {"chunk": chunk, "tier": tier, "rows": table.num_rows}
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    payload = sink.getvalue()
    if payload.size <= rt.settings.inline_batch_max_bytes:
        batch["inline"] = base64.b64encode(payload.to_pybytes()).decode()
    else:
        uri = layout.staged_batch(ctx.job_root, chunk, tier)
        rt.storage.write_parquet(uri, table)
        batch["staged"] = uri
    return batch


def load_batch(storage: Storage, batch: dict[str, Any]) -> pa.Table:
    if batch.get("inline") is not None:
        data = base64.b64decode(batch["inline"])
        return pa.ipc.open_stream(io.BytesIO(data)).read_all()
    return storage.read_parquet(batch["staged"])


# ---------------------------------------------------------------- dispatch


def dispatch(rt: Runtime, ctx: JobContext, batch: dict[str, Any], sink: Sink) -> None:
    """Serve each distinct prompt of the batch (workers.calls); write the result part."""
    policy = rt.policy(ctx)
    tier = policy.tier(batch["tier"])
    if _already_done(rt, ctx, batch):
        return
    table = load_batch(rt.storage, batch)
    canonical = pc.is_null(table.column("dedupe_of")).to_pylist()
    chunk, tenant = batch["chunk"], job_tenant(ctx)
    rows = [
        _row(r, tier, chunk, tenant)
        for r, first in zip(_rows(table), canonical, strict=True)
        if first
    ]
    served = Caller(policy, rt.settings, rt.guards(policy), ctx, tier).run(rows)
    values = _outcomes(table, canonical, served, policy, ctx)
    _publish(rt, ctx, batch["chunk"], tier.name, results.assemble(table, values), sink)
    if batch.get("staged") and policy.minimise:  # the staged copy holds the prompt text
        rt.storage.delete(batch["staged"])


def _already_done(rt: Runtime, ctx: JobContext, batch: dict[str, Any]) -> bool:
    """A redelivered dispatch whose staged batch is gone (deleted under ``minimise`` after
    its part was written, before the ack): the part exists, nothing is left to do."""
    staged = batch.get("staged")
    if not staged or rt.storage.exists(staged):
        return False
    return rt.storage.exists(layout.result_part(ctx.job_root, batch["chunk"], batch["tier"]))


def drop_staging(rt: Runtime, ctx: JobContext, policy: Policy) -> None:
    """At finalize, under ``minimise``: delete the staged batches left behind (a dispatch
    that failed for good keeps its copy, prompt text included)."""
    if policy.minimise:
        for uri in rt.storage.list_files(layout.staging_dir(ctx.job_root)):
            rt.storage.delete(uri)


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


def _outcomes(
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
    cols: dict[str, list[Any]] = {k: [] for k in _OUTCOME_COLUMNS}
    for pid, original, reason in zip(ids, dedupe_of, reasons, strict=True):
        s = by_id[original or pid]
        done, ok = s.done, s.status is Status.OK
        baseline = call_cost(baseline_model, done.input_tokens, done.output_tokens) if ok else ZERO
        cols["status"].append(s.status.value)
        cols["response"].append(done.text)
        cols["finish_reason"].append(done.finish_reason)
        cols["input_tokens"].append(done.input_tokens if ok else None)
        cols["output_tokens"].append(done.output_tokens if ok else None)
        cols["cost_usd"].append(ZERO if original else s.cost)
        cols["baseline_cost_usd"].append(baseline)
        cols["latency_ms"].append(0.0 if original else done.latency_ms)
        cols["attempts"].append(0 if original else s.calls)
        cols["error"].append(None if ok else done.error)
        cols["cache_hit"].append(s.cache_hit)
        cols["tier"].append(s.tier.name)
        cols["model"].append(s.model.name)
        cols["provider"].append(s.model.provider)
        cols["fallback_from"].append(s.fallback_from)
        cols["escalated_from"].append(s.escalated_from)
        cols["confidence"].append(s.confidence)
        cols["route_reason"].append("; ".join([reason, *s.notes]) if s.notes else reason)
    n = table.num_rows
    cols.update(job_id=[ctx.job_id] * n, policy_version=[ctx.policy_version] * n)
    return cols


_OUTCOME_COLUMNS = (
    "status",
    "response",
    "finish_reason",
    "input_tokens",
    "output_tokens",
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
    "route_reason",
)


# ---------------------------------------------------------------- publish / finalize


def _publish(
    rt: Runtime, ctx: JobContext, chunk: int, part: str, table: pa.Table, sink: Sink
) -> None:
    audit.append_part(rt.storage, ctx, chunk, part, table)  # before the part it describes
    table = minimise(table, rt.policy(ctx).minimise)  # after: the audit keeps fingerprints
    rt.storage.write_parquet(layout.result_part(ctx.job_root, chunk, part), table)
    if rt.tracker.complete(ctx.job_id, chunk, part, part_counts(table), ctx.total_chunks):
        sink.finalize(ctx)
