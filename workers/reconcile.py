"""Bring a job's progress back in line with what the object store holds.

After Redis lost the job's state (restarted without persistence) or messages were lost,
``reconcile`` rebuilds the state from the job's own objects and re-enqueues only what is
missing:

1. The plan (``_job/plan.json``) lists every chunk. A job with ``_SUCCESS`` is done. A
   job that failed for good (``_job/failed.json`` of this plan, or ``failed`` in Redis) is
   never run again: reconcile reports it (and, if Redis lost it, restores its ``failed``
   state and reason) and re-enqueues nothing. Resubmit it to run it again.
2. No Redis state → the job is registered again (``running``).
3. Per chunk: no ``_job/chunks/cNNNNNN.json`` → ingest never finished → ingest it again.
   Otherwise it lists the parts the chunk writes; each part present in ``results/`` is
   recorded as complete again, from the part's own rows (idempotent: a set member per part);
   a ``dedupe`` part (rows held for other chunks' answers, written by finalize) counts as
   present when the chunk's decision record exists; missing parts are re-enqueued as
   ``ingest(chunk, only=missing)`` — routing is deterministic, so exactly those tier
   batches are dispatched again.
4. When every part is there, the job is finalized (finalize is idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from routing.errors import InputError
from routing.plan import ChunkRef, JobContext, JobPlan
from workers import dedupe, layout
from workers.chunks import part_counts
from workers.finalize import failure_of
from workers.runtime import Runtime


class Resubmit(Protocol):
    def ingest(self, ctx: JobContext, chunk: ChunkRef, only: list[str] | None) -> None: ...
    def finalize(self, ctx: JobContext) -> None: ...


@dataclass
class Reconciled:
    job_id: str
    state: str  # "succeeded" / "failed" (nothing to do), "finalizing", "resumed"
    registered: bool = False  # the Redis state was gone and was rebuilt
    error: str | None = None  # why the job failed
    chunks_total: int = 0
    chunks_complete: int = 0
    reingested: list[int] = field(default_factory=list)  # whole chunks sent to ingest again
    parts_resent: dict[int, list[str]] = field(default_factory=dict)  # chunk → parts

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "registered": self.registered,
            "error": self.error,
            "chunks_total": self.chunks_total,
            "chunks_complete": self.chunks_complete,
            "reingested": self.reingested,
            "parts_resent": {str(k): v for k, v in self.parts_resent.items()},
        }


def load_plan(rt: Runtime, job_root: str) -> JobPlan:
    uri = layout.plan(job_root)
    if not rt.storage.exists(uri):
        raise InputError(f"{job_root}: no job plan ({uri}); is this a job folder?")
    return JobPlan.model_validate(json.loads(rt.storage.read_bytes(uri)))


def reconcile(rt: Runtime, job_root: str, sink: Resubmit) -> Reconciled:
    """See the module doc. Safe to run at any time, also while the job is progressing."""
    plan = load_plan(rt, job_root)
    ctx = plan.context
    out = Reconciled(ctx.job_id, "succeeded", chunks_total=len(plan.chunks))
    if rt.storage.exists(layout.success(job_root)):
        out.chunks_complete = len(plan.chunks)
        return out
    known = rt.tracker.status(ctx.job_id)
    # After a restart, a task that was in flight may have recorded its part on the empty
    # Redis: a job hash without ``total_chunks`` is lost state too.
    lost = known is None or "total_chunks" not in known.meta
    failure = failure_of(rt.storage, job_root)
    if failure is not None or (known is not None and known.state == "failed"):
        out.state = "failed"
        out.error = failure["error"] if failure is not None else known.error  # type: ignore[union-attr]
        if lost:  # Redis forgot the failure: status and the drop folder see it again
            _register(rt, plan)
            rt.tracker.fail(ctx.job_id, str(out.error))
            out.registered = True
        return out
    if lost:
        _register(rt, plan)
        out.registered = True
    present = set(rt.storage.list_files(layout.results_dir(job_root), ".parquet"))
    finalize_sent = False
    for chunk in plan.chunks:
        manifest_uri = layout.chunk_parts(job_root, chunk.chunk)
        if not rt.storage.exists(manifest_uri):
            sink.ingest(ctx, chunk, None)
            out.reingested.append(chunk.chunk)
            continue
        parts = json.loads(rt.storage.read_bytes(manifest_uri))["parts"]
        rt.tracker.expect(ctx.job_id, chunk.chunk, parts)
        missing = []
        for part in parts:
            uri = layout.result_part(job_root, chunk.chunk, part)
            if uri in present:
                counts = part_counts(rt.storage.read_parquet(uri))
            elif part == dedupe.PART and rt.storage.exists(
                record := dedupe.record_uri(job_root, chunk.chunk)
            ):  # held rows: finalize fills their part
                counts = dedupe.held_counts(rt.storage.read_parquet(record).num_rows)
            else:
                missing.append(part)
                continue
            if rt.tracker.complete(ctx.job_id, chunk.chunk, part, counts, ctx.total_chunks):
                sink.finalize(ctx)
                finalize_sent = True
        if missing:
            sink.ingest(ctx, chunk, missing)
            out.parts_resent[chunk.chunk] = missing
        else:
            out.chunks_complete += 1
    if out.chunks_complete == len(plan.chunks):
        if not finalize_sent:  # the trigger fired earlier but the finalize message was lost
            sink.finalize(ctx)
        out.state = "finalizing"
    else:
        out.state = "resumed"
    return out


def _register(rt: Runtime, plan: JobPlan) -> None:
    ctx = plan.context
    meta = {
        "total_chunks": ctx.total_chunks,
        "rows_total": plan.rows_total,
        "job_root": ctx.job_root,
        "input_uri": plan.input_uri,
        "created_at": plan.created_at,
        "tenant": ctx.tenant or "",
        "reconciled": 1,
    }
    rt.tracker.register(ctx.job_id, meta)


def stalled_jobs(rt: Runtime, roots: list[str], stall_s: float, now: float) -> list[str]:
    """Job folders to reconcile: jobs Redis knows as ``running`` that have not progressed for
    ``stall_s``, and — under each output root in ``roots`` — job folders without
    ``_SUCCESS`` whose Redis state is gone (Redis lost it) or stalled. A failed job is
    never one of them."""
    found: dict[str, None] = {}
    for job_id in rt.tracker.list_jobs(limit=500):
        status = rt.tracker.status(job_id)
        if status is None or status.state != "running" or "job_root" not in status.meta:
            continue
        if now - float(status.meta.get("updated_at", now)) >= stall_s:
            found[status.meta["job_root"]] = None
    for root in roots:
        for job_root in _job_folders(rt, root):
            if rt.storage.exists(layout.success(job_root)):
                continue
            if not rt.storage.exists(layout.plan(job_root)):
                continue  # being planned right now, or not a job
            job_id = job_root.rsplit("job_id=", 1)[1]
            status = rt.tracker.status(job_id)
            lost = status is None or "total_chunks" not in status.meta
            idle = status is not None and now - float(status.meta.get("updated_at", now)) >= stall_s
            if not (lost or (status is not None and status.state == "running" and idle)):
                continue
            if lost and failure_of(rt.storage, job_root) is not None:
                continue  # failed for good: nothing to resume (reconcile would say so)
            found[job_root] = None
    return list(found)


def _job_folders(rt: Runtime, root: str) -> list[str]:
    """``…/job_id=*`` folders directly under an output root."""
    from pyarrow import fs

    filesystem, path = rt.storage.resolve(root)
    try:
        infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    prefix = "s3://" if root.startswith("s3://") else ""
    return sorted(
        prefix + info.path
        for info in infos
        if info.type == fs.FileType.Directory and info.base_name.startswith("job_id=")
    )
