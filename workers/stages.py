"""The pipeline stages — ingest, dispatch, finalize — independent of where they run.

The Celery tasks and the local executor both call these functions; a :class:`Sink`
decides where a routed batch or the finalize signal goes (a tier queue, or an in-process
call). Every stage is idempotent: outputs go to deterministic keys and progress is
recorded as set members.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from routing import carried, results
from routing.arms import route_arms
from routing.plan import ChunkRef, JobContext
from routing.policy import Policy
from routing.router import REJECTED_REASON
from routing.schema import CELL_ERROR
from routing.validate import row_rejections
from workers import dedupe, layout, prompt_ids
from workers.batches import stage as batch_stage
from workers.calls import Caller
from workers.chunks import read_chunk
from workers.explore import explore, write_labels
from workers.runtime import Runtime, Sink
from workers.tierbatch import (
    canonical_mask,
    job_tenant,
    load_batch,
    outcomes,
    publish,
    serving_rows,
)

REJECTED_PART = "rejected"


# ---------------------------------------------------------------- ingest


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
    routed = route_arms(
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
        publish(rt, ctx, chunk.chunk, REJECTED_PART, out, sink)
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


# ---------------------------------------------------------------- dispatch


def dispatch(rt: Runtime, ctx: JobContext, batch: dict[str, Any], sink: Sink) -> None:
    """Serve each distinct prompt of the batch (workers.calls); write the result part."""
    policy = rt.policy(ctx)
    tier = policy.tier(batch["tier"])
    if _already_done(rt, ctx, batch):
        return
    if tier.batched:  # provider batch mode: submitted now, collected by poll tasks
        batch_stage.submit(rt, ctx, batch, sink)
        return
    table = load_batch(rt.storage, batch)
    canonical = canonical_mask(table)
    chunk, tenant = batch["chunk"], job_tenant(ctx)
    rows = serving_rows(table, canonical, tier, chunk, tenant)
    check = rt.answer_check(ctx, policy)
    served = Caller(policy, rt.settings, rt.guards(policy), ctx, tier, check).run(rows)
    labels = explore(rt, ctx, policy, table, canonical, rows, served)
    values = outcomes(table, canonical, served, policy, ctx)
    write_labels(rt, ctx, policy, chunk, tier.name, labels)
    publish(rt, ctx, batch["chunk"], tier.name, results.assemble(table, values), sink)
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
