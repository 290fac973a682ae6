"""A ``prompt_id`` is unique in the job: every occurrence after the one that claimed it
is rejected (``duplicate prompt_id``), whichever chunks they are in.

``routing.validate.row_rejections`` rejects the repeats inside one chunk (the first row
keeps the id). Across chunks, at ingest (:func:`reject_repeats`), each row that keeps its
id in its chunk *claims* it for the job: ``HSETNX`` in Redis (one Lua call per 2,000
rows), or in memory for the local executor (workers/claims.py; the Runtime owns the
backend). The claimant is
``<chunk>:<input_row>``, so a redelivered ingest of the same chunk finds its own claims
and makes the same split; a row whose id another chunk's row holds is rejected. Across
chunks the first chunk *to claim* keeps the id (inside a chunk, its first row): the job's
chunks are ingested in parallel, and a later chunk's row may already have been answered
— and paid for — when an earlier chunk's row with the same id is read.

The rows a chunk lost are recorded in its parts manifest (``_job/chunks/``,
``duplicate_ids``: input row and id digest prefix); a re-ingest by ``reconcile`` (``only``
set) replays that record instead of taking the claims' answer, so the split survives lost
claims (Redis restarted), and claims the chunk's own ids again for chunks not yet ingested.

Money never depends on this: the budget ledger keys a call by the job's own (chunk, input
row, tier, model), not by the id (workers/calls.py).

Redis: ``br:job:{<job_id>}:ids:<bucket>`` (workers/keys.py), a hash of 128-bit id digest
→ claimant; ``rows_total / 64`` buckets, so each stays a small listpack-encoded hash
(about 50 bytes an id); TTL ``job_ttl_s``, cleared with the job's other keys.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from routing.plan import JobContext
from workers import layout

if TYPE_CHECKING:
    from workers.runtime import Runtime

Item = tuple[str, str]  # (id digest, claimant "<chunk>:<input_row>")

REASON = "duplicate prompt_id"
RECORD_FIELD = "duplicate_ids"  # in the chunk's parts manifest: [input row, digest prefix]
RECORD_DIGEST = 12  # hex characters of the id's digest kept in the record
IDS_PER_BUCKET = 64


def digest(prompt_id: str) -> str:
    """128-bit digest of an id (32 hex characters): bounded Redis fields whatever the id."""
    return hashlib.blake2b(prompt_id.encode(), digest_size=16).hexdigest()


def _claiming(chunk: int, table: pa.Table, reasons: pa.Array) -> tuple[list[int], list[Item]]:
    """The rows that claim their id for the job — this chunk's first occurrence of each id
    (a repeat inside the chunk is rejected already) — and their (digest, claimant)."""
    claiming = pc.and_(
        pc.is_valid(table.column("prompt_id")),
        pc.fill_null(pc.not_equal(reasons, REASON), True),
    )
    ids = table.column("prompt_id").filter(claiming).to_pylist()
    rows = table.column("input_row").filter(claiming).to_pylist()
    return rows, [(digest(pid), f"{chunk}:{row}") for pid, row in zip(ids, rows, strict=True)]


def _claim(rt: Runtime, ctx: JobContext, items: list[Item]) -> list[str]:
    buckets = max(1, ctx.rows_total // IDS_PER_BUCKET)
    return rt.id_claims().claim(ctx.job_id, items, rt.settings.job_ttl_s, buckets)


def _recorded(
    rt: Runtime, ctx: JobContext, chunk: int, rows: list[int], items: list[Item]
) -> list[int] | None:
    """The input rows the chunk lost when it was first ingested (its parts manifest), if
    the record describes these rows (same ids at those rows; else it is not this run's)."""
    uri = layout.chunk_parts(ctx.job_root, chunk)
    if not rt.storage.exists(uri):
        return None
    record = json.loads(rt.storage.read_bytes(uri)).get(RECORD_FIELD)
    if record is None:
        return None
    mine = {row: d[:RECORD_DIGEST] for row, (d, _) in zip(rows, items, strict=True)}
    if any(mine.get(int(row)) != d for row, d in record):
        return None
    return [int(row) for row, _ in record]


def reject_repeats(
    rt: Runtime,
    ctx: JobContext,
    chunk: int,
    table: pa.Table,
    reasons: pa.Array,
    replay: bool,
) -> tuple[pa.Array, list[list[Any]]]:
    """``reasons`` with ``duplicate prompt_id`` for each otherwise valid row whose id
    another chunk's row keeps, and the record of the rows that lost their id (input row,
    id digest prefix) for the chunk's parts manifest. ``replay`` (a reconcile's
    re-ingest): the recorded split, when there is one, instead of the claims' answer (the
    chunk's own ids are claimed again, for chunks ingested later)."""
    rows, items = _claiming(chunk, table, reasons)
    lost = _recorded(rt, ctx, chunk, rows, items) if replay else None
    if lost is not None:
        _claim(rt, ctx, [it for row, it in zip(rows, items, strict=True) if row not in lost])
    else:
        holders = _claim(rt, ctx, items)
        lost = [row for row, (_, me), h in zip(rows, items, holders, strict=True) if h != me]
    if not lost:
        return reasons, []
    by_row = dict(zip(rows, items, strict=True))
    record = [[row, by_row[row][0][:RECORD_DIGEST]] for row in lost]
    mask = pc.is_in(table.column("input_row").combine_chunks(), pa.array(lost, pa.int64()))
    mask = pc.and_(pc.fill_null(mask, False), pc.is_null(reasons))
    return pc.if_else(mask, pa.scalar(REASON), reasons), record
